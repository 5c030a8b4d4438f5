"""Real data: BOFT, OFT and the unitary adapter each learn GLUE SST-2 on MiniLM (dev split cut in two).

256 training sentences, 2 epochs with ``hyft.training.train`` (AdamW, warm-up, linear decay), then
accuracy on 200 held-out sentences must clear the majority-class rate by 15 points. The rotations must
still be exactly orthogonal/unitary after real training.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

import hyft
from hyft.training import TrainConfig, train
from hyft.training.data import collate
from tests.conftest import minilm_path

METHODS = {
    "boft": ({"method": "boft", "boft_block_size": 16, "boft_n_butterfly_factor": 3}, 1e-3),
    "oft": ({"method": "oft", "boft_block_size": 32}, 1e-3),
    "unitary": ({"method": "unitary"}, 5e-3),
}


@pytest.fixture(autouse=True)
def one_thread():
    # Two intra-op threads on two shared, busy cores stall at every parallel region (seen: single steps
    # 20× slower); one thread keeps this test's run time predictable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sst2(shared_data):
    from transformers import AutoTokenizer

    rows = [json.loads(line) for line in (shared_data / "glue" / "sst2.dev.jsonl").read_text().splitlines()]
    random.Random(0).shuffle(rows)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())

    def encode(chunk):
        examples = []
        for row in chunk:
            encoded = tokenizer(row["sentence"], truncation=True, max_length=64)
            examples.append(
                {
                    "input_ids": encoded["input_ids"],
                    "attention_mask": encoded["attention_mask"],
                    "labels": int(row["label"]),
                }
            )
        return examples

    return encode(rows[:256]), encode(rows[256:456])


def accuracy(model, examples) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(examples), 100):
            batch = collate(examples[start : start + 100])
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(examples)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_adapter_learns_sst2_on_minilm(sst2, method):
    from transformers import AutoModelForSequenceClassification

    train_examples, eval_examples = sst2
    settings, lr = METHODS[method]
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    model = hyft.wrap(base, hyft.AdapterConfig(**settings))
    config = TrainConfig(
        epochs=2,
        batch_size=16,
        lr=lr,
        lr_rotation=lr,
        lr_head=2e-3,
        warmup_ratio=0.1,
        scheduler="linear",
        seed=0,
    )
    result = train(model, train_examples, config, show_progress=False)
    positives = sum(e["labels"] for e in eval_examples) / len(eval_examples)
    majority = max(positives, 1 - positives)
    score = accuracy(model, eval_examples)
    assert score >= majority + 0.15, f"{method}: accuracy {score:.3f} vs majority {majority:.3f}"
    assert result.history["steps"][-1]["loss"] < result.history["steps"][0]["loss"]
    layer = model.adapted_layers()["bert.encoder.layer.0.attention.self.query"]
    if method == "unitary":
        assert layer.unitary_theta.abs().max() > 1e-3
        rows = layer.transform_input(torch.eye(384))
    else:
        assert layer.boft_R.abs().max() > 1e-3
        rows = layer.rotation_matrix()
    assert (rows.T @ rows - torch.eye(384)).abs().max() < 1e-5
