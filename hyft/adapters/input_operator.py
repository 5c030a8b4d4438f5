"""The input-side operator of BOFT/OFT and the hybrid: ``M = R(μQ)`` or ``M = (1 − w)I + w·R``.

A layer with ``rotation_side="input"`` computes ``base(x · M)`` (per token ``Mᵀx``), which equals a frozen
layer with weight ``W0 · Mᵀ``. :meth:`BoftLinear.input_operator` builds an :class:`InputOperator` once per
forward; the operator then says how to run it (on W0 or on the activations) and runs it. One object, so
that BOFT's forward, the hybrid's forward and the tests all take the same decision in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hyft.adapters.butterfly import apply_blocks, apply_factors
from hyft.adapters.rotated_linear import LowRank, can_rotate_weight, rotated_frozen_linear


@dataclass(frozen=True)
class InputOperator:
    """``M`` as blocks, fp32, in one of two forms:

    - *folded*: ``blocks`` (d/g, g, g) are M's diagonal blocks, the blend w already folded in (a g×g
      affine map, independent of the token count); ``blend`` is then ignored;
    - *factors*: ``blocks`` (m, d/b, b, b) are R's butterfly factor blocks with their index vectors
      ``perms`` (m, d); a ``blend`` w is applied to the activations.
    """

    blocks: torch.Tensor
    perms: torch.Tensor
    blend: torch.Tensor | float | None = None

    @property
    def folded(self) -> bool:
        return self.blocks.dim() == 3

    def rotates_weight(self, base: nn.Module) -> bool:
        """Whether ``base(x · M)`` runs as :func:`rotated_frozen_linear` (M rotates W0, not the tokens): M
        folded and ``base`` a plain frozen nn.Linear
        (a quantized or trainable base takes the activation path)."""
        return self.folded and can_rotate_weight(base)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x · M``: x (..., d) any dtype → (..., d) fp32, autocast off (the rotation is
        orthogonality-critical)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x32 = x.to(self.blocks.dtype)
            if self.folded:
                return apply_blocks(x32, self.blocks)
            rotated = apply_factors(x32, self.blocks, self.perms)
            return rotated if self.blend is None else x32 + self.blend * (rotated - x32)

    def linear(self, x: torch.Tensor, base: nn.Module, low_rank: LowRank | None = None) -> torch.Tensor:
        """``base(x · M)``: x (..., d_in) → (..., d_out) in x's dtype; on a plain frozen nn.Linear one fused
        op that rotates W0 and, with ``low_rank``, adds the hybrid's LoRA term sharing x and the backward."""
        if self.rotates_weight(base):
            return rotated_frozen_linear(x, self.blocks, base.weight, base.bias, low_rank)
        if low_rank is not None:
            raise ValueError("the fused low-rank term needs the weight-side path (a plain frozen nn.Linear)")
        return base(self.apply(x).to(x.dtype))
