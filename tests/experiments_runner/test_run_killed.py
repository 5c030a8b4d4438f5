"""`hyft run` killed (SIGKILL) at random moments: a folder with a _COMPLETE marker is consistent, one
without it is refused by `hyft report` (exit 2), and rerunning the same command resumes and finishes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from hyft.io import read_marker, require_marker
from tests.experiments_runner.test_runner import _reduced_demo

CLI = [sys.executable, "-c", "import sys; from hyft.cli.main import app; sys.argv[0] = 'hyft'; app()", "run"]
CELLS = 4  # zero-shot (k=0) and lora (k=8), seeds 0 and 1


def _config(tmp_path: Path) -> Path:
    config = _reduced_demo(tmp_path / "runs", "killed", **{"data.k_shots": [0, 8]})
    config.pop("curation", None)
    config["run"]["seeds"] = [0, 1]
    config["methods"] = {"lora": {"r": 4, "alpha": 8}}
    config["data"].update(languages=["en"], max_eval_examples=6, val_examples=10)
    config["eval"].update(orthographic=False)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _report(run_dir: Path):
    from hyft.cli import report as report_cli

    app = typer.Typer()
    report_cli.register(app)

    @app.callback()
    def main() -> None:
        pass

    return CliRunner().invoke(app, ["report", str(run_dir), "--resamples", "100"])


def _assert_adapters_whole(run_dir: Path) -> None:
    """Every adapter folder a killed run left holds its config and its weights (save_pretrained is atomic)."""
    for adapter in (run_dir / "cells").glob("*/adapter"):
        assert sorted(p.name for p in adapter.iterdir()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
        ]


def _assert_finished(run_dir: Path) -> None:
    marker = require_marker(run_dir, "run folder")  # every file the marker names matches it
    assert marker["complete"] is True
    results = json.loads((run_dir / "results.json").read_text())
    assert results["run"]["complete"] is True
    assert len(results["cells"]) == CELLS
    assert all(cell["status"] == "done" for cell in results["cells"])
    assert len({cell["cell_id"] for cell in results["cells"]}) == CELLS


def test_killed_run_is_refused_or_consistent_and_a_rerun_finishes(tmp_path):
    config = _config(tmp_path)
    run_dir = tmp_path / "runs" / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    rng = random.Random(5)
    outcomes = {"torn": 0, "complete": 0}
    deadline = time.monotonic() + 50
    for _trial in range(6):
        if time.monotonic() > deadline:
            break
        process = subprocess.Popen(
            [*CLI, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        # Kill at a random moment after the run has started writing: a fixed delay from launch missed it
        # on a loaded machine, where the interpreter and imports alone can take longer than the delay.
        started = time.monotonic()
        while not run_dir.exists() and process.poll() is None and time.monotonic() - started < 60:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 5.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if not run_dir.exists():
            continue  # killed before it wrote anything
        _assert_adapters_whole(run_dir)
        if read_marker(run_dir) is None:
            outcomes["torn"] += 1
            refused = _report(run_dir)
            assert refused.exit_code == 2, refused.output
        else:
            outcomes["complete"] += 1
            _assert_finished(run_dir)
    assert sum(outcomes.values()) >= 2, outcomes
    finished = subprocess.run([*CLI, str(config)], capture_output=True, text=True, timeout=300, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    _assert_finished(run_dir)
    _assert_adapters_whole(run_dir)
    assert _report(run_dir).exit_code == 0
