"""HyftCallback: transformers.Trainer + the callback trains a hybrid exactly as hyft's own loop does."""

from __future__ import annotations

import pytest
import torch

import hyft
from hyft.integrations import HyftCallback
from hyft.training import TrainConfig, train
from hyft.training.data import collate, epoch_order
from hyft.training.trainer import parameter_groups
from tests.conftest import tiny_llama

STEPS, BATCH, ACCUM = 6, 2, 2


def _examples(n=STEPS * BATCH * ACCUM, length=10, seed=1):
    # One length for all: transformers divides a micro-batch's summed loss by the tokens of the whole
    # accumulated step, hyft averages per micro-batch; with equal token counts the two are the same.
    generator = torch.Generator().manual_seed(seed)
    return [
        {"input_ids": (ids := torch.randint(3, 128, (length,), generator=generator).tolist()), "labels": ids}
        for _ in range(n)
    ]


def _adapter_config():
    return hyft.AdapterConfig(
        method="hybrid",
        r=4,
        alpha=8,
        boft_block_size=8,
        boft_n_butterfly_factor=2,
        target_modules=["q_proj", "v_proj"],
        dropout=0.0,
        lambda_warmup_steps=0,
        lambda_ema=0.5,
    )


def _wrapped(examples):
    return hyft.wrap(tiny_llama(), _adapter_config(), init_batches=[collate(examples[:4])], seed=0)


def _state(model):
    return {k: v.clone() for k, v in model.adapter_state_dict().items()}


@pytest.mark.parametrize("max_grad_norm", [None, 0.05])
def test_trainer_with_callback_moves_lambda_and_adapter_exactly_as_hyft_train(tmp_path, max_grad_norm):
    from transformers import Trainer, TrainingArguments

    examples = _examples()
    config = TrainConfig(
        max_steps=STEPS,
        batch_size=BATCH,
        grad_accum=ACCUM,
        lr=5e-3,
        lr_lora_ga=2e-3,
        warmup_ratio=0.0,
        scheduler="cosine",
        max_grad_norm=max_grad_norm,
        seed=3,
    )

    ours = _wrapped(examples)
    start = _state(ours)
    result = train(ours, examples, config, show_progress=False)
    assert result.steps == STEPS

    theirs = _wrapped(examples)
    for key, tensor in _state(theirs).items():
        assert torch.equal(tensor, start[key]), key  # same LoRA-GA init on both sides
    ordered = [examples[i] for i in epoch_order(len(examples), config.seed, 0)]  # hyft's epoch-0 order
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUM,
        max_steps=STEPS,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=max_grad_norm or 0.0,
        train_sampling_strategy="sequential",
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        remove_unused_columns=False,
        seed=config.seed,
        disable_tqdm=True,
    )
    # hyft's per-branch learning rates (LoRA-GA at lr_lora_ga, the rotation at lr);
    # Trainer makes the schedule.
    optimizer = torch.optim.AdamW(parameter_groups(theirs, config), lr=config.lr, weight_decay=0.0)
    callback = HyftCallback()
    trainer = Trainer(
        model=theirs,
        args=args,
        train_dataset=ordered,
        data_collator=collate,
        optimizers=(optimizer, None),
        callbacks=[callback],
    )
    trainer.train()
    assert trainer.state.global_step == STEPS
    assert args.max_grad_norm == (max_grad_norm or 0.0)  # restored after the callback's take-over

    lam_ours, lam_theirs = ours.mixing_weights(), theirs.mixing_weights()
    assert set(lam_ours) == set(lam_theirs) and len(lam_ours) == 4
    assert any(abs(v - 0.5) > 1e-3 for v in lam_ours.values())  # λ moved (it starts at lambda_init 0.5)
    for name, value in lam_ours.items():
        assert lam_theirs[name] == pytest.approx(value, abs=1e-5), name
    moved = 0
    for key, tensor in _state(ours).items():
        other = theirs.adapter_state_dict()[key]
        assert torch.allclose(other, tensor, atol=1e-5, rtol=0), (key, (other - tensor).abs().max())
        moved += not torch.allclose(tensor, start[key], atol=1e-6)
    assert moved > 0
    logged = [row["grad_norm"] for row in trainer.state.log_history if "grad_norm" in row]
    hyft_norms = [row["grad_norm"] for row in result.history["steps"]]
    assert logged == pytest.approx(hyft_norms, rel=1e-4)  # the Trainer still logs the pre-clip norm
    if max_grad_norm is not None:
        assert min(hyft_norms) > max_grad_norm  # the clip acted on every step


def test_callback_refuses_a_model_without_a_hyft_adapter(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="needs a hyft.HyftModel"):
        HyftCallback().on_train_begin(args, TrainerState(), TrainerControl(), model=tiny_llama())


def test_trainer_reads_loss_kwargs_support_from_the_base_model_not_the_wrapper():
    class Plain(torch.nn.Module):  # forward without **kwargs: the Trainer must not pass num_items_in_batch
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x):
            return self.proj(x)

    plain = hyft.wrap(Plain(), hyft.AdapterConfig(method="lora", r=2, target_modules=["proj"]))
    assert plain.accepts_loss_kwargs is False
    assert _wrapped(_examples(4)).accepts_loss_kwargs is True  # LlamaForCausalLM.forward takes **kwargs
