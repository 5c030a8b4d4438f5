"""``models[].quantization`` in the run config: validation messages and the BitsAndBytesConfig it builds."""

from __future__ import annotations

import pytest
import torch

from hyft.config.loading import ConfigError, validate_config
from hyft.experiments.config import RunConfig
from hyft.models import Quantization


def _run_config(quantization=None, methods=None) -> dict:
    model = {"name": "tiny", "name_or_path": "builtin:minilm", "kind": "encoder"}
    if quantization is not None:
        model["quantization"] = quantization
    return {
        "run": {"name": "q"},
        "data": {"task": "demo-nli", "languages": ["en"], "k_shots": [8]},
        "models": [model],
        "methods": methods or {"lora": {}},
    }


def test_bits_3_is_rejected_with_the_valid_choices():
    with pytest.raises(ConfigError) as error:
        validate_config(_run_config({"bits": 3}), RunConfig, "run.yaml")
    message = str(error.value)
    assert "models.0.quantization.bits" in message
    assert "must be 4 (NF4/FP4, QLoRA) or 8 (LLM.int8()), got 3" in message


def test_four_bit_options_are_rejected_on_8_bits():
    with pytest.raises(ConfigError, match="quant_type apply to 4-bit quantization only"):
        validate_config(_run_config({"bits": 8, "quant_type": "fp4"}), RunConfig, "run.yaml")


def test_unknown_keys_and_values_are_named():
    with pytest.raises(ConfigError, match="unknown key 'double_quantization'; did you mean 'double_quant'"):
        validate_config(_run_config({"bits": 4, "double_quantization": True}), RunConfig, "run.yaml")
    with pytest.raises(ConfigError, match="models.0.quantization.quant_type"):
        validate_config(_run_config({"bits": 4, "quant_type": "int4"}), RunConfig, "run.yaml")


def test_full_fine_tuning_with_a_quantized_model_is_rejected():
    with pytest.raises(ConfigError, match=r"methods \['full'\] fine-tune every weight"):
        validate_config(_run_config({"bits": 4}, {"lora": {}, "full": {}}), RunConfig, "run.yaml")


def test_valid_settings_build_the_bitsandbytes_config():
    pytest.importorskip("bitsandbytes")
    config = validate_config(
        _run_config({"bits": 4, "quant_type": "fp4", "compute_dtype": "bf16", "double_quant": True}),
        RunConfig,
        "run.yaml",
    )
    bnb = config.models[0].quantization.to_bitsandbytes()
    assert bnb.load_in_4bit and not bnb.load_in_8bit
    assert bnb.bnb_4bit_quant_type == "fp4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert "classifier" in bnb.llm_int8_skip_modules
    default = Quantization(bits=4).to_bitsandbytes("bfloat16")
    assert default.bnb_4bit_quant_type == "nf4" and default.bnb_4bit_compute_dtype == torch.bfloat16
    eight = Quantization(bits=8).to_bitsandbytes()
    assert eight.load_in_8bit and not eight.load_in_4bit
