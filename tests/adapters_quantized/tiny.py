"""A tiny random Llama saved to disk and loaded quantized, plus independent references for the quantizers.

The references re-implement the published formats from scratch (they never call bitsandbytes or hyft),
so the tests compare hyft's dequantisation and merges against numbers derived from the fp32 weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import ADAPTER_METHODS, tiny_llama, wrap_kwargs  # noqa: F401 (wrap_kwargs re-exported)

pytest.importorskip("bitsandbytes")

HIDDEN = 64  # one NF4 block of 64 weights per row of a 64-wide layer
METHODS = ADAPTER_METHODS
QUANTIZATIONS = {"nf4": {"bits": 4, "quant_type": "nf4", "compute_dtype": "fp32"}, "int8": {"bits": 8}}

# NF4 code values (QLoRA, Dettmers et al. 2023, Appendix E), in increasing order.
NF4_CODE = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]
)


def nf4_reference(weight: torch.Tensor, block: int = 64) -> torch.Tensor:
    """Round-to-nearest NF4 with one absmax per block of ``block`` consecutive weights, dequantised."""
    flat = weight.detach().float().reshape(-1, block)
    absmax = flat.abs().amax(dim=1, keepdim=True)
    index = ((flat / absmax).unsqueeze(-1) - NF4_CODE).abs().argmin(dim=-1)
    return (NF4_CODE[index] * absmax).reshape(weight.shape)


def int8_reference(weight: torch.Tensor) -> torch.Tensor:
    """LLM.int8() weights: fp16, then round(127·w / rowmax) per output row, dequantised."""
    w = weight.detach().half().float()
    rowmax = w.abs().amax(dim=1, keepdim=True)
    return torch.round(w * (127.0 / rowmax)) * rowmax / 127


REFERENCES = {"nf4": nf4_reference, "int8": int8_reference}


def save_tiny_llama(directory: Path, seed: int = 0) -> Path:
    tiny_llama(seed, hidden=HIDDEN).save_pretrained(directory)
    return directory


def load_fp32(directory: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def load_quantized(directory: Path, kind: str, prepare: bool = True) -> nn.Module:
    """The saved model through ``models[].quantization`` → BitsAndBytesConfig, on the CPU, prepared as
    ``hyft.models.load_base_model`` prepares it (``prepare=False``: as transformers returns it)."""
    from transformers import AutoModelForCausalLM

    from hyft.adapters.quantized import prepare_quantized_model
    from hyft.models import Quantization

    bnb_config = Quantization.model_validate(QUANTIZATIONS[kind]).to_bitsandbytes()
    model = AutoModelForCausalLM.from_pretrained(
        directory, quantization_config=bnb_config, device_map="cpu", dtype=torch.float32
    ).eval()
    return prepare_quantized_model(model) if prepare else model


def dequantised_reference_model(directory: Path, kind: str) -> nn.Module:
    """The fp32 model with every quantizable linear's weight replaced by the reference dequantisation."""
    model = load_fp32(directory)
    with torch.no_grad():
        for name, module in model.named_modules():
            if type(module) is nn.Linear and name != "lm_head":
                module.weight.copy_(REFERENCES[kind](module.weight))
    return model


def batch(seed: int = 1, size: int = 4, length: int = 16) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 128, (size, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def forward_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in inputs.items() if k != "labels"}
