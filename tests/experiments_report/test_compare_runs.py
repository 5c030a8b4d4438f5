"""evidence/compare_runs.py: the evidence study's comparisons across run folders (docs/evidence/minilm.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "evidence" / "compare_runs.py"


def _compare_runs():
    spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_cell(
    run_dir: Path, method: str, seed: int, correct: list[int], *, shots: str = "s", curation: str = "none"
) -> None:
    """One finished XNLI cell at k = 8 scoring four rows, two per language; ``correct`` per row."""
    cell_id = f"m__{method}__xnli__k8__{curation}__seed{seed}"
    cell_dir = run_dir / "cells" / cell_id
    cell_dir.mkdir(parents=True)
    rows = [("en", 1), ("en", 2), ("de", 1), ("de", 2)]
    with (cell_dir / "samples.jsonl").open("w", encoding="utf-8") as handle:
        for (lang, number), ok in zip(rows, correct, strict=True):
            sample = {"id": f"{lang}/{number}", "lang": lang, "gold": "a", "prediction": "a" if ok else "b"}
            handle.write(json.dumps(sample) + "\n")
    accuracy = {
        lang: sum(ok for (row_lang, _), ok in zip(rows, correct, strict=True) if row_lang == lang) / 2
        for lang in ("en", "de")
    }
    result = {
        "cell_id": cell_id,
        "method": method,
        "task": "xnli",
        "k_shot": 8,
        "curation": curation,
        "seed": seed,
        "status": "done",
        "shots": {"en": [f"{shots}{seed}"]},
        "samples_path": f"cells/{cell_id}/samples.jsonl",
        "eval": {
            "languages": ["en", "de"],
            "accuracy": accuracy,
            "delta": abs(accuracy["en"] - accuracy["de"]),
            "avg_ece": 0.1,
            "avg_ece_temperature_scaled": 0.05,
            "orthographic": {"macro": {"drop": 0.0}},
        },
    }
    (cell_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")


def _run(monkeypatch, capsys, *argv: str) -> str:
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", *argv])
    _compare_runs().main()
    return capsys.readouterr().out


def test_pairs_two_run_folders_by_seed_and_row(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "run-a", tmp_path / "run-b"
    for seed in (0, 1):
        _write_cell(first, "hybrid", seed, [1, 1, 1, 1])
        _write_cell(second, "lora", seed, [1, 0, 1, 0] if seed == 0 else [0, 0, 1, 1])
    out = _run(
        monkeypatch, capsys, "--task", "xnli", "--k", "8", "--reference", "H",
        f"H={first}:hybrid", f"L={second}:lora",
    )  # fmt: skip
    lora_row = next(line for line in out.splitlines() if line.startswith("| L | 0, 1 |"))
    # per language mean over seeds: en (0.5 + 0.0) / 2, de (0.5 + 1.0) / 2; macro 50 %; per seed 50, 50
    assert "| 25.0 | 75.0 | 50.0 [" in lora_row and "| 50.0, 50.0 |" in lora_row
    difference_row = next(line for line in out.splitlines() if line.startswith("| L | 0, 1 | +50.0 ["))
    assert "N = 4 rows" in difference_row


def test_refuses_seeds_that_drew_different_shots_unless_told(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "run-a", tmp_path / "run-b"
    _write_cell(first, "hybrid", 0, [1, 1, 1, 1])
    _write_cell(second, "lora", 0, [0, 0, 0, 0], shots="other")
    argv = ["--task", "xnli", "--k", "8", "--reference", "H", f"H={first}:hybrid", f"L={second}:lora"]
    with pytest.raises(SystemExit, match="drew different shots"):
        _run(monkeypatch, capsys, *argv)
    out = _run(monkeypatch, capsys, "--different-shots", *argv)
    assert "| L | 0 | +100.0 [100.0, 100.0] | yes" in out


def test_a_curation_stage_selects_its_cells_and_a_bare_method_with_stages_is_refused(
    tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    _write_cell(run, "full", 0, [1, 1, 1, 1], curation="C2", shots="c2")
    _write_cell(run, "full", 0, [1, 0, 0, 0], curation="C0", shots="c0")
    out = _run(
        monkeypatch, capsys, "--task", "xnli", "--k", "8", "--reference", "C2", "--different-shots",
        f"C2={run}:full@C2", f"C0={run}:full@C0",
    )  # fmt: skip
    assert "| C0 | 0 | +75.0 [" in out
    with pytest.raises(SystemExit, match="several curation stages"):
        _run(monkeypatch, capsys, "--task", "xnli", "--k", "8", "--reference", "F", f"F={run}:full")
