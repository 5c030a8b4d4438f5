"""A frozen linear layer on block-rotated inputs, rotating the weight instead of the activations.

``y = (x · blockdiag(M)) · W0ᵀ + b`` for the input-side orthogonal adapters (BOFT/OFT, the hybrid's
BOFT branch), with M's diagonal blocks (k, g, g) and a frozen W0 (d_out, d_in). When the T tokens
outnumber the d_out rows of W0 (training batches), the forward rotates W0 (``W0·blockdiag(M)ᵀ``:
2·d_out·d_in·g FLOPs and a transient weight-sized buffer) instead of the activations (2·T·d_in·g),
then runs the one GEMM the frozen layer runs anyway; with few tokens (decoding) it rotates them.
The backward needs ``u = ∂L/∂(xM) = ∂L/∂y · W0`` (the GEMM a frozen layer's backward always runs),
then ``∂L/∂x = u · blockdiag(M)ᵀ`` and ``∂L/∂M_k = x_kᵀ u_k`` (two block matmuls over the tokens).
Against rotating the activations in the forward too (three block matmuls over T·d_in), this saves
one and the (T, d_in) rotated copy; autograd keeps only x (in its own dtype), the blocks and W0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hyft.adapters.butterfly import apply_blocks, block_gradient
from hyft.adapters.layer import is_plain_linear

LowRank = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | float]


def _gemm_dtype(device: str, weight: torch.Tensor) -> torch.dtype:
    """The dtype the frozen layer's own GEMM would run in: the autocast dtype when autocast is on for
    ``device`` (as ``F.linear`` under autocast), else the weight's."""
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


class _RotatedFrozenLinear(torch.autograd.Function):
    """Autocast is handled explicitly (the op must not see it implicitly): the frozen GEMM runs in the
    dtype the base layer's own GEMM would run in (:func:`_gemm_dtype`), in forward and backward alike;
    the rotation of W0 or of the tokens, the LoRA products and every gradient of the fp32 adapter
    tensors run in fp32 with autocast off."""

    @staticmethod
    def forward(ctx, x, blocks, weight, bias, lora_A, lora_B, lora_A0, lora_B0, scale):
        device = x.device.type
        gemm_dtype = _gemm_dtype(device, weight)
        ctx.autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.lora_rank = rank = 0 if lora_A is None else lora_A.shape[0]
        flat = x.reshape(-1, x.shape[-1])
        hidden = factor_A = factor_B = None
        with torch.autocast(device_type=device, enabled=False), torch.no_grad():
            if lora_A is not None:
                # [B, −B0]·[A; A0] as one rank-2r product, the scale on the small factor.
                factor_A = lora_A if lora_A0 is None else torch.cat([lora_A, lora_A0])
                factor_B = (lora_B if lora_B0 is None else torch.cat([lora_B, -lora_B0], dim=1)) * scale
            low_rank = factor_A
            if flat.shape[0] >= weight.shape[0]:  # rotate W0 (d_out rows) rather than the T tokens
                operand = flat.to(gemm_dtype)
                rotated = apply_blocks(weight.to(blocks.dtype), blocks.transpose(-1, -2))
                if lora_A0 is not None and gemm_dtype == rotated.dtype:
                    # fp32 GEMM: the frozen −s·B0A0 joins the rotated weight (d_out·r·d_in FLOPs), so the
                    # tokens only meet the trainable rank-r half. Not for half precision (a half base or
                    # autocast): rounding the sum to it would swallow the small frozen term.
                    rotated.addmm_(factor_B[:, rank:], factor_A[rank:])
                    low_rank = lora_A
                rotated = rotated.to(gemm_dtype)
            else:  # few tokens (decoding, small batches): rotating them is cheaper
                operand = apply_blocks(flat.to(blocks.dtype), blocks).to(gemm_dtype)
                rotated = weight.to(gemm_dtype)
            y = F.linear(operand, rotated, None if bias is None else bias.to(gemm_dtype))
            if low_rank is not None:
                hidden = flat.to(low_rank.dtype) @ low_rank.T  # (T, r) or (T, 2r)
                if y.dtype == hidden.dtype:
                    y.addmm_(hidden, factor_B[:, : hidden.shape[1]].T)
                else:
                    y += (hidden @ factor_B[:, : hidden.shape[1]].T).to(y.dtype)
        ctx.save_for_backward(x, blocks, weight, factor_A, factor_B, hidden, scale)
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, blocks, weight, factor_A, factor_B, hidden, scale = ctx.saved_tensors
        enabled, dtype = ctx.autocast
        device = x.device.type
        grad = grad.reshape(-1, grad.shape[-1])
        # The frozen GEMM's backward in the forward's autocast state (what the base layer's would do).
        with torch.autocast(device_type=device, dtype=dtype, enabled=enabled):
            u = grad @ weight  # ∂L/∂(xM), (T, d_in)
        with torch.autocast(device_type=device, enabled=False):
            u = u.to(blocks.dtype)
            k, size, _ = blocks.shape
            flat = x.reshape(-1, k * size)
            grad_x = grad_blocks = grad_A = grad_B = None
            if factor_A is not None:
                grad = grad.to(factor_B.dtype)
                grad_hidden = grad @ factor_B  # (T, r')
            if ctx.needs_input_grad[0]:
                grad_x = apply_blocks(u, blocks.transpose(-1, -2))
                if factor_A is not None:
                    grad_x.addmm_(grad_hidden, factor_A)  # the LoRA path's share, without a separate sum
                grad_x = grad_x.to(x.dtype).view(x.shape)
            if ctx.needs_input_grad[1]:
                grad_blocks = block_gradient(flat.to(blocks.dtype), u, k)
            # Only the trainable half of the rank-2r factors needs a gradient: rank-r products.
            rank = ctx.lora_rank
            if ctx.needs_input_grad[4]:
                grad_A = grad_hidden[:, :rank].T @ flat.to(factor_A.dtype)
            if ctx.needs_input_grad[5]:
                grad_B = (grad.T @ hidden[:, :rank]) * scale
        return grad_x, grad_blocks, None, None, grad_A, grad_B, None, None, None


def can_rotate_weight(layer: torch.nn.Module) -> bool:
    """True for a plain, frozen ``nn.Linear`` (quantised or trainable bases take the activation path)."""
    return (
        is_plain_linear(layer)
        and not layer.weight.requires_grad
        and (layer.bias is None or not layer.bias.requires_grad)
    )


def rotated_frozen_linear(
    x: torch.Tensor,
    blocks: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora: LowRank | None = None,
) -> torch.Tensor:
    """``(x · blockdiag(blocks)) · weightᵀ + bias [+ s·(B·A − B0·A0)·x]``: x (..., k·g), blocks (k, g, g)
    fp32, weight (d_out, k·g) frozen → (..., d_out) in the layer's dtype.

    ``lora`` = (A (r, k·g), B (d_out, r), A0, B0 or None, s), the hybrid's LoRA branch in its frozen-init
    form with its scale s (no gradient). It shares the backward: its input gradient is added into the
    rotation's in place, x is saved once, and A, B get rank-r products (the frozen half needs none).
    Gradients flow to x, blocks, A and B.
    """
    if lora is None:
        return _RotatedFrozenLinear.apply(x, blocks, weight, bias, None, None, None, None, None)
    lora_A, lora_B, lora_A0, lora_B0, scale = lora
    scale = torch.as_tensor(scale, dtype=lora_A.dtype, device=lora_A.device)
    return _RotatedFrozenLinear.apply(x, blocks, weight, bias, lora_A, lora_B, lora_A0, lora_B0, scale)
