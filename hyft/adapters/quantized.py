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
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle


def _bnb_classes() -> tuple[type, ...]:
    if "bitsandbytes" not in sys.modules:  # no quantized layer can exist without the module loaded
        return ()
    import bitsandbytes as bnb

    return (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)


def is_quantized_linear(layer: nn.Module) -> bool:
    """True for a bitsandbytes ``Linear4bit`` / ``Linear8bitLt``
    (an nn.Linear subclass with packed weights)."""
    classes = _bnb_classes()
    return bool(classes) and isinstance(layer, classes)


def quantization_kind(layer: nn.Module) -> str | None:
    """ "nf4" / "fp4" for 4-bit layers, "int8" for LLM.int8() layers, None for anything else."""
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
    the layer stop learning) and outputs carry bf16 rounding. The repacking is switched off here (call
    this, or :func:`prepare_quantized_model`, before any such forward: ``hyft.models.load_base_model``
    does). A layer already repacked is unpacked, with a warning: the repacking rounded its block scales
    to bf16 (for good), and bitsandbytes 0.50's inverse leaves the scales in the packed (blocks, rows)
    order, which is put back in row order here.
    """
    if quantization_kind(layer) not in ("nf4", "fp4"):
        return
    layer.support_avx512bf16_for_cpu = False
    weight = layer.weight
    if getattr(weight.quant_state, "packing_format_for_cpu", False):
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

        data, state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)
        if (
            not state.nested and state.absmax.dim() == 2
        ):  # (in/blocksize, out) → one scale per block, row order
            state.absmax = state.absmax.T.reshape(-1).float()
        weight.data, weight.quant_state = data, state
        warnings.warn(
            "a 4-bit layer had been repacked for bitsandbytes' bf16 CPU inference kernel (an eval forward "
            "without gradients before hyft wrapped the model), which rounded its block scales to bf16; "
            "unpacked it. Call hyft.adapters.quantized.prepare_quantized_model(model) right after loading "
            "(hyft.models.load_base_model does) to keep the scales exact",
            stacklevel=3,
        )


def prepare_quantized_model(model: nn.Module) -> nn.Module:
    """:func:`prepare_quantized_base` on every quantized linear layer of ``model``; returns ``model``."""
    for module in model.modules():
        prepare_quantized_base(module)
    return model


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
    return (
        bnbf.dequantize_4bit(weight.data, weight.quant_state)
        .to(dtype)
        .view(layer.out_features, layer.in_features)
    )


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


GradientSink = Callable[[str, torch.Tensor], None]


def tap_weight_gradients(
    model: nn.Module, layers: dict[str, nn.Module], sink: GradientSink
) -> list[RemovableHandle]:
    """LoRA-GA's gradient for layers whose weight cannot take one (quantized): ``sink(name, G)`` after each
    backward, with ``G = Σ_t g_tᵀ x_t`` (d_out, d_in) fp32 on the CPU from the layer's input x and output
    gradient g. For ``y = x·Ŵᵀ + b`` that is exactly ∂L/∂Ŵ, the gradient on the dequantised weight, and
    no weight is dequantised to form it: the device holds the quantized model, the activations (whose
    references autograd keeps anyway) and one layer's G at a time, as the fp32 path does.

    With every base parameter frozen, nothing in the forward would require grad: the input embeddings'
    output is made to (as transformers' ``enable_input_require_grads`` does), or else each tapped output.
    Remove the returned handles afterwards. A layer called several times per forward reports once per call.
    """
    handles: list[RemovableHandle] = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
            x = (args[0] if args else next(iter(kwargs.values()))).detach()
            if not output.requires_grad:
                output.requires_grad_(True)

            def on_gradient(grad: torch.Tensor) -> None:
                flat_grad = grad.reshape(-1, grad.shape[-1]).to(torch.float32)
                sink(name, (flat_grad.T @ x.reshape(-1, x.shape[-1]).to(torch.float32)).cpu())

            output.register_hook(on_gradient)

        return hook

    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if layers and embeddings is not None:

        def require_grad(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if not output.requires_grad:
                output.requires_grad_(True)

        handles.append(embeddings.register_forward_hook(require_grad))
    for name, layer in layers.items():
        handles.append(layer.register_forward_hook(make_hook(name), with_kwargs=True))
    return handles
