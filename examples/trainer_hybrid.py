"""Train a hyft hybrid adapter (LoRA-GA + BOFT, λ-mixed) with ``transformers.Trainer``.

Runs offline in seconds on CPU: a tiny random Llama and random token sequences stand in for a real model
and dataset. Swap in ``AutoModelForCausalLM.from_pretrained(...)`` and your tokenised dataset; the hyft
parts stay the same. TRL's ``SFTTrainer`` is a ``Trainer``: pass the same ``callbacks=[HyftCallback()]``.

    python examples/trainer_hybrid.py

The three hyft steps:
1. ``hyft.wrap(base, config, init_batches=...)`` — LoRA-GA's gradient-SVD initialisation runs here, on a
   few batches built with the same collator the Trainer uses, before the Trainer (and its optimizer) exist.
2. ``parameter_groups`` — optional: hyft's per-branch learning rates (LoRA-GA, rotation); without it the
   Trainer's default AdamW trains every adapter parameter at ``learning_rate``.
3. ``HyftCallback()`` — the hybrid's λ update after the last micro-batch's backward (and gradient sync),
   before clipping and the optimizer step. With ``max_grad_norm > 0`` the callback applies that clip
   itself, after the λ update (transformers clips before any callback event; λ reads raw norms).
"""

from __future__ import annotations

import itertools
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments  # noqa: E402

import hyft  # noqa: E402
from hyft.integrations import HyftCallback  # noqa: E402
from hyft.training import TrainConfig  # noqa: E402
from hyft.training.data import collate  # noqa: E402
from hyft.training.trainer import parameter_groups  # noqa: E402


def tiny_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config)


def dataset(n: int = 32, length: int = 16) -> list[dict]:
    """Tokenised causal-LM examples: ``input_ids`` and ``labels`` (a real run: your tokenised dataset)."""
    generator = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(n):
        ids = torch.randint(3, 128, (length,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": ids})
    return rows


def main() -> None:
    train_rows = dataset()
    config = hyft.AdapterConfig(
        method="hybrid",
        r=4,
        alpha=8,
        boft_block_size=8,
        boft_n_butterfly_factor=2,
        target_modules=["q_proj", "v_proj"],
        lambda_warmup_steps=2,
    )

    # 1. LoRA-GA init on the first 4 batches, built with the Trainer's collator.
    init_loader = DataLoader(train_rows, batch_size=4, collate_fn=collate)
    model = hyft.wrap(tiny_model(), config, init_batches=itertools.islice(init_loader, 4))
    print(f"trainable parameters: {model.trainable_parameters():,} of {model.total_parameters():,}")

    # 2. hyft's per-branch learning rates (LoRA-GA at lr_lora_ga, BOFT at lr).
    lrs = TrainConfig(lr=5e-3, lr_lora_ga=2e-3)
    optimizer = torch.optim.AdamW(parameter_groups(model, lrs), lr=lrs.lr, weight_decay=0.0)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            max_steps=8,
            learning_rate=lrs.lr,
            lr_scheduler_type="cosine",
            max_grad_norm=1.0,
            logging_steps=2,
            report_to="none",
            save_strategy="no",
            use_cpu=not torch.cuda.is_available(),
            remove_unused_columns=False,  # the rows are already tokenised
        )
        # 3. The callback: λ update each optimizer step, then the clip.
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_rows,
            data_collator=collate,
            optimizers=(optimizer, None),
            callbacks=[HyftCallback()],
        )
        trainer.train()
        for name, lam in model.mixing_weights().items():
            print(f"λ {name}: {lam:.4f}")
        model.save_pretrained(os.path.join(out, "adapter"))  # hyft.load(base, dir) reads it back
        print("saved:", sorted(os.listdir(os.path.join(out, "adapter"))))


if __name__ == "__main__":
    main()
