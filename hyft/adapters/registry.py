"""Which layer class implements which ``method``. Each method module registers itself on import."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from hyft.adapters.config import AdapterConfig
from hyft.adapters.layer import AdaptedLinear

# builder(base_layer, config, name, init) -> AdaptedLinear; ``init`` is the LoRA-GA (A0, B0) when needed.
LayerBuilder = Callable[
    [nn.Linear, AdapterConfig, str, "tuple[torch.Tensor, torch.Tensor] | None"], AdaptedLinear
]

_BUILDERS: dict[str, LayerBuilder] = {}
# Methods whose layers need the LoRA-GA gradient pass before they are built.
NEEDS_GRADIENT_INIT = {"lora_ga", "hybrid"}


def register_method(name: str, builder: LayerBuilder) -> None:
    _BUILDERS[name] = builder


def layer_builder(method: str) -> LayerBuilder:
    _import_builtin_methods()
    if method not in _BUILDERS:
        close = difflib.get_close_matches(method, list(_BUILDERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"adapter method {method!r} is not available{hint} (available: {sorted(_BUILDERS)})")
    return _BUILDERS[method]


def _import_builtin_methods() -> None:
    import importlib

    from hyft.adapters.lora import LoraLinear

    register_method("lora", lambda base, cfg, name, init: LoraLinear(base, cfg))
    register_method("lora_ga", lambda base, cfg, name, init: LoraLinear(base, cfg, init))
    # Methods implemented in their own modules register themselves when imported.
    for module in ("hyft.adapters.boft", "hyft.adapters.unitary", "hyft.adapters.hybrid"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
