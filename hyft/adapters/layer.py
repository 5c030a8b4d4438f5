"""The base class every adapted ``nn.Linear`` derives from.

An adapted layer keeps the original layer as ``base_layer`` (frozen, never modified) and adds an
adapter path. Adapter tensors live in fp32 whatever the base dtype: the activation is cast to fp32
for the adapter path and the result cast back (PEFT's convention).
"""

from __future__ import annotations

import torch
from torch import nn

from hyft.adapters.config import AdapterConfig
from hyft.adapters.quantized import (
    compute_dtype,
    dequantized_weight,
    is_quantized_linear,
    prepare_quantized_base,
)

ADAPTER_DTYPE = torch.float32


class AdaptedLinear(nn.Module):
    """A frozen ``base_layer`` (d_out×d_in) plus an adapter; subclasses define the adapter path.

    Subclasses implement ``forward(x: (..., d_in)) -> (..., d_out)``, ``merged_weight() -> (d_out, d_in)``
    in fp32, ``branch_parameters()`` (trainable tensors grouped by branch, for per-branch gradient norms
    and learning rates) and the save/load mapping ``adapter_state`` / ``load_adapter_state``.
    """

    method: str = "base"

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"hyft adapts nn.Linear layers only, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.base_layer.requires_grad_(False)
        prepare_quantized_base(
            base_layer
        )  # bitsandbytes 4-bit: keep its trainable-through kernel (quantized.py)
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.config = config

    # -- what subclasses provide -------------------------------------------------------------
    def merged_weight(self) -> torch.Tensor:
        """The effective weight W_eff (d_out, d_in) in fp32, as the adapter's forward uses it."""
        raise NotImplementedError

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trainable tensors per branch, e.g. ``{"lora": [A, B]}`` or ``{"rotation": [Q]}``."""
        raise NotImplementedError

    def lr_group(self, branch: str) -> str:
        """The learning-rate group (``TrainConfig.branch_lr``) of one of :meth:`branch_parameters`' branches;
        the branch's own name unless a subclass knows better (a gradient-initialised LoRA: ``lora_ga``)."""
        return branch

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Tensors to save, keyed relative to this layer in PEFT style (``lora_A.weight``, ...)."""
        raise NotImplementedError

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`adapter_state`; raises KeyError/ValueError on missing keys or shapes."""
        raise NotImplementedError

    def after_backward(self) -> None:
        """Called once per optimizer step after gradients are complete (the hybrid updates λ here)."""

    # -- shared helpers ------------------------------------------------------------------------
    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x)

    def base_weight(self) -> torch.Tensor:
        """W0 (d_out, d_in) in fp32, detached: dequantised (one layer at a time) for a quantized base; the
        kept original while the adapter is merged (:meth:`merge`)."""
        backup = self._buffers.get("merge_backup")
        if backup is not None:
            return backup.detach().float()
        return dequantized_weight(self.base_layer)

    # -- reversible merge ------------------------------------------------------------------------
    @property
    def merged(self) -> bool:
        """Whether the adapter is folded into ``base_layer.weight`` (:meth:`merge`)."""
        return "merge_backup" in self._buffers

    @torch.no_grad()
    def merge(self, safe_merge: bool = False, name: str | None = None) -> None:
        """Write W_eff (merged in fp32, cast once to the base dtype) into ``base_layer.weight`` and forward
        through the base layer alone. The original W0 tensor is kept (a non-persistent buffer, moved by
        ``.to()``), so :meth:`unmerge` restores it bit for bit; the cost is one extra copy of this weight
        while merged. ``safe_merge`` refuses a merged weight with NaN/Inf (also from overflow in the cast)."""
        if self.merged:
            return
        base = self.base_layer
        if is_quantized_linear(base):
            raise ValueError(
                f"layer {name or self.extra_repr()}: a quantized base weight cannot hold a merged "
                "adapter; use merge_and_unload(), which dequantises the merged layers"
            )
        weight = base.weight
        merged = self.merged_weight().to(device=weight.device, dtype=weight.dtype)
        if safe_merge and not bool(torch.isfinite(merged).all()):
            bad = int((~torch.isfinite(merged)).sum())
            raise ValueError(
                f"safe_merge: layer {name or self.extra_repr()!r}: the merged weight has {bad} NaN/Inf "
                f"entries of {merged.numel()} ({weight.dtype}); the adapter was not merged"
            )
        self.register_buffer("merge_backup", weight.data, persistent=False)
        weight.data = merged
        self.forward = base.forward  # the instance attribute shadows the adapter path until unmerge()

    @torch.no_grad()
    def unmerge(self) -> None:
        """Put the kept W0 back into ``base_layer.weight`` and the adapter path back into ``forward``."""
        if not self.merged:
            return
        backup = self._buffers.pop("merge_backup")
        weight = self.base_layer.weight
        weight.data = backup.to(device=weight.device, dtype=weight.dtype)
        self.__dict__.pop("forward", None)

    def merged_linear(self, dtype: torch.dtype | None = None) -> nn.Linear:
        """A plain nn.Linear with the adapter folded in: merged in fp32, cast once to the base dtype.

        A quantized base is dequantised first; the result is a full-precision nn.Linear in ``dtype``
        (default: the dtype the base weight had before quantization, fp32 for 8-bit layers).
        """
        base = self.base_layer
        dtype = dtype if dtype is not None and is_quantized_linear(base) else compute_dtype(base)
        merged = nn.Linear(
            self.in_features,
            self.out_features,
            bias=base.bias is not None,
            device=base.weight.device,
            dtype=dtype,
        )
        with torch.no_grad():
            merged.weight.copy_(self.merged_weight().to(dtype))
            if base.bias is not None:
                merged.bias.copy_(base.bias.to(dtype))
        return merged

    def extra_repr(self) -> str:
        return f"method={self.method}, in_features={self.in_features}, out_features={self.out_features}"


def check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> torch.Tensor:
    """Raise a readable error when a loaded tensor does not have the shape this layer needs."""
    if tuple(tensor.shape) != expected:
        raise ValueError(f"adapter tensor {name!r} has shape {tuple(tensor.shape)}, expected {expected}")
    return tensor


def is_plain_linear(layer: nn.Module) -> bool:
    """Exactly ``nn.Linear`` (no subclass such as a quantised layer): its output is not saved for
    backward, so adapters may accumulate into it in place, and its weight can be read directly."""
    return type(layer) is nn.Linear


def adapted_layers(model: nn.Module) -> dict[str, AdaptedLinear]:
    """{dotted name: layer} of the outermost adapted layers (a hybrid's own branches are not listed)."""
    found: dict[str, AdaptedLinear] = {}
    for name, module in model.named_modules():
        if isinstance(module, AdaptedLinear) and not any(name.startswith(outer + ".") for outer in found):
            found[name] = module
    return found
