"""``hyft.wrap`` / ``hyft.load``: put adapters on a model, save them PEFT-style, merge them away.

On disk an adapter is ``adapter_config.json`` + ``adapter_model.safetensors`` with PEFT's key layout
(``base_model.model.<module>.lora_A.weight``). LoRA and LoRA-GA (as a rank-2r LoRA) write a config that
``peft.PeftModel.from_pretrained`` reads; so do OFT and BOFT (PEFT's OFT/BOFT config, keys and Cayley sign,
:mod:`hyft.adapters.peft_format`) whenever a PEFT method computes them; the other methods use the same
layout with a hyft method type.

Named adapters follow PEFT: ``wrap``/``load`` name the first adapter (``"default"``), ``add_adapter`` /
``load_adapter`` put more on the same frozen base, ``set_adapter`` picks the one the forward, training,
merge and λ updates act on, ``disable_adapter()`` shows the plain base, and ``save_pretrained`` writes the
``"default"`` adapter at the top of the folder and every other one in a sub-folder named after it.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hyft.adapters.batched_rotation import prepare_rotation_blocks
from hyft.adapters.config import AdapterConfig
from hyft.adapters.layer import AdaptedLinear, adapted_layers
from hyft.adapters.lora_ga import LoraGaInitReport, estimate_lora_ga_init
from hyft.adapters.peft_format import (
    TENSOR_LAYOUT,
    foreign_peft_type,
    load_peft_state,
    peft_config_fields,
    peft_state,
    peft_type_for,
)
from hyft.adapters.quantized import (
    is_quantized_linear,
    is_quantized_model,
    quantization_kind,
)
from hyft.adapters.registry import NEEDS_GRADIENT_INIT, layer_builder
from hyft.adapters.targeting import find_heads, find_targets, matches_pattern
from hyft.io import fsync_dir, fsync_tree

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FULL_WEIGHTS_NAME = "model.safetensors"
FULL_INDEX_NAME = "model.safetensors.index.json"
# Full fine-tuning writes a plain transformers folder; its hyft block goes here, not in adapter_config.json,
# which transformers' from_pretrained would take for a PEFT adapter to load on top.
FULL_CONFIG_NAME = "hyft_config.json"
PEFT_PREFIX = "base_model.model."
FORMAT_VERSION = 1
# PEFT's name for the first adapter; save_pretrained writes it at the top of the folder,
# others in sub-folders.
DEFAULT_ADAPTER = "default"
# An adapter's name is also the name of its sub-folder: no separators, no leading dot (staging folders).
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
logger = logging.getLogger(__name__)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def build_layers(
    base_layers: Mapping[str, nn.Module], config: AdapterConfig, inits: Mapping[str, Any] | None = None
) -> dict[str, AdaptedLinear]:
    """{name: the method's adapted layer on ``base_layers[name]``}, its initial factors from ``inits[name]``
    when given, else the method's default init; built in the order given (the default inits draw from
    torch's global RNG). The model is not touched."""
    build = layer_builder(config.method)
    return {name: build(base, config, name, (inits or {}).get(name)) for name, base in base_layers.items()}


def install_layers(
    base_model: nn.Module,
    config: AdapterConfig,
    targets: Iterable[str],
    heads: Iterable[str] = (),
    inits: Mapping[str, Any] | None = None,
) -> None:
    """Freeze ``base_model``, replace each target by the method's adapted layer (:func:`build_layers`),
    then unfreeze the ``heads``; in place."""
    base_model.requires_grad_(False)
    modules = dict(base_model.named_modules())
    for name, layer in build_layers({t: modules[t] for t in targets}, config, inits).items():
        _set_submodule(base_model, name, layer)
    for head in heads:
        base_model.get_submodule(head).requires_grad_(True)


def _under(name: str, prefixes: Iterable[str]) -> bool:
    """Whether module ``name`` is one of ``prefixes`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _outermost(names: Iterable[str]) -> list[str]:
    """The names not inside another of ``names`` (a head found twice, as a module and as its child)."""
    names = list(names)
    return [n for n in names if not any(n != m and n.startswith(m + ".") for m in names)]


def _copied_head(module: nn.Module, trainable: bool = False) -> nn.Module:
    """A deep copy of a task head: the kept original (frozen) or one adapter's own head."""
    return copy.deepcopy(module).requires_grad_(trainable)


def check_adapter_name(name: str) -> None:
    """Refuse an adapter name that cannot name its sub-folder in :meth:`HyftModel.save_pretrained`."""
    if not isinstance(name, str) or not _ADAPTER_NAME.fullmatch(name) or _written_by_save(name):
        raise ValueError(
            f"adapter name {name!r}: use letters, digits, '_', '-' and '.' (not first), and not "
            f"the name of a file save_pretrained writes; the name is the adapter's sub-folder"
        )


def _written_by_save(name: str) -> bool:
    """Whether a file name is one :meth:`HyftModel.save_pretrained` writes (a stale one is dropped)."""
    return (
        name in (CONFIG_NAME, FULL_CONFIG_NAME, "config.json", "generation_config.json")
        or (name.startswith("model") and (name.endswith(".safetensors") or name == FULL_INDEX_NAME))
        or name == WEIGHTS_NAME
    )


def _swap_into_place(staging: Path, directory: Path, keep_top_level: bool = False) -> None:
    """Rename the complete folder ``staging`` onto ``directory``.

    An existing ``directory`` is first renamed aside (so for an instant neither exists, never a mix), and
    whatever it held that save_pretrained does not write (a user's README, say; the sub-folders of adapters
    not saved this time) is moved into the new one. ``keep_top_level``: this save wrote no top-level adapter
    (``selected_adapters`` without ``"default"``), so the one already there is kept too.
    """
    if not directory.exists():
        os.replace(staging, directory)
        fsync_dir(directory.parent)
        return
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    for entry in directory.iterdir():
        if (keep_top_level or not _written_by_save(entry.name)) and not (staging / entry.name).exists():
            os.replace(entry, staging / entry.name)
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    os.replace(directory, old / directory.name)
    os.replace(staging, directory)
    fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def _task_type(model: nn.Module) -> str | None:
    cls = type(model).__name__
    if cls.endswith("ForCausalLM"):
        return "CAUSAL_LM"
    if cls.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return None


class HyftModel(nn.Module):
    """A base model with adapters in place of its target ``nn.Linear`` layers.

    Behaves like the base model: ``forward`` and ``generate`` take the same arguments; attributes the
    wrapper does not have (``config``, ``device``...) are read from the base model.

    It holds one or more named adapters on the same frozen base (PEFT's semantics: :meth:`add_adapter`,
    :meth:`load_adapter`, :meth:`set_adapter`, :meth:`disable_adapter`, :meth:`delete_adapter`); one is
    active at a time. The active adapter's layers and heads are the modules of ``base_model`` (at each
    target's own name, as with a single adapter), so ``parameters()``, ``state_dict()``, the trainer, DDP and
    checkpoints see that adapter and the base only; the other adapters are held beside the module tree,
    with ``requires_grad`` off, and move with ``.to()``.
    """

    def __init__(
        self,
        base_model: nn.Module,
        config: AdapterConfig,
        init_report: LoraGaInitReport | None = None,
        adapter_name: str = DEFAULT_ADAPTER,
    ):
        super().__init__()
        check_adapter_name(adapter_name)
        self.base_model = base_model
        # Per adapter, in the order added. Every adapter's layers share their target's one frozen base layer.
        # Only the active adapter's layers and heads are in base_model's module tree (put there by _show);
        # the others live in these plain dicts, outside it, so that with one adapter the model is exactly what
        # it was before named adapters existed (same modules, parameter names and state-dict keys).
        self._configs: dict[str, AdapterConfig] = {adapter_name: config}
        # Found once: the adapters are in place before the wrapper is built, and walking every module
        # (with its nesting check) on each training forward and λ update would cost milliseconds per step.
        self._layers: dict[str, dict[str, AdaptedLinear]] = {adapter_name: adapted_layers(base_model)}
        self._init_reports: dict[str, LoraGaInitReport | None] = {adapter_name: init_report}
        heads = [] if config.method == "full" else find_heads(base_model, config.modules_to_save)
        self._head_names: dict[str, list[str]] = {adapter_name: heads}
        self._heads: dict[str, dict[str, nn.Module]] = {
            adapter_name: {h: base_model.get_submodule(h) for h in _outermost(heads)}
        }
        # The heads before any adapter trained them (the first adapter trains the model's own head in place):
        # what disable_adapter() shows and what a new adapter's heads start from. PEFT's ModulesToSaveWrapper
        # keeps its original module the same way; the cost is one copy of the heads (by default the small
        # classification head).
        self._base_heads: dict[str, nn.Module] = {
            h: _copied_head(m) for h, m in self._heads[adapter_name].items()
        }
        self._parked: dict[str, list[bool]] = {}  # inactive adapter → its parameters' requires_grad flags
        self._active = adapter_name
        self._disabled = False
        # transformers modules that carry a `gradient_checkpointing` switch (set by
        # gradient_checkpointing_enable, on this wrapper or on the base model directly), found once too.
        self._checkpoint_switches = [m for m in base_model.modules() if hasattr(m, "gradient_checkpointing")]
        # Batched Cayley blocks for same-shaped BOFT layers (batched_rotation.py); turned off automatically
        # under gradient checkpointing, and settable by hand for a model checkpointed by other means.
        self.batch_rotations = True
        self._input_grad_hook: torch.utils.hooks.RemovableHandle | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if (
            self.training
            and self.batch_rotations
            and not self.is_checkpointing()
            and not self.merged
            and not self._disabled
        ):
            # Prepared blocks are computed here, outside any checkpointed segment: a recomputation could
            # not find them again (non-reentrant checkpointing then refuses the differing saved tensors),
            # and a reentrant one would backpropagate through their shared graph once per segment. Under
            # checkpointing each layer therefore computes, and recomputes, its own blocks.
            prepare_rotation_blocks(self._adapted.values())
        return self.base_model(*args, **kwargs)

    # -- gradient checkpointing ------------------------------------------------------------------
    def is_checkpointing(self) -> bool:
        """Whether any module of the base model has gradient (activation) checkpointing switched on."""
        return any(getattr(m, "gradient_checkpointing", False) for m in self._checkpoint_switches)

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Switch on the base model's gradient checkpointing (transformers' API, e.g.
        ``gradient_checkpointing_kwargs={"use_reentrant": False}``) and make the input embeddings' output
        require grad, so that a reentrant segment whose inputs come from frozen layers still passes
        gradients to the adapters inside it (PEFT does the same)."""
        base = self.base_model
        # transformers ≥ 5 renamed the method and warns on the old name; call whichever exists.
        enable = getattr(base, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs=gradient_checkpointing_kwargs, **kwargs)
        elif hasattr(base, "gradient_checkpointing_enable"):
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=gradient_checkpointing_kwargs, **kwargs
            )
        else:
            raise ValueError(f"{type(base).__name__} does not support gradient checkpointing")
        self._checkpoint_switches = [m for m in base.modules() if hasattr(m, "gradient_checkpointing")]
        self.enable_input_require_grads()

    def gradient_checkpointing_disable(self) -> None:
        """Switch the base model's gradient checkpointing off again."""
        base = self.base_model
        disable = getattr(base, "activation_checkpointing_disable", None)
        (disable or base.gradient_checkpointing_disable)()

    def enable_input_require_grads(self) -> None:
        """Make the input embeddings' output require grad (idempotent): the base model's own method when it
        has one and has not run yet, else a forward hook on ``get_input_embeddings()``."""
        base = self.base_model
        if getattr(base, "_require_grads_hooks", None) or getattr(base, "_require_grads_hook", None):
            return
        if self._input_grad_hook is not None:
            return
        if hasattr(base, "enable_input_require_grads"):
            base.enable_input_require_grads()
            return
        embeddings = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
        if embeddings is None:
            raise ValueError(f"{type(base).__name__} exposes no input embeddings to make require grad")

        def require_grad(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self._input_grad_hook = embeddings.register_forward_hook(require_grad)

    def disable_input_require_grads(self) -> None:
        """Undo :meth:`enable_input_require_grads`."""
        if self._input_grad_hook is not None:
            self._input_grad_hook.remove()
            self._input_grad_hook = None
        elif hasattr(self.base_model, "disable_input_require_grads"):
            self.base_model.disable_input_require_grads()

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model.generate(*args, **kwargs)

    def get_base_model(self) -> nn.Module:
        """The wrapped transformers model (PEFT's name for it)."""
        return self.base_model

    @property
    def accepts_loss_kwargs(self) -> bool:
        """Whether the base model's forward takes loss kwargs (``num_items_in_batch``): transformers' Trainer
        reads this, and would otherwise infer True from this wrapper's ``**kwargs``."""
        base = self.base_model
        if hasattr(type(base), "accepts_loss_kwargs") or "accepts_loss_kwargs" in vars(base):
            return bool(base.accepts_loss_kwargs)
        return any(
            p.kind == inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(base.forward).parameters.values()
        )

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.base_model, name)

    # -- named adapters (PEFT's semantics) ---------------------------------------------------------
    @property
    def _adapted(self) -> dict[str, AdaptedLinear]:
        """The active adapter's layers (also while disabled: they are what merge and save act on)."""
        return self._layers[self._active]

    @property
    def adapter_config(self) -> AdapterConfig:
        """The active adapter's settings."""
        return self._configs[self._active]

    @property
    def init_report(self) -> LoraGaInitReport | None:
        """The active adapter's LoRA-GA initialisation report (None for other methods or a loaded adapter)."""
        return self._init_reports[self._active]

    @property
    def active_adapter(self) -> str:
        """The name of the adapter the forward, training, merge and λ updates act on."""
        return self._active

    @property
    def active_adapters(self) -> list[str]:
        """``[active_adapter]`` (PEFT's list form; hyft runs one adapter at a time)."""
        return [self._active]

    @property
    def adapter_configs(self) -> dict[str, AdapterConfig]:
        """{adapter name: its settings}, in the order the adapters were added."""
        return dict(self._configs)

    def _known(self, adapter_name: str | None) -> str:
        """``adapter_name`` (the active adapter for None), refused with the names there are when unknown."""
        if adapter_name is None:
            return self._active
        if adapter_name not in self._configs:
            raise ValueError(f"no adapter named {adapter_name!r}; this model has {list(self._configs)}")
        return adapter_name

    def _refuse_while_merged_or_disabled(self, action: str) -> None:
        if self._disabled:
            raise ValueError(f"{action}: not inside `with model.disable_adapter():`; leave the block first")
        if self.merged:
            raise ValueError(
                f"{action}: the active adapter {self._active!r} is merged into the base weights, which "
                "every adapter shares; call unmerge_adapter() first"
            )

    def set_adapter(self, adapter_name: str) -> None:
        """Make ``adapter_name`` the active adapter (PEFT's ``set_adapter``).

        Its layers and heads take their places in the base model; the adapter that was active keeps its
        tensors but leaves the module tree, and its parameters get ``requires_grad=False`` (given back, as
        they were, when it is set active again). Refused while merged (the base weights hold the merged
        adapter: :meth:`unmerge_adapter` first) and inside :meth:`disable_adapter`.
        """
        self._known(adapter_name)
        if adapter_name == self._active:
            return
        self._refuse_while_merged_or_disabled(f"set_adapter({adapter_name!r})")
        self._park(self._active)
        self._active = adapter_name
        self._unpark(adapter_name)
        self._show()

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """``with model.disable_adapter(): ...`` runs the plain base model: every adapted layer is its
        original base layer and every head the base model's own, so outputs are exactly the base's; the
        adapters are back at the end of the block. Refused while merged and for full fine-tuning (whose
        trained weights are the base's own)."""
        if self._disabled:  # nested: the outer block restores
            yield
            return
        if self.adapter_config.method == "full":
            raise ValueError(
                "disable_adapter: full fine-tuning has no adapter to disable: the trained weights are "
                "the model's own"
            )
        if self.merged:
            raise ValueError(
                f"disable_adapter: the active adapter {self._active!r} is merged into the base "
                "weights; call unmerge_adapter() first"
            )
        self._disabled = True
        self._show()
        try:
            yield
        finally:
            self._disabled = False
            self._show()

    def add_adapter(
        self,
        adapter_name: str,
        config: AdapterConfig,
        init_batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
        seed: int = 0,
    ) -> None:
        """Add a new adapter ``adapter_name`` with ``config`` on the same frozen base
        (PEFT's ``add_adapter``).

        It is built as :func:`wrap` would build it on the plain base (``init_batches`` and ``seed`` as there:
        LoRA-GA and the hybrid take their gradient on the base without adapters), with heads copied from
        the base's. It is not made active: :meth:`set_adapter` does that. Refused for full fine-tuning,
        for a name that exists, while merged and inside :meth:`disable_adapter`.
        """
        self._check_new_adapter(adapter_name, config, "add_adapter")
        with self.disable_adapter():  # targets found and LoRA-GA's gradient taken on the plain base
            targets, heads = _targets_and_heads(self.base_model, config, self._all_heads())
            self._check_heads_hold_no_target(adapter_name, heads)
            inits, report = _gradient_init(self.base_model, targets, config, init_batches, seed)
            layers = build_layers({t: self.base_model.get_submodule(t) for t in targets}, config, inits)
        self._register(adapter_name, config, layers, heads, train_heads=True, report=report)

    def load_adapter(self, directory: str | Path, adapter_name: str, is_trainable: bool = False) -> None:
        """Load an adapter saved by :meth:`save_pretrained` (the folder that holds its
        ``adapter_config.json``) as a new adapter ``adapter_name`` beside the existing ones (PEFT's
        ``load_adapter``); not made active. ``is_trainable`` as in :func:`load`. The checks of :func:`load`
        (same base weights) and of :meth:`add_adapter` apply."""
        saved = _read_saved(Path(directory))
        self._check_new_adapter(adapter_name, saved.config, "load_adapter")
        state = saved.tensors()
        with self.disable_adapter():
            _check_layers_exist(self.base_model, saved)
            heads = find_heads(self.base_model, saved.config.modules_to_save)
            if any(_under(t, self._all_heads()) for t in saved.block["target_layers"]):
                raise ValueError(
                    f"load_adapter({adapter_name!r}): its layers lie inside the heads of other "
                    f"adapters ({self._all_heads()})"
                )
            self._check_heads_hold_no_target(adapter_name, heads)
            layers = build_layers(
                {t: self.base_model.get_submodule(t) for t in saved.block["target_layers"]}, saved.config
            )
        self._register(adapter_name, saved.config, layers, heads, train_heads=False)
        try:
            _load_saved_state(self, adapter_name, saved, state)
        except BaseException:
            self._forget(adapter_name)
            raise
        if not is_trainable:
            self._parked[adapter_name] = [False] * len(self._parked[adapter_name])

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter and its tensors (PEFT's ``delete_adapter``). Deleting the active adapter makes
        the first remaining one active, with a warning. Refused for the only adapter, for the active one while
        merged, and inside :meth:`disable_adapter`."""
        self._known(adapter_name)
        if len(self._configs) == 1:
            raise ValueError(
                f"delete_adapter({adapter_name!r}): it is the only adapter of this model, and a model "
                "needs one; to run the plain base model, use `with model.disable_adapter():`"
            )
        if self._disabled or adapter_name == self._active:  # an inactive adapter shares no merged weight
            self._refuse_while_merged_or_disabled(f"delete_adapter({adapter_name!r})")
        if adapter_name == self._active:
            successor = next(n for n in self._configs if n != adapter_name)
            self.set_adapter(successor)
            warnings.warn(
                f"delete_adapter: {adapter_name!r} was the active adapter; {successor!r} is active now",
                stacklevel=2,
            )
        self._forget(adapter_name)

    def _check_new_adapter(self, adapter_name: str, config: AdapterConfig, action: str) -> None:
        check_adapter_name(adapter_name)
        if adapter_name in self._configs:
            raise ValueError(
                f"{action}: an adapter named {adapter_name!r} exists already "
                f"(adapters: {list(self._configs)}); delete_adapter() it first or pick another name"
            )
        if "full" in (config.method, self.adapter_config.method):
            raise ValueError(
                f"{action}({adapter_name!r}): full fine-tuning trains the base weights themselves, so it "
                "cannot be one of several named adapters; wrap a separate copy of the base model for it"
            )
        self._refuse_while_merged_or_disabled(f"{action}({adapter_name!r})")

    def _all_heads(self) -> list[str]:
        return list(self._base_heads)

    def _check_heads_hold_no_target(self, adapter_name: str, heads: list[str]) -> None:
        inside = [t for layers in self._layers.values() for t in layers if _under(t, heads)]
        if inside:
            raise ValueError(
                f"adapter {adapter_name!r}: its modules_to_save {heads} hold layers other adapters "
                f"adapt ({inside[:3]}); exclude them from one of the two"
            )

    def _register(
        self,
        adapter_name: str,
        config: AdapterConfig,
        layers: dict[str, AdaptedLinear],
        heads: list[str],
        train_heads: bool,
        report: LoraGaInitReport | None = None,
    ) -> None:
        """Record a new, inactive adapter: its heads are copies of the base's, its parameters parked."""
        outer = _outermost(heads)
        for head in outer:
            if head not in self._base_heads:  # no adapter trains it: the module in the tree is the original
                self._base_heads[head] = self.base_model.get_submodule(head)
        self._configs[adapter_name] = config
        self._layers[adapter_name] = layers
        self._init_reports[adapter_name] = report
        self._head_names[adapter_name] = list(heads)
        self._heads[adapter_name] = {h: _copied_head(self._base_heads[h], train_heads) for h in outer}
        for module in [*layers.values(), *self._heads[adapter_name].values()]:
            module.train(self.training)
        self._park(adapter_name)

    def _forget(self, adapter_name: str) -> None:
        """Drop an inactive adapter's records; a position no adapter uses any more keeps its base module."""
        for records in (
            self._configs,
            self._layers,
            self._init_reports,
            self._head_names,
            self._heads,
            self._parked,
        ):
            records.pop(adapter_name, None)
        used = {h for heads in self._heads.values() for h in heads}
        for head in [h for h in self._base_heads if h not in used]:
            del self._base_heads[head]  # the tree holds it already (the adapter was not active)

    def _own_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        """The adapter's own parameters (its layers without the shared base layers, its heads),
        fixed order."""
        params = [
            p
            for layer in self._layers[adapter_name].values()
            for n, p in layer.named_parameters()
            if not n.startswith("base_layer.")
        ]
        return params + [p for head in self._heads[adapter_name].values() for p in head.parameters()]

    def _park(self, adapter_name: str) -> None:
        """Switch an adapter's parameters off (requires_grad False), remembering their flags."""
        params = self._own_parameters(adapter_name)
        self._parked[adapter_name] = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)

    def _unpark(self, adapter_name: str) -> None:
        flags = self._parked.pop(adapter_name)
        for p, flag in zip(self._own_parameters(adapter_name), flags, strict=True):
            p.requires_grad_(flag)

    def _show(self) -> None:
        """Put into base_model's module tree, at every adapted and head position, the active adapter's module,
        or the base's own where it has none or while disabled."""
        wanted: dict[str, nn.Module] = {}
        for layers in self._layers.values():
            for target, layer in layers.items():
                wanted.setdefault(target, layer.base_layer)  # the one base layer every adapter shares
        wanted.update(self._base_heads)
        if not self._disabled:
            wanted.update(self._layers[self._active])
            wanted.update(self._heads[self._active])
        for name, module in wanted.items():
            if self.base_model.get_submodule(name) is not module:
                module.train(self.training)
                _set_submodule(self.base_model, name, module)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> HyftModel:
        """``.to()``, ``.half()``, ``.cuda()``...: also the adapters and heads outside the module tree (each
        module once: the shared base layers are in the tree and done by ``super()``)."""
        super()._apply(fn, recurse)
        if recurse and "_layers" in self.__dict__:
            done = {id(m) for m in self.modules()}
            stored = [
                *(m for layers in self._layers.values() for m in layers.values()),
                *(m for heads in self._heads.values() for m in heads.values()),
                *self._base_heads.values(),
            ]
            for module in stored:
                for sub in module.modules():
                    if id(sub) not in done:
                        done.add(id(sub))
                        sub._apply(fn, recurse=False)
        return self

    # -- inspection ------------------------------------------------------------------------------
    def adapted_layers(self, adapter_name: str | None = None) -> dict[str, AdaptedLinear]:
        """{dotted name in the base model: adapted layer} of the active adapter (or of ``adapter_name``)."""
        return dict(self._layers[self._known(adapter_name)])

    def head_names(self, adapter_name: str | None = None) -> list[str]:
        """The modules trained and saved with the active adapter (or ``adapter_name``) besides its layers."""
        return list(self._head_names[self._known(adapter_name)])

    def trainable_parameters(self) -> int:
        """Number of trainable scalars (the active adapter plus its heads; every parameter for full
        fine-tuning)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def total_parameters(self) -> int:
        """Number of scalars of the base model with the active adapter (not the inactive ones)."""
        return sum(p.numel() for p in self.parameters())

    def after_backward(self, branch_norms: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """Per-step hook called by the trainer after gradients are final, before clipping (λ updates).

        The hybrid layers' branch gradient norms are computed together: one all-reduce of the local
        squared norms for the whole model under torch.distributed (DDP, FSDP1, FSDP2), so every rank
        sets the same λ, the one a single process would set on the union batch. ``branch_norms``
        ({layer name: {"lora": g_L, "rotation": g_B}}, global norms as the trainer logs them) skips
        that computation.
        """
        from hyft.distributed import global_squared_norms

        if self.merged or self._disabled:
            return  # a merged or disabled adapter gets no gradients: zero norms must not move λ
        mixed, groups = [], []
        for name, layer in self.adapted_layers().items():
            if not hasattr(layer, "lambda_branches"):
                layer.after_backward()
            elif branch_norms is not None and name in branch_norms:
                norms = branch_norms[name]
                layer.mixer.update(norms.get("lora", 0.0), norms.get("rotation", 0.0))
            else:
                mixed.append(layer)
                groups.extend(layer.lambda_branches())
        if not mixed:
            return
        norms = global_squared_norms(groups, mixed[0].mixing_weight.device).sqrt()
        for index, layer in enumerate(mixed):
            layer.mixer.update(norms[2 * index], norms[2 * index + 1])

    def mixing_weights(self) -> dict[str, float]:
        """{layer name: λ} for hybrid layers (empty for other methods)."""
        return {
            n: float(m.mixing_weight) for n, m in self.adapted_layers().items() if hasattr(m, "mixing_weight")
        }

    # -- save / load / merge -------------------------------------------------------------------------
    def head_module(self, adapter_name: str, head: str) -> nn.Module:
        """Adapter ``adapter_name``'s own copy of head ``head``
        (the module itself, or inside one of its outer heads)."""
        for outer, module in self._heads[adapter_name].items():
            if head == outer:
                return module
            if head.startswith(outer + "."):
                return module.get_submodule(head[len(outer) + 1 :])
        raise KeyError(head)

    def adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
        """Every tensor that defines the active adapter (or ``adapter_name``) and its trained heads, with
        PEFT-style keys (no adapter name in them), on CPU."""
        from hyft.distributed import gathered_parameters  # ZeRO-3 partitions: gathered a module at a time

        adapter_name = self._known(adapter_name)
        if self._configs[adapter_name].method == "full":
            with gathered_parameters(list(self.base_model.parameters())):
                return _untied_state(self.base_model)
        state: dict[str, torch.Tensor] = {}
        for name, layer in self._layers[adapter_name].items():
            with gathered_parameters(list(layer.parameters())):
                for key, tensor in layer.adapter_state().items():
                    state[f"{PEFT_PREFIX}{name}.{key}"] = tensor.detach().cpu().contiguous()
        for head in self._head_names[adapter_name]:
            module = self.head_module(adapter_name, head)
            with gathered_parameters(list(module.parameters())):
                for key, tensor in module.state_dict().items():
                    state[f"{PEFT_PREFIX}{head}.{key}"] = tensor.detach().cpu().contiguous()
        return state

    def save_pretrained(
        self,
        directory: str | Path,
        selected_adapters: Iterable[str] | None = None,
        is_main_process: bool = True,
    ) -> Path:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (no pickle) of every adapter (or of
        ``selected_adapters``) in PEFT's layout: the ``"default"`` adapter in ``directory`` itself, every
        other one in ``directory/<its name>``. Sub-folders of adapters not saved this time, and the top-level
        adapter when ``"default"`` is not saved, are kept.

        Full fine-tuning of a transformers model writes a plain transformers folder instead (the model's own
        ``save_pretrained``: ``config.json`` and safetensors, sharded when large) plus ``hyft_config.json``;
        ``AutoModel*.from_pretrained(directory)`` loads it, and so does :func:`load`.

        Under DeepSpeed ZeRO-3 every rank must call this (the partitioned weights are gathered, a
        collective) with ``is_main_process`` true on one of them, which alone writes (transformers'
        convention); elsewhere the other ranks may skip the call.
        """
        from hyft.distributed import gathered_parameters

        with gathered_parameters(list(self.parameters())):
            if not is_main_process:
                return Path(directory)
            return self._save_pretrained(Path(directory), selected_adapters)

    def _save_pretrained(self, directory: Path, selected_adapters: Iterable[str] | None) -> Path:
        if isinstance(selected_adapters, str):
            selected_adapters = [selected_adapters]
        names = (
            list(self._configs) if selected_adapters is None else [self._known(n) for n in selected_adapters]
        )
        if not names:
            raise ValueError(
                f"save_pretrained: selected_adapters is empty; this model has {list(self._configs)}"
            )
        directory.parent.mkdir(parents=True, exist_ok=True)
        # Written whole into a temp folder beside the target, then renamed into place: a reader (or a
        # process killed mid-save) sees the previous complete folder or the new one, never a safetensors
        # without its config or a half-written file.
        staging = directory.parent / f".{directory.name}.saving-{uuid.uuid4().hex[:12]}"
        staging.mkdir()  # not mkdtemp: the folder gets the usual (umask) permissions, not 0700
        try:
            for name in names:
                folder = staging if name == DEFAULT_ADAPTER else staging / name
                folder.mkdir(exist_ok=True)
                self._save_into(folder, name)
            fsync_tree(staging)
            _swap_into_place(staging, directory, keep_top_level=DEFAULT_ADAPTER not in names)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return directory

    def _save_into(self, directory: Path, adapter_name: str) -> None:
        """Write one adapter's files into the (fresh, empty) folder ``directory``."""
        cfg = self._configs[adapter_name]
        if cfg.method == "full" and hasattr(self.base_model, "save_pretrained"):
            self.base_model.save_pretrained(directory)
            (directory / CONFIG_NAME).unlink(missing_ok=True)  # a stale one would make transformers try PEFT
            saved = self._saved_config(adapter_name)
            (directory / FULL_CONFIG_NAME).write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
            return
        state = self.adapter_state_dict(adapter_name)
        peft_type = peft_type_for(cfg)
        if peft_type is not None:  # OFT/BOFT: PEFT's own keys, shapes and Cayley sign (peft_format.py)
            for layer_name, layer in self._layers[adapter_name].items():
                prefix = f"{PEFT_PREFIX}{layer_name}."
                for key in layer.adapter_state():
                    del state[prefix + key]
                state.update({prefix + key: t.cpu() for key, t in peft_state(layer, peft_type).items()})
        name = FULL_WEIGHTS_NAME if cfg.method == "full" else WEIGHTS_NAME
        save_file(state, str(directory / name), metadata={"format": "pt"})
        saved = self._saved_config(adapter_name)
        (directory / CONFIG_NAME).write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")

    def _saved_config(self, adapter_name: str) -> dict[str, Any]:
        cfg = self._configs[adapter_name]
        layers = self._layers[adapter_name]
        base_name = getattr(getattr(self.base_model, "config", None), "_name_or_path", None) or None
        targets = sorted({n.split(".")[-1] for n in layers})
        hyft_block = {
            "format_version": FORMAT_VERSION,
            "adapter": cfg.model_dump(mode="json"),
            "target_layers": sorted(layers),
            "base_fingerprint": base_fingerprint(self, adapter_name),
            "base_quantization": base_quantization(self, adapter_name),
        }
        saved: dict[str, Any] = {
            "base_model_name_or_path": base_name,
            "task_type": _task_type(self.base_model),
            "target_modules": targets,
            "modules_to_save": [h.split(".")[-1] for h in self._head_names[adapter_name]] or None,
            "inference_mode": True,
            "hyft": hyft_block,
        }
        if cfg.method in ("lora", "lora_ga"):
            # LoRA-GA's frozen-init form is exactly a rank-2r LoRA with α doubled (×√2 with rsLoRA).
            doubled = cfg.method == "lora_ga"
            alpha = cfg.alpha * ((2**0.5 if cfg.use_rslora else 2.0) if doubled else 1.0)
            saved.update(
                peft_type="LORA",
                r=cfg.r * (2 if doubled else 1),
                lora_alpha=alpha,
                lora_dropout=cfg.dropout,
                use_rslora=cfg.use_rslora,
                bias="none",
                fan_in_fan_out=False,
                init_lora_weights=True,
            )
        elif (peft_type := peft_type_for(cfg)) is not None:
            # OFT/BOFT as PEFT's OFTConfig/BOFTConfig (peft_format.py);
            # the targets exactly the adapted layers.
            saved.update(
                peft_config_fields(cfg, peft_type),
                target_modules=self._peft_targets(targets, adapter_name),
                exclude_modules=None,
            )
            hyft_block["tensor_layout"] = TENSOR_LAYOUT
        else:
            saved["peft_type"] = foreign_peft_type(cfg)  # what PEFT's KeyError will print
        return saved

    def _peft_targets(self, suffixes: list[str], adapter_name: str) -> list[str]:
        """``target_modules`` for PEFT: the layers' last names when they pick exactly the adapted layers,
        else their full dotted names (PEFT matches a list entry exactly or as a ``.name`` suffix)."""
        adapted = set(self._layers[adapter_name])
        linear_positions = {
            n for layers in self._layers.values() for n in layers
        }  # a base nn.Linear under each
        picked = {
            n
            for n, m in self.base_model.named_modules()
            if n.split(".")[-1] in suffixes and (n in linear_positions or isinstance(m, nn.Linear))
        }
        return suffixes if picked == adapted else sorted(adapted)

    def _base_weight(self, target: str, layer: AdaptedLinear) -> torch.Tensor:
        """W0 of ``target`` as ``layer.base_weight()`` gives it, read through the active adapter's layer
        there when there is one: that layer holds the original W0 while it is merged into the shared base."""
        return self._adapted.get(target, layer).base_weight()

    @property
    def merged(self) -> bool:
        """Whether the active adapter is merged into the base weights (:meth:`merge_adapter`)."""
        return any(layer.merged for layer in self._adapted.values())

    def merge_adapter(self, safe_merge: bool = False) -> None:
        """Fold the active adapter into its base weights in place, reversibly (PEFT's ``merge_adapter``).

        Each layer's W_eff is computed in fp32 and cast once to the base dtype; the forward then runs
        through the plain base layers (the merged model's outputs equal the adapter's). The original W0
        tensors are kept, so :meth:`unmerge_adapter` restores them exactly (one extra copy of the adapted
        weights while merged). ``safe_merge=True`` checks each merged weight for NaN/Inf first and raises a
        ValueError naming the layer, leaving the whole model unmerged. A quantized base cannot hold a merged
        weight: use :meth:`merge_and_unload`, which dequantises.
        """
        if self.adapter_config.method == "full":
            raise ValueError(
                "full fine-tuning has no adapter to merge: the trained weights are the model's own"
            )
        if self._disabled:
            raise ValueError(
                "merge_adapter: not inside `with model.disable_adapter():`; leave the block first"
            )
        if self.merged:
            warnings.warn("merge_adapter: the adapters are already merged; nothing done", stacklevel=2)
            return
        done = []
        try:
            for name, layer in self.adapted_layers().items():
                layer.merge(safe_merge=safe_merge, name=name)
                done.append(layer)
        except ValueError:
            for layer in done:
                layer.unmerge()
            raise

    def unmerge_adapter(self) -> None:
        """Undo :meth:`merge_adapter`: the kept W0 tensors go back and the adapters run again."""
        if not self.merged:
            warnings.warn("unmerge_adapter: the adapters are not merged; nothing done", stacklevel=2)
            return
        for layer in self._adapted.values():
            layer.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """Fold the active adapter into its base weights (fp32 merge, one cast) and return the plain model;
        the other named adapters are dropped with this wrapper (PEFT's ``merge_and_unload``).

        On a quantized base (bitsandbytes 4-/8-bit) each adapted layer is dequantised, merged and replaced
        by a full-precision ``nn.Linear`` in the model's floating dtype (its input embeddings'), with a
        warning: the merged layers take 4–8× the memory of the quantized ones. When no quantized layer is
        left, the model's quantization markers (``hf_quantizer``, ``config.quantization_config``) are
        removed, so that ``save_pretrained`` writes a plain full-precision checkpoint.
        """
        if self._disabled:
            raise ValueError(
                "merge_and_unload: not inside `with model.disable_adapter():`; leave the block first"
            )
        layers = self.adapted_layers()
        quantized = [name for name, layer in layers.items() if is_quantized_linear(layer.base_layer)]
        dtype = _floating_dtype(self.base_model) if quantized else None
        for name, layer in layers.items():
            _set_submodule(self.base_model, name, layer.merged_linear(dtype))
        if quantized:
            _after_dequantising_merge(self.base_model, quantized, dtype)
        return self.base_model


def _floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's unquantized weights (its input embeddings'), fp32 when it has none."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    return weight.dtype if weight is not None and weight.is_floating_point() else torch.float32


def _after_dequantising_merge(model: nn.Module, merged: list[str], dtype: torch.dtype) -> None:
    remaining = [n for n, m in model.named_modules() if is_quantized_linear(m)]
    message = (
        f"merge_and_unload dequantised {len(merged)} quantized layers and merged the adapters into "
        f"full-precision {dtype} nn.Linear layers (the merged model is not quantized)"
    )
    if remaining:
        message += f"; {len(remaining)} layers without adapters stay quantized (e.g. {remaining[0]})"
    else:
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
            quantizer.remove_quantization_config(model)
    logger.warning(message)
    warnings.warn(message, stacklevel=3)


def base_fingerprint(model: HyftModel, adapter_name: str | None = None) -> dict[str, str]:
    """Per adapted layer: a short hash of W0 (fp32 norm + a few fixed entries) to refuse a wrong base.

    For a quantized layer W0 is the dequantised weight, so an adapter trained on a quantized base loads
    on the same base quantized the same way (and is refused on its full-precision original)."""
    prints = {}
    for name, layer in model.adapted_layers(adapter_name).items():
        weight = model._base_weight(
            name, layer
        ).cpu()  # quantized bases: of the dequantised Ŵ; merged: the kept W0
        flat = weight.flatten()
        probe = torch.stack([weight.norm(), flat[0], flat[len(flat) // 2], flat[-1]])
        prints[name] = hashlib.sha256(f"{tuple(weight.shape)}{probe.tolist()}".encode()).hexdigest()[:16]
    return prints


def wrap(
    base_model: nn.Module,
    config: AdapterConfig,
    init_batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
    seed: int = 0,
    adapter_name: str = DEFAULT_ADAPTER,
) -> HyftModel:
    """Put ``config.method`` adapters on ``base_model`` (modified in place) and freeze the base weights.

    ``init_batches`` (model-input dicts with labels) are required by LoRA-GA and the hybrid: the
    gradient they produce sets the initial adapter (methods.md §2). ``adapter_name`` names this first
    adapter; :meth:`HyftModel.add_adapter` puts more beside it.
    """
    check_adapter_name(adapter_name)
    if config.method == "full":
        _refuse_full_on_quantized(base_model)
        base_model.requires_grad_(True)
        return HyftModel(base_model, config, adapter_name=adapter_name)
    targets, heads = _targets_and_heads(base_model, config)
    inits, report = _gradient_init(base_model, targets, config, init_batches, seed)
    install_layers(base_model, config, targets, heads, inits)
    return HyftModel(base_model, config, report, adapter_name)


def _targets_and_heads(
    base_model: nn.Module, config: AdapterConfig, fenced: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """(layers to adapt, heads to train) for ``config``: no adapted layer inside a head, its own or one of
    the ``fenced`` modules (other adapters' heads)."""
    targets = find_targets(base_model, config.target_modules, config.exclude_modules)
    heads = find_heads(base_model, config.modules_to_save)
    return [t for t in targets if not _under(t, [*heads, *fenced])], heads


def _gradient_init(
    base_model: nn.Module,
    targets: list[str],
    config: AdapterConfig,
    init_batches: Iterable[Mapping[str, torch.Tensor]] | None,
    seed: int,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], LoraGaInitReport | None]:
    """LoRA-GA's initial factors per layer and the report of their gradient pass; none for other methods."""
    if config.method not in NEEDS_GRADIENT_INIT:
        return {}, None
    if init_batches is None:
        raise ValueError(
            f"method {config.method!r} needs init_batches (training batches with labels) to estimate the "
            "gradient for its LoRA-GA initialisation"
        )
    return estimate_lora_ga_init(
        base_model, _lora_targets(base_model, targets, config), init_batches, config, seed
    )


def base_quantization(model: HyftModel, adapter_name: str | None = None) -> str | None:
    """How the adapted layers' weights are stored: "nf4", "fp4", "int8" (or several, comma-joined), None
    for full precision; saved beside the fingerprint so a mismatch can name the cause."""
    kinds = sorted(
        {
            kind
            for layer in model.adapted_layers(adapter_name).values()
            if (kind := quantization_kind(layer.base_layer)) is not None
        }
    )
    return ",".join(kinds) or None


def _refuse_full_on_quantized(model: nn.Module) -> None:
    if is_quantized_model(model):
        raise ValueError(
            "full fine-tuning needs a full-precision base: this model is quantized (bitsandbytes 4-/8-bit "
            "weights are frozen integers without gradients); load it without quantization, or train an "
            "adapter (lora, lora_ga, boft, oft, unitary, hybrid) on the quantized base"
        )


def _untied_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with each tied tensor once (BLOOM and GPT-2 tie lm_head to the embeddings;
    safetensors refuses shared storage), first name wins, as transformers saves it."""
    state, seen = {}, set()
    for key, tensor in model.state_dict().items():
        pointer = (tensor.device, tensor.data_ptr(), tensor.shape) if tensor.numel() else None
        if pointer is not None and pointer in seen:
            continue
        if pointer is not None:
            seen.add(pointer)
        state[key] = tensor.detach().cpu().contiguous()
    return state


def _load_untied_state(model: nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
    """Inverse of :func:`_untied_state`: every key the file lacks must be tied to one it has."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    loaded_pointers = {current[k].data_ptr() for k in state if k in current}
    untied = [k for k in missing if current[k].data_ptr() not in loaded_pointers]
    if untied or unexpected:
        raise ValueError(
            f"{directory / FULL_WEIGHTS_NAME}: does not fit {type(model).__name__}: missing "
            f"{untied[:5]}, unexpected {list(unexpected)[:5]}"
        )


def _read_full_state(directory: Path) -> dict[str, torch.Tensor]:
    """The full fine-tuning weights: ``model.safetensors``, or every shard its index names."""
    index = directory / FULL_INDEX_NAME
    if not (directory / FULL_WEIGHTS_NAME).is_file() and index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(directory / shard)))
        return state
    return load_file(str(directory / FULL_WEIGHTS_NAME))


def _lora_targets(model: nn.Module, targets: list[str], config: AdapterConfig) -> list[str]:
    """Layers that get a LoRA-GA branch (the hybrid's unitary-only layers do not)."""
    if config.method == "hybrid" and config.unitary_mode == "replace" and config.unitary_modules:
        return [t for t in targets if not matches_pattern(t, config.unitary_modules)]
    return targets


@dataclass(frozen=True)
class _SavedAdapter:
    """An adapter folder's config, read and checked (not yet its tensors)."""

    directory: Path
    config_path: Path
    saved: dict[str, Any]  # adapter_config.json (or hyft_config.json) as written
    block: dict[str, Any]  # its "hyft" block
    config: AdapterConfig

    def tensors(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.directory / WEIGHTS_NAME))


def _read_saved(directory: Path) -> _SavedAdapter:
    config_path = directory / CONFIG_NAME
    if not config_path.is_file() and (directory / FULL_CONFIG_NAME).is_file():
        config_path = directory / FULL_CONFIG_NAME  # full fine-tuning saved as a transformers folder
    if not config_path.is_file():
        subfolders = (
            sorted(p.name for p in directory.iterdir() if (p / CONFIG_NAME).is_file())
            if directory.is_dir()
            else []
        )
        hint = (
            f"; its sub-folders {subfolders} hold adapters (save_pretrained writes every adapter but "
            f"'{DEFAULT_ADAPTER}' in a sub-folder named after it): load one from there"
            if subfolders
            else ""
        )
        raise FileNotFoundError(
            f"{config_path}: no adapter config (expected {CONFIG_NAME}, or "
            f"{FULL_CONFIG_NAME} for full fine-tuning, from save_pretrained){hint}"
        )
    saved = json.loads(config_path.read_text())
    if "hyft" not in saved:
        raise ValueError(f"{config_path}: not a hyft adapter (no 'hyft' block); load PEFT adapters with peft")
    block = saved["hyft"]
    if block.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_path}: format_version {block.get('format_version')} != {FORMAT_VERSION}")
    return _SavedAdapter(directory, config_path, saved, block, AdapterConfig.model_validate(block["adapter"]))


def _check_layers_exist(base_model: nn.Module, saved: _SavedAdapter) -> None:
    modules = dict(base_model.named_modules())
    for name in saved.block["target_layers"]:
        if name not in modules:
            raise ValueError(
                f"{saved.config_path}: adapted layer {name!r} does not exist in {type(base_model).__name__}"
            )


def _load_saved_state(
    model: HyftModel, adapter_name: str, saved: _SavedAdapter, state: dict[str, torch.Tensor]
) -> None:
    """Check that ``model``'s base is the one ``saved`` was trained on, then put its tensors ``state`` into
    the adapter ``adapter_name``'s layers and heads."""
    block = saved.block
    mismatched = [
        n for n, fp in base_fingerprint(model, adapter_name).items() if block["base_fingerprint"].get(n) != fp
    ]
    trained_on, loaded_on = block.get("base_quantization"), base_quantization(model, adapter_name)
    if mismatched and "base_quantization" in block and trained_on != loaded_on:
        raise ValueError(
            f"{saved.config_path}: the adapter was trained on a {trained_on or 'full-precision'} base, and "
            f"this base is {loaded_on or 'full-precision'} (layers {mismatched[:3]}... differ); load the "
            "base the same way (models[].quantization), or merge on the base it was trained on"
        )
    if mismatched:
        raise ValueError(
            f"{saved.config_path}: the base model's weights differ from the ones the adapter was trained on "
            f"(layers {mismatched[:3]}...); load it on the same base model"
        )
    for name, layer in model.adapted_layers(adapter_name).items():
        prefix = f"{PEFT_PREFIX}{name}."
        layer_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if block.get("tensor_layout") == TENSOR_LAYOUT:  # OFT/BOFT saved in PEFT's layout (peft_format.py)
            load_peft_state(layer, layer_state, saved.saved["peft_type"])
        else:  # hyft's own layout, also every OFT/BOFT folder written before the PEFT layout
            layer.load_adapter_state(layer_state)
    for head in model.head_names(adapter_name):
        prefix = f"{PEFT_PREFIX}{head}."
        head_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model.head_module(adapter_name, head).load_state_dict(head_state, strict=True)


def load(
    base_model: nn.Module,
    directory: str | Path,
    is_trainable: bool = False,
    adapter_name: str = DEFAULT_ADAPTER,
) -> HyftModel:
    """Load an adapter saved by :meth:`HyftModel.save_pretrained` onto ``base_model`` (modified in place),
    named ``adapter_name``.

    ``directory`` is the folder holding the adapter's ``adapter_config.json``: for a model saved with several
    adapters, the top folder holds ``"default"`` and ``directory/<name>`` each other one; load those with
    :meth:`HyftModel.load_adapter` (PEFT's ``PeftModel.from_pretrained`` + ``load_adapter`` read the same).
    """
    check_adapter_name(adapter_name)
    saved = _read_saved(Path(directory))
    config = saved.config
    if config.method == "full":
        _refuse_full_on_quantized(base_model)
        _load_untied_state(base_model, _read_full_state(saved.directory), saved.directory)
        base_model.requires_grad_(is_trainable)
        return HyftModel(base_model, config, adapter_name=adapter_name)
    state = saved.tensors()
    _check_layers_exist(base_model, saved)
    install_layers(base_model, config, saved.block["target_layers"])
    model = HyftModel(base_model, config, adapter_name=adapter_name)
    _load_saved_state(model, adapter_name, saved, state)
    if not is_trainable:
        model.requires_grad_(False)
    model.eval()
    return model
