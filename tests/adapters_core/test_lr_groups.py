"""One ``lr`` suits every method: each parameter group trains at its documented share of it.

Adam's first update moves every entry with a non-zero gradient by ≈ its group's LR (the update is
normalised), so the largest movement after one step tells which LR each parameter really got.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import hyft
from hyft.training import TrainConfig, train
from hyft.training.config import FULL_LR_RATIO, LORA_GA_LR_RATIO
from hyft.training.data import collate
from hyft.training.trainer import is_collapsed
from tests.conftest import tiny_llama


def _lm_examples(n: int = 8, length: int = 10, seed: int = 1) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        ids = torch.randint(3, 128, (length,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": ids})
    return examples


def _tiny_bert_classifier(num_labels: int = 3, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def _class_examples(n: int = 16, seed: int = 2, num_labels: int = 3) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    # The label is written in the second token, so a model that trains can learn it.
    return [
        {
            "input_ids": [1, 10 + i % num_labels]
            + torch.randint(20, 128, (6,), generator=generator).tolist(),
            "labels": i % num_labels,
        }
        for i in range(n)
    ]


def _one_step(model, examples, **overrides) -> None:
    config = TrainConfig(
        max_steps=1,
        batch_size=len(examples),
        warmup_ratio=0.0,
        scheduler="constant",
        max_grad_norm=None,
        **overrides,
    )
    train(model, examples, config, show_progress=False)


def _largest_move(after: torch.Tensor, before: torch.Tensor) -> float:
    """Adam's first step moves an entry by lr·|g|/(|g| + ε) ≤ lr: the largest move is the group's LR."""
    return float((after - before).abs().max())


def test_hybrid_lora_ga_branch_trains_at_its_share_of_lr_and_the_rotation_at_lr():
    examples = _lm_examples()
    init = [collate(examples)]
    model = hyft.wrap(
        tiny_llama(),
        hyft.AdapterConfig(
            method="hybrid", r=4, boft_block_size=8, target_modules=["q_proj"], lambda_warmup_steps=0
        ),
        init_batches=init,
    )
    layer = model.adapted_layers()["model.layers.0.self_attn.q_proj"]
    A_before = layer.lora.lora_A.detach().clone()
    R_before = layer.boft.boft_R.detach().clone()
    _one_step(model, examples, lr=1e-3)
    assert _largest_move(layer.lora.lora_A.detach(), A_before) == pytest.approx(
        1e-3 * LORA_GA_LR_RATIO, rel=0.05
    )
    assert _largest_move(layer.boft.boft_R.detach(), R_before) == pytest.approx(1e-3, rel=0.05)


def test_lora_ga_default_is_a_small_share_and_an_explicit_value_wins():
    assert LORA_GA_LR_RATIO < 1  # LoRA-GA moves W further per Adam step than LoRA (methods.md §2.4)
    examples = _lm_examples()
    for overrides, expected in (
        ({"lr": 1e-3}, 1e-3 * LORA_GA_LR_RATIO),
        ({"lr": 1e-3, "lr_lora_ga": 3e-4}, 3e-4),
    ):
        model = hyft.wrap(
            tiny_llama(),
            hyft.AdapterConfig(method="lora_ga", r=4, target_modules=["q_proj"]),
            init_batches=[collate(examples)],
        )
        layer = model.adapted_layers()["model.layers.0.self_attn.q_proj"]
        A_before = layer.lora_A.detach().clone()
        _one_step(model, examples, **overrides)
        assert _largest_move(layer.lora_A.detach(), A_before) == pytest.approx(expected, rel=0.05)


def test_plain_lora_trains_at_lr_not_at_the_lora_ga_share():
    examples = _lm_examples()
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=4, target_modules=["q_proj"]))
    layer = model.adapted_layers()["model.layers.0.self_attn.q_proj"]
    B_before = layer.lora_B.detach().clone()
    _one_step(model, examples, lr=1e-3)
    assert _largest_move(layer.lora_B.detach(), B_before) == pytest.approx(1e-3, rel=0.05)


def test_full_fine_tuning_backbone_at_its_share_and_the_new_head_at_lr_head():
    examples = _class_examples()
    model = hyft.wrap(_tiny_bert_classifier(), hyft.AdapterConfig(method="full"))
    base = model.get_base_model()
    query_before = base.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    head_before = base.classifier.weight.detach().clone()
    _one_step(model, examples, lr=1e-3, lr_head=4e-3)
    query_move = _largest_move(base.bert.encoder.layer[0].attention.self.query.weight.detach(), query_before)
    assert query_move == pytest.approx(1e-3 * FULL_LR_RATIO, rel=0.05)
    assert _largest_move(base.classifier.weight.detach(), head_before) == pytest.approx(4e-3, rel=0.05)


def test_collapse_is_flagged_when_the_loss_stays_at_ln_c_and_not_when_it_learns():
    assert is_collapsed(math.log(3) * 1.005, math.log(3), 0.01)
    assert not is_collapsed(math.log(3) * 0.9, math.log(3), 0.01)
    examples = _class_examples(n=24)

    def epochs(lr: float, count: int) -> list[dict]:
        model = _tiny_bert_classifier()
        with torch.no_grad():  # a zero head predicts the uniform distribution: loss = ln 3 exactly
            model.classifier.weight.zero_()
            model.classifier.bias.zero_()
        wrapped = hyft.wrap(model, hyft.AdapterConfig(method="lora", r=4))
        config = TrainConfig(
            epochs=count, batch_size=8, lr=lr, lr_head=lr, warmup_ratio=0.0, scheduler="constant"
        )
        return train(wrapped, examples, config, show_progress=False, uniform_loss=math.log(3)).history[
            "epochs"
        ]

    stuck = epochs(1e-9, 3)
    assert [e["collapsed"] for e in stuck] == [True, True, True]
    learning = epochs(1e-2, 10)
    assert learning[-1]["train_loss"] < 0.9 * math.log(3)
    assert learning[-1]["collapsed"] is False


def test_early_stopping_ends_training_when_the_validation_loss_stops_improving():
    from hyft.training.trainer import no_improvement

    assert not no_improvement([{"val_loss": v} for v in (3.0, 2.0, 2.5)], 2)  # one bad epoch < patience 2
    assert no_improvement([{"val_loss": v} for v in (3.0, 2.0, 2.5, 2.0)], 2)  # equal is no improvement
    assert not no_improvement([{"val_loss": v} for v in (3.0, 2.0, 2.5, 1.9)], 2)
    assert not no_improvement([{"val_loss": v} for v in (3.0, 2.0, 2.5, 2.6)], None)
    examples = _class_examples(n=24)

    def run(lr: float, patience: int | None):
        wrapped = hyft.wrap(_tiny_bert_classifier(), hyft.AdapterConfig(method="lora", r=4))
        config = TrainConfig(
            epochs=8,
            batch_size=8,
            lr=lr,
            lr_head=lr,
            warmup_ratio=0.0,
            scheduler="constant",
            early_stopping_patience=patience,
        )
        return train(wrapped, examples[:16], config, eval_examples=examples[16:], show_progress=False)

    # A learning rate far too high: the validation loss soon stops improving and training stops there.
    diverging = run(3.0, 2)
    epochs = diverging.history["epochs"]
    assert diverging.extra["early_stopped"] and len(epochs) < 8 and epochs[-1]["early_stopped"]
    assert no_improvement(epochs, 2) and not no_improvement(epochs[:-1], 2)  # stopped at the first chance
    assert diverging.steps == len(epochs) * 2
    # Without patience the same run goes to the end.
    assert len(run(3.0, None).history["epochs"]) == 8


def test_runs_in_one_process_may_use_different_mixed_precision():
    examples = _lm_examples()
    for precision in ("no", "bf16", "no"):
        model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=4, target_modules=["q_proj"]))
        _one_step(model, examples, lr=1e-3, mixed_precision=precision)
