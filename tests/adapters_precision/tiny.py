"""Tiny random BERT classifier and the per-method adapter settings shared by the precision tests."""

from __future__ import annotations

import torch

from tests.conftest import ADAPTER_METHODS, model_inputs, wrap_kwargs  # noqa: F401 (wrap_kwargs re-exported)

METHODS: dict[str, dict] = {**ADAPTER_METHODS, "full": {"method": "full"}}  # every method the trainer runs


def tiny_bert(seed: int = 0, vocab: int = 128, hidden: int = 64, num_labels: int = 3):
    """BertForSequenceClassification, hidden 64, 2 layers, random weights, eval mode (dropout off)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=vocab,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


def bert_inputs(batch: int = 2, length: int = 12, seed: int = 1) -> dict[str, torch.Tensor]:
    """Token ids < 128 with class labels, for :func:`tiny_bert`."""
    inputs = model_inputs("llama", batch=batch, length=length, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return inputs | {"labels": torch.randint(0, 3, (batch,), generator=generator)}
