"""Quantized bases: bitsandbytes ``Linear4bit`` (NF4/FP4, QLoRA) and ``Linear8bitLt`` (LLM.int8()).

A quantized layer is an ``nn.Linear`` subclass whose weight holds packed integers, so hyft adapts it like
any other target but never reads ``base_layer.weight`` as a matrix: the adapter calls the layer itself
in its forward (LoRA adds its low-rank path to the layer's output; BOFT, OFT, the unitary adapter and
the hybrid feed it the rotated input, so the weight-side path of :mod:`rotated_linear` stays off), and
every place that needs W0 as numbers (merges, the norm cap's ‖W0‖, LoRA-GA's weight-spectrum scale,
the base fingerprint) dequantises one layer at a time with :func:`dequantized_weight`.

Dequantisation: NF4/FP4 ``Ŵ = code[q] · absmax_block`` (bitsandbytes' ``dequantize_4bit``, double
quantisation included); int8 ``Ŵ = CB · SCB / 127`` per output row. For 4-bit, ``x·Ŵᵀ`` is exactly
what the layer computes in training mode with an fp32 compute dtype. LLM.int8() also quantizes the
activations (rows outside the outlier threshold), so an 8-bit layer's output differs from ``x·Ŵᵀ``
by that activation rounding; a merged model reproduces the adapter only to that tolerance.

bitsandbytes is imported only when a model already contains its layers (it is an optional runtime
dependency of the loader, never of the adapters).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn


def _bnb_classes() -> tuple[type, ...]:
    if "bitsandbytes" not in sys.modules:  # no quantized layer can exist without the module loaded
        return ()
    import bitsandbytes as bnb

    return (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)


def is_quantized_linear(layer: nn.Module) -> bool:
    """True for a bitsandbytes ``Linear4bit`` / ``Linear8bitLt`` (an nn.Linear subclass with packed weights)."""
    classes = _bnb_classes()
    return bool(classes) and isinstance(layer, classes)


def quantization_kind(layer: nn.Module) -> str | None:
    """"nf4" / "fp4" for 4-bit layers, "int8" for LLM.int8() layers, None for anything else."""
    if not is_quantized_linear(layer):
        return None
    state = getattr(layer.weight, "quant_state", None)
    if state is not None:
        return str(state.quant_type)
    return "int8"


def is_quantized_model(model: nn.Module) -> bool:
    """Whether ``model`` was loaded quantized (transformers' flag) or contains a quantized linear layer."""
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        return True
    return any(is_quantized_linear(m) for m in model.modules())


def prepare_quantized_base(layer: nn.Module) -> None:
    """Make a quantized base layer safe to train through; a no-op for other layers.

    On CPUs with AVX512-BF16, bitsandbytes' ``Linear4bit`` repacks its weight for a bf16 inference
    kernel on the first eval-mode forward without gradients, and keeps it repacked: later forwards run
    that kernel, which has no autograd formula, so the input gradient silently vanishes (adapters before
    the layer stop learning) and outputs carry bf16 rounding. The repacking is switched off for adapted
    layers and undone if it already happened, so training and evaluation compute the same ``x·Ŵᵀ``.
    """
    if quantization_kind(layer) not in ("nf4", "fp4"):
        return
    layer.support_avx512bf16_for_cpu = False
    weight = layer.weight
    if getattr(weight.quant_state, "packing_format_for_cpu", False):
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

        weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)


def dequantized_weight(layer: nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """W0 of ``layer`` as a (d_out, d_in) tensor in ``dtype``, detached: the dequantised Ŵ for a
    quantized layer (a new tensor, one layer's worth of memory), the weight itself for a plain one."""
    kind = quantization_kind(layer)
    if kind is None:
        return layer.weight.detach().to(dtype)
    import bitsandbytes.functional as bnbf

    weight = layer.weight
    if kind == "int8":
        scales = getattr(weight, "SCB", None)
        if scales is None:  # moved to the layer's state by its first forward
            scales = layer.state.SCB
        if scales is None or weight.dtype != torch.int8:  # has_fp16_weights: not quantized yet
            return weight.detach().to(dtype)
        return bnbf.int8_vectorwise_dequant(weight.data, scales).to(dtype)
    prepare_quantized_base(layer)  # dequantize_4bit reads the canonical packing only
    return bnbf.dequantize_4bit(weight.data, weight.quant_state).to(dtype).view(layer.out_features, layer.in_features)


def weight_product(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x·W0ᵀ`` without the bias: ``F.linear`` on a plain weight, the layer's own kernel (minus its bias)
    on a quantized one, so the packed weight is never expanded."""
    if not is_quantized_linear(layer):
        return F.linear(x, layer.weight)
    out = layer(x)
    return out if layer.bias is None else out - layer.bias.to(out.dtype)


def compute_dtype(layer: nn.Module, fallback: torch.dtype = torch.float32) -> torch.dtype:
    """The floating dtype a merged replacement of ``layer`` should have: a plain layer's weight dtype; for a
    4-bit layer the dtype its weight had before quantization; ``fallback`` for 8-bit (not recorded)."""
    kind = quantization_kind(layer)
    if kind is None:
        return layer.weight.dtype
    if kind != "int8":
        return layer.weight.quant_state.dtype
    return fallback
