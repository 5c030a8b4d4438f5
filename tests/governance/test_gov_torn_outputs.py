"""Outputs are never torn: `hyft curate` killed at random moments leaves either no _COMPLETE marker
(and readers refuse the folder) or a marker whose every file matches; reruns reuse or clear, and say so.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hyft.governance import CurationConfig, curate
from hyft.governance.assembly import load_curation
from hyft.io import MARKER, IncompleteOutputError, atomic_write_text, file_sha256, read_marker, require_marker

DEMO_POOL = Path(__file__).resolve().parents[2] / "hyft" / "data" / "demo" / "pool.jsonl"
CONFIG = CurationConfig(text_fields=["text"], id_field="id", label_field="label", progress=False)
CLI = [
    sys.executable,
    "-c",
    "import sys; from hyft.cli.main import app; sys.argv[0] = 'hyft'; app()",
    "curate",
]


def _pools(tmp_path: Path) -> tuple[Path, Path]:
    lines = DEMO_POOL.read_bytes().splitlines()
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"\n".join(lines) + b"\n")
    b.write_bytes(
        b"\n".join(lines[: len(lines) // 3]) + b"\n{broken\n"
    )  # different sizes, different removed/
    return a, b


def _command(pool: Path, out: Path) -> list[str]:
    return [
        *CLI,
        "--input",
        str(pool),
        "--text-fields",
        "text",
        "--id-field",
        "id",
        "--label-field",
        "label",
        "--out",
        str(out),
        "--quiet",
    ]


def _layout(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file()
        and p.name != MARKER
        and "datatrove" not in p.parts
        and not p.name.startswith(".probe-")
    }


def _assert_consistent(out: Path, pools: dict[str, Path]) -> None:
    """A folder with a marker: every listed file matches, nothing unlisted is left,
    the ledger fits the input."""
    marker = require_marker(out, "curation folder")  # raises if any file differs from its recorded hash
    assert _layout(out) == set(marker["files"]), "files beside the marker that it does not list"
    pool = pools[marker["input"]]
    assert marker["input_sha256"] == file_sha256(pool)
    ledger = (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(ledger) == len(pool.read_bytes().splitlines())
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["total"]["n_input"] == len(ledger) and report["run"]["input"] == marker["input"]
    invalid = report["total"]["stages"]["validate"]["in"] - report["total"]["stages"]["validate"]["kept"]
    for view in ("c0", "c1", "c2"):
        rows = (out / f"{view}.jsonl").read_text(encoding="utf-8").splitlines()
        # C0 counts every input line; its file holds the lines that are records (validation drops are not)
        assert len(rows) == report["total"][f"n_{view}"] - (invalid if view == "c0" else 0)


def test_killed_curate_never_leaves_a_marked_inconsistent_folder(tmp_path):
    a, b = _pools(tmp_path)
    pools = {str(a): a, str(b): b}
    out = tmp_path / "out"
    started = time.monotonic()
    subprocess.run(_command(a, out), check=True, capture_output=True, timeout=300)
    full = time.monotonic() - started
    _assert_consistent(out, pools)
    rng = random.Random(17)
    outcomes = {"killed_torn": 0, "killed_complete": 0}
    deadline = time.monotonic() + 240
    for trial in range(10):
        if time.monotonic() > deadline:
            break
        pool = (b, a)[trial % 2]
        process = subprocess.Popen(_command(pool, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.1) * full)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        if read_marker(out) is None:
            outcomes["killed_torn"] += 1
            with pytest.raises(IncompleteOutputError, match="_COMPLETE"):
                load_curation(out)
        else:
            outcomes["killed_complete"] += 1
            _assert_consistent(out, pools)
    assert sum(outcomes.values()) >= 3, outcomes
    # whatever the kills left, a rerun produces a complete, consistent folder for the last input
    subprocess.run(_command(b, out), check=True, capture_output=True, timeout=300)
    _assert_consistent(out, pools)
    assert read_marker(out)["input"] == str(b)


def test_rerun_reuses_the_same_input_and_clears_for_another(tmp_path):
    a, b = _pools(tmp_path)
    out = tmp_path / "out"
    first = curate(a, CONFIG, out)
    assert first.previous is None
    removed_a = {p for p in _layout(out) if "/removed/" in p}
    again = curate(a, CONFIG, out)
    assert again.previous is not None and again.previous.startswith("reused")
    assert again.report == first.report and again.views == first.views
    other = curate(b, CONFIG, out)
    assert other.previous is not None and "cleared" in other.previous and "different input" in other.previous
    marker = require_marker(out, "curation folder")
    assert _layout(out) == set(marker["files"])  # no stale removed/ rows of the first input
    assert removed_a - set(marker["files"]), "the two inputs should drop different stages"
    # a file changed after the marker: not reused, recomputed (and the reason is named)
    atomic_write_text(out / "c2.jsonl", "")
    with pytest.raises(IncompleteOutputError, match="c2.jsonl"):
        load_curation(out)
    redone = curate(b, CONFIG, out)
    assert "changed" in redone.previous and redone.report == other.report
    # a torn folder (no marker): cleared, recomputed
    (out / MARKER).unlink()
    assert "interrupted" in curate(b, CONFIG, out).previous


def test_runner_reuses_only_a_marked_curation(tmp_path, monkeypatch):
    from hyft.experiments import runner

    a, _ = _pools(tmp_path)
    calls = []
    real = curate

    def counting(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result.previous)
        return result

    monkeypatch.setattr("hyft.governance.curate", counting)

    class Curation:
        pool = str(a)
        settings = CONFIG
        decontaminate_against_eval = False

    class Config:
        curation = Curation

    views, report = runner.curate_stage(Config, tmp_path / "run")
    assert calls == [None] and len(views["c2"]) == report["total"]["n_c2"]
    runner.curate_stage(Config, tmp_path / "run")
    assert calls[-1].startswith("reused")
    (tmp_path / "run" / "curation" / "report.json").write_text("{", encoding="utf-8")  # torn by hand
    views_again, report_again = runner.curate_stage(Config, tmp_path / "run")
    assert "changed" in calls[-1] and report_again == report and views_again == views


def test_hyft_report_refuses_a_run_folder_without_its_marker(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments_report"))
    import synthetic_run

    from hyft.cli import report as report_cli

    app = typer.Typer()
    report_cli.register(app)

    @app.callback()
    def main() -> None:
        pass

    run_dir = synthetic_run.make_run(tmp_path / "run")
    (run_dir / MARKER).unlink()
    torn = CliRunner().invoke(app, ["report", str(run_dir), "--resamples", "100"])
    assert torn.exit_code == 2 and "no _COMPLETE marker" in torn.output and "hyft run" in torn.output
    assert not (run_dir / "report.md").exists()
    shutil.rmtree(run_dir)
    run_dir = synthetic_run.make_run(tmp_path / "run")
    with (run_dir / "results.json").open("a", encoding="utf-8") as handle:
        handle.write(" ")
    changed = CliRunner().invoke(app, ["report", str(run_dir), "--resamples", "100"])
    assert changed.exit_code == 2 and "results.json" in changed.output
