"""LoRA-GA's learning rate on real data: which Adam LR suits its gradient-aligned init (issue 13).

    python bench/lora_ga_lr_sweep.py 1e-5 5e-5 1e-4 2.5e-4 5e-4 1e-3   # prints one row per LR

MiniLM (builtin:minilm) with a LoRA-GA adapter (r 8, α 16) and a new head (LR 2e-3) on the first 320
rows of SST-2 dev from ../shared/data, 3 epochs of batch 16 (60 steps), scored on the last 200 rows
(disjoint). Seed 0. The sweep behind LORA_GA_LR_RATIO in hyft/training/config.py, read together with the
XNLI protocol of configs/lr-protocol.yaml (docs/evidence/lr-defaults.md).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import hyft
from hyft.models import load_base_model
from hyft.training import TrainConfig, train
from hyft.training.data import collate

DATA = Path(os.environ.get("HYFT_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def main(learning_rates: list[float]) -> None:
    rows = [json.loads(line) for line in (DATA / "glue" / "sst2.dev.jsonl").read_text().splitlines()]
    _, tokenizer = load_base_model("builtin:minilm", "encoder", 2, "float32", None, seed=0)

    def encode(row: dict) -> dict:
        encoded = tokenizer(row["sentence"], truncation=True, max_length=64)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": int(row["label"]),
        }

    train_examples = [encode(r) for r in rows[:320]]
    eval_examples = [encode(r) for r in rows[-200:]]
    print("| LoRA-GA LR | SST-2 accuracy | train loss per epoch |")
    print("|---|---|---|")
    for lr in learning_rates:
        model, _ = load_base_model("builtin:minilm", "encoder", 2, "float32", None, seed=0)
        init = [collate(train_examples[i : i + 16]) for i in range(0, 64, 16)]
        model = hyft.wrap(model, hyft.AdapterConfig(method="lora_ga", r=8, alpha=16), init_batches=init)
        config = TrainConfig(epochs=3, batch_size=16, lr=5e-4, lr_lora_ga=lr, lr_head=2e-3, seed=0)
        result = train(model, train_examples, config, show_progress=False)
        model.eval()
        with torch.no_grad():
            batch = collate(eval_examples)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        accuracy = float((logits.argmax(-1) == batch["labels"]).float().mean())
        losses = ", ".join(f"{e['train_loss']:.3f}" for e in result.history["epochs"])
        print(f"| {lr:g} | {100 * accuracy:.1f} | {losses} |", flush=True)


if __name__ == "__main__":
    main([float(x) for x in sys.argv[1:]] or [1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3])
