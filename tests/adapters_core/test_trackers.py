"""``train.report_to``: accelerate's trackers get loss, LR, gradient norm and mean λ at every logged step."""

from __future__ import annotations

import statistics
import sys

import pytest

import hyft
from hyft.training import TrainConfig, train
from hyft.training.data import collate
from tests.adapters_core.test_training import _lm_examples
from tests.conftest import tiny_llama


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(folder.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {folder}"
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return scalars


def test_tensorboard_gets_every_logged_step(tmp_path):
    examples = _lm_examples(16)
    config = TrainConfig(epochs=2, batch_size=4, lr=5e-3, log_every=2, report_to=["tensorboard"], seed=1)
    model = hyft.wrap(
        tiny_llama(),
        hyft.AdapterConfig(method="hybrid", r=2, boft_block_size=8, target_modules=["q_proj", "v_proj"]),
        init_batches=[collate(examples[:4], 0)],
    )
    out = tmp_path / "train"
    result = train(model, examples, config, out, eval_examples=examples[:4], show_progress=False)
    scalars = read_scalars(out / "trackers")
    logged = [row for row in result.history["steps"] if row["step"] % 2 == 0]
    assert [step for step, _ in scalars["train/loss"]] == [row["step"] for row in logged] == [2, 4, 6, 8]
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm")):
        assert [value for _, value in scalars[tag]] == pytest.approx(
            [row[key] for row in logged], rel=1e-6
        ), tag
    lambda_means = [statistics.fmean(row["lambda"].values()) for row in logged]
    assert [value for _, value in scalars["train/lambda_mean"]] == pytest.approx(lambda_means, rel=1e-6)
    val = [epoch["val_loss"] for epoch in result.history["epochs"]]
    assert [value for _, value in scalars["val/loss"]] == pytest.approx(val, rel=1e-6) and len(val) == 2
    assert all(path.is_relative_to(out / "trackers" / "hyft") for path in out.rglob("events.out.tfevents.*"))


def test_off_by_default_and_a_missing_package_is_named(tmp_path, monkeypatch):
    examples = _lm_examples(8)
    train(
        hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=2)),
        examples,
        TrainConfig(max_steps=1, batch_size=4),
        tmp_path / "plain",
        show_progress=False,
    )
    assert not (tmp_path / "plain" / "trackers").exists()
    monkeypatch.setitem(sys.modules, "wandb", None)  # find_spec then reports it missing, installed or not
    with pytest.raises(ValueError) as failure:
        TrainConfig(report_to=["wandb"])
    assert "report_to names wandb, but the package is not installed: pip install wandb" in str(failure.value)
