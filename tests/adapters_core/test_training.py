"""The training loop: bitwise resume, per-branch gradient norms, a real-data learning test."""

from __future__ import annotations

import json

import torch

import hyft
from hyft.training import TrainConfig, train
from tests.conftest import minilm_classifier, minilm_path, tiny_llama


def _lm_examples(n=24, length=10, seed=1):
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        ids = torch.randint(3, 128, (length,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": ids})
    return examples


def test_resumed_run_equals_the_uninterrupted_one_bitwise(tmp_path):
    examples = _lm_examples()
    config = TrainConfig(epochs=2, batch_size=4, lr=5e-3, checkpoint_every=2, seed=3)

    def run(out, stop=None):
        model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=4, dropout=0.1))
        result = train(
            model,
            examples,
            config,
            out,
            eval_examples=examples[:8],
            stop_after_steps=stop,
            show_progress=False,
        )
        return model, result

    straight, straight_result = run(tmp_path / "a")
    interrupted, partial = run(tmp_path / "b", stop=5)
    assert partial.steps == 5 and partial.extra["stopped_early"]
    resumed, resumed_result = run(tmp_path / "b")
    assert resumed_result.steps == straight_result.steps == 12
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    losses = [r["loss"] for r in straight_result.history["steps"]]
    assert losses == [r["loss"] for r in resumed_result.history["steps"]]
    assert [e["val_loss"] for e in straight_result.history["epochs"]] == [
        e["val_loss"] for e in resumed_result.history["epochs"]
    ]
    rows = [json.loads(line) for line in (tmp_path / "a" / "progress.jsonl").read_text().splitlines()]
    assert rows[-1]["percent"] == 100.0 and rows[-1]["remaining_s"] is not None


def test_per_branch_gradient_norms_match_autograd_and_groups_get_their_lr(tmp_path):
    examples = _lm_examples(8)
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=4, target_modules=["q_proj"]))
    config = TrainConfig(
        max_steps=1,
        batch_size=8,
        lr=1e-3,
        lr_lora=7e-3,
        warmup_ratio=0.0,
        scheduler="constant",
        max_grad_norm=None,
    )
    layer = model.adapted_layers()["model.layers.0.self_attn.q_proj"]
    B_before = layer.lora_B.detach().clone()
    result = train(model, examples, config, show_progress=False)
    norms = result.history["steps"][0]["branch_grad_norms"]
    assert set(norms) == {"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"}
    # B starts at zero and only A's gradient is zero at step 1 (since B = 0): ‖∇‖ = ‖∇B‖ > 0.
    assert norms["model.layers.0.self_attn.q_proj"]["lora"] > 0
    # First AdamW step moves every entry of B by ≈ lr (Adam's normalised update): the LoRA lr was used.
    moved = (layer.lora_B.detach() - B_before).abs()
    assert torch.allclose(moved[moved > 0].median(), torch.tensor(7e-3), rtol=0.05)


def test_minilm_lora_ga_learns_sst2(shared_data):
    """Real data: a LoRA-GA adapter on the pretrained MiniLM beats the majority class on SST-2 dev."""
    from transformers import AutoTokenizer

    rows = [json.loads(line) for line in (shared_data / "glue" / "sst2.dev.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())

    def encode(row):
        encoded = tokenizer(row["sentence"], truncation=True, max_length=64)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": int(row["label"]),
        }

    train_rows, eval_rows = rows[:320], rows[-200:]
    train_examples = [encode(r) for r in train_rows]
    eval_examples = [encode(r) for r in eval_rows]
    from hyft.training.data import collate

    init = [collate(train_examples[i : i + 16]) for i in range(0, 64, 16)]
    model = hyft.wrap(
        minilm_classifier(num_labels=2),
        hyft.AdapterConfig(method="lora_ga", r=8, alpha=16),
        init_batches=init,
    )
    train(
        model,
        train_examples,
        TrainConfig(epochs=3, batch_size=16, lr=5e-4, lr_head=2e-3, seed=0),
        show_progress=False,
    )
    model.eval()
    with torch.no_grad():
        batch = collate(eval_examples)
        predictions = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits.argmax(-1)
    labels = batch["labels"]
    majority = max(float((labels == 0).float().mean()), float((labels == 1).float().mean()))
    accuracy = float((predictions == labels).float().mean())
    assert accuracy >= majority + 0.15, (accuracy, majority)
