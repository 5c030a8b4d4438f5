"""Tiny random BERT classifier and the per-method adapter settings shared by the precision tests."""

from __future__ import annotations

import torch

from tests.conftest import model_inputs

# One entry per adapter method the trainer can run; the hybrid once more with unitary sub-layers.
METHODS: dict[str, dict] = {
    "lora": {"method": "lora", "r": 4, "alpha": 8},
    "lora_ga": {"method": "lora_ga", "r": 4, "alpha": 8},
    "boft": {"method": "boft", "boft_block_size": 4, "boft_n_butterfly_factor": 2},
    "oft": {"method": "oft", "boft_block_size": 8},
    "unitary": {"method": "unitary"},
    "hybrid": {"method": "hybrid", "r": 4, "alpha": 8, "boft_block_size": 4, "boft_n_butterfly_factor": 2},
    "hybrid_unitary": {"method": "hybrid", "r": 4, "alpha": 8, "boft_block_size": 4,
                       "boft_n_butterfly_factor": 2, "unitary_modules": ["o_proj", "down_proj"]},
    "full": {"method": "full"},
}
GRADIENT_INIT = ("lora_ga", "hybrid")


def tiny_bert(seed: int = 0, vocab: int = 128, hidden: int = 64, num_labels: int = 3):
    """BertForSequenceClassification, hidden 64, 2 layers, random weights, eval mode (dropout off)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                        num_attention_heads=4, vocab_size=vocab, max_position_embeddings=64,
                        num_labels=num_labels)
    return BertForSequenceClassification(config).eval()


def bert_inputs(batch: int = 2, length: int = 12, seed: int = 1) -> dict[str, torch.Tensor]:
    """Token ids < 128 with class labels, for :func:`tiny_bert`."""
    inputs = model_inputs("llama", batch=batch, length=length, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return inputs | {"labels": torch.randint(0, 3, (batch,), generator=generator)}


def wrap_kwargs(settings: dict, batch: dict[str, torch.Tensor]) -> dict:
    """``init_batches`` for the methods that need LoRA-GA's gradient pass, nothing for the others."""
    return {"init_batches": [batch]} if settings["method"] in GRADIENT_INIT else {}
