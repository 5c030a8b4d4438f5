"""DeepSpeed ZeRO-2 / ZeRO-3 on 2 CPU processes (gloo; DeepSpeed's CPU accelerator): the hybrid's λ and
saved adapter in a plain loop, the trainer under accelerate's DeepSpeed, and `hyft run` end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.experiments_runner.launch import HYBRID_SCRIPT, TRAIN_SCRIPT, deepspeed_env, run, torchrun


@pytest.fixture(scope="module")
def zero_runs(tmp_path_factory) -> dict[str, list[dict]]:
    """dist_hybrid.py's ``zero2`` and ``zero3`` checks on 2 ranks, and one process's ``trained_state``."""
    tmp_path = tmp_path_factory.mktemp("zero")
    run(
        torchrun(29534, str(HYBRID_SCRIPT), str(tmp_path / "two"), "zero2", "zero3"),
        tmp_path,
    )
    run([sys.executable, str(HYBRID_SCRIPT), str(tmp_path / "one"), "trained_state"], tmp_path)
    read = lambda name: json.loads((tmp_path / name).read_text())  # noqa: E731
    return {"two": [read("two.rank0"), read("two.rank1")], "one": [read("one.rank0")]}


def _assert_same_adapter(state: dict[str, list], reference: dict[str, list]) -> None:
    """Every saved tensor present with its full shape (a ZeRO-3 partition saved as is would be empty), and
    equal to the one-process adapter: the median element to 1e-5, the worst to 0.05 (AdamW's first steps move
    an element with a near-zero gradient by ±lr whatever its size, so summation-order noise flips a few)."""
    import torch

    assert state.keys() == reference.keys()
    differences = []
    for key, expected in reference.items():
        got, want = torch.tensor(state[key]), torch.tensor(expected)
        assert got.shape == want.shape, key
        differences.append((got - want).abs().flatten())
    every = torch.cat(differences)
    assert float(every.median()) <= 1e-5 and float(every.max()) <= 0.05


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_hybrid_lambda_under_deepspeed_zero_equals_one_process(zero_runs, stage):
    """ZeRO keeps gradients out of ``p.grad`` (this rank's fragment of a flat fp32 partition, ZeRO-3 also
    the weights): λ must read the fragments between ``engine.backward`` and ``engine.step`` and sum their
    squares over ranks. Before that, every λ sat at its 0.05 clamp on every rank."""
    rank0, rank1 = (run[stage] for run in zero_runs["two"])
    reference = zero_runs["one"][0]["trained_state"]
    assert len(rank0["lambda"]) == len(reference["lambda"]) == 4
    for step0, step1, expected in zip(rank0["lambda"], rank1["lambda"], reference["lambda"], strict=True):
        for name, value in expected.items():
            assert step0[name] == step1[name]
            assert abs(step0[name] - value) <= 1e-4
    assert all(abs(v - 0.05) > 0.1 for v in rank0["lambda"][-1].values())
    if stage == "zero3":
        assert rank0["partitioned_parameters"] > 0  # the adapter's own weights were partitioned too
    assert rank0["state"] == rank1["state"]
    _assert_same_adapter(rank0["state"], reference["state"])


@pytest.mark.parametrize(("stage", "batch", "grad_accum"), [(2, "2", "2"), (3, "4", "1")])
def test_trainer_under_accelerate_deepspeed_matches_one_process(tmp_path, stage, batch, grad_accum):
    """``accelerate launch --use_deepspeed`` through the trainer (its environment, set by hand): the run is
    DeepSpeed (not silently DDP), the loss curve and λ equal one process on the same global batch of 8, and
    the saved adapter is whole. ZeRO-2 with 2 accumulation steps; ZeRO-3 with every weight partitioned."""
    env = deepspeed_env(tmp_path, stage)
    two, one = tmp_path / "two.json", tmp_path / "one.json"
    run(
        torchrun(f"2954{stage}", str(TRAIN_SCRIPT), str(two), batch, "hybrid", grad_accum),
        tmp_path,
        env,
    )
    run([sys.executable, str(TRAIN_SCRIPT), str(one), "8", "hybrid"], tmp_path)
    rank0, rank1 = (json.loads(Path(f"{two}.rank{r}").read_text()) for r in (0, 1))
    reference = json.loads(Path(f"{one}.rank0").read_text())
    assert rank0["distributed_type"] == "DistributedType.DEEPSPEED"
    assert reference["distributed_type"] == "DistributedType.NO"
    assert len(rank0["loss"]) == len(reference["loss"]) == 8
    for a, b in zip(rank0["loss"], reference["loss"], strict=True):
        assert abs(a - b) <= 1e-5 * abs(b)
    for step0, step1, expected in zip(rank0["lambda"], rank1["lambda"], reference["lambda"], strict=True):
        for name, value in expected.items():
            assert step0[name] == step1[name]
            assert abs(step0[name] - value) <= 1e-4
    _assert_same_adapter(rank0["adapter"], reference["adapter"])


def test_hyft_run_on_two_cpu_processes_under_ddp_and_deepspeed_zero3_gives_the_same_results(
    tmp_path, shared_data
):
    """``hyft run`` under torchrun on CPU: one main process writes (before, accelerate's default state
    counted one process on CPU, every rank thought itself the main one and they raced writing the same
    checkpoint), and DeepSpeed ZeRO-3 (training, the gathered save, the sharded evaluation) gives the
    results of DDP on the same global batch."""
    import yaml

    from tests.tasks.conftest import make_llama, make_tokenizer

    model_dir = tmp_path / "tiny"
    tokenizer = make_tokenizer()
    make_llama(len(tokenizer), seed=5).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    runs = {}
    for mode in ("ddp", "zero3"):
        config = {
            "run": {"name": mode, "output_dir": str(tmp_path / "runs"), "seeds": [0]},
            "data": {
                "task": "xnli",
                "languages": ["en", "de"],
                "k_shots": [8],
                "data_dir": str(shared_data),
                "max_eval_examples": 6,
                "val_examples": 10,
                "max_length": 96,
            },
            "models": [{"name": "tiny", "name_or_path": str(model_dir), "kind": "decoder"}],
            "methods": {
                "hybrid": {
                    "r": 2,
                    "alpha": 4,
                    "boft_block_size": 4,
                    "boft_n_butterfly_factor": 2,
                    "lambda_warmup_steps": 0,
                }
            },
            # checkpoint_every: 1 made the ranks race on one checkpoint before (DeepSpeed writes none)
            "train": {"max_steps": 2, "batch_size": 4, "init_batches": 1, "checkpoint_every": 1},
            "eval": {"batch_size": 4, "calibration_examples": 10, "orthographic": False},
        }
        path = tmp_path / f"{mode}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = deepspeed_env(tmp_path, 3) if mode == "zero3" else {}
        run(
            torchrun("29546" if mode == "ddp" else "29547", "-m", "hyft.cli.main", "run", str(path)),
            tmp_path,
            env,
        )
        cell = tmp_path / "runs" / mode / "cells" / "tiny__hybrid__xnli__k8__none__seed0"
        runs[mode] = {
            "result": json.loads((cell / "result.json").read_text()),
            "history": json.loads((cell / "train" / "history.json").read_text()),
            "adapter": cell / "adapter" / "adapter_model.safetensors",
        }
    ddp, zero3 = runs["ddp"], runs["zero3"]
    assert [s["loss"] for s in zero3["history"]["steps"]] == pytest.approx(
        [s["loss"] for s in ddp["history"]["steps"]], rel=1e-5
    )
    for a, b in zip(zero3["history"]["steps"], ddp["history"]["steps"], strict=True):
        assert a["lambda"] == pytest.approx(b["lambda"], abs=1e-4)
    assert zero3["result"]["eval"]["macro"] == ddp["result"]["eval"]["macro"]
    assert zero3["result"]["eval"]["avg_ece"] == pytest.approx(ddp["result"]["eval"]["avg_ece"], abs=1e-4)
    from safetensors.torch import load_file

    saved_zero3, saved_ddp = load_file(zero3["adapter"]), load_file(ddp["adapter"])
    assert saved_zero3.keys() == saved_ddp.keys()
    assert all(saved_zero3[k].shape == saved_ddp[k].shape for k in saved_ddp)
