"""Launching 2 CPU processes (gloo) for the distributed tests: torchrun commands, the DeepSpeed
environment accelerate's launcher would set, and a subprocess that must succeed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = Path(__file__).with_name("ddp_train.py")
HYBRID_SCRIPT = Path(__file__).with_name("dist_hybrid.py")


def torchrun(port: int | str, *args: str) -> list[str]:
    """The command that launches ``args`` on 2 CPU processes (gloo) through torchrun."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        *args,
    ]


def deepspeed_env(tmp_path: Path, stage: int) -> dict[str, str]:
    """accelerate's DeepSpeed environment (as ``accelerate launch --use_deepspeed`` sets it) with a
    ZeRO-``stage`` config file that partitions every weight under ZeRO-3 and leaves batch, accumulation
    and clipping to hyft."""
    settings = tmp_path / f"ds{stage}.json"
    zero = {"stage": stage, "stage3_param_persistence_threshold": 0}
    auto = [
        "train_micro_batch_size_per_gpu",
        "train_batch_size",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ]
    settings.write_text(json.dumps({"zero_optimization": zero, **dict.fromkeys(auto, "auto")}))
    return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(settings)}


def run(args: list[str], tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(extra_env or {})}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
