"""hyft run end to end on a reduced demo: every file of the run folder, resume, validation errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _reduced_demo(tmp_path: Path, name: str, **changes) -> dict:
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config["run"].update(name=name, output_dir=str(tmp_path), seeds=[0])
    config["data"].update(
        languages=["en", "zh"], k_shots=[8], max_eval_examples=12, val_examples=10, max_length=48
    )
    config["train"].update(max_steps=2, batch_size=8, init_batches=1)
    config["eval"].update(calibration_examples=10, batch_size=32)
    config["methods"] = {
        "lora": {"r": 4, "alpha": 8},
        "hybrid": {"r": 4, "alpha": 8, "boft_block_size": 8, "boft_n_butterfly_factor": 2},
    }
    for key, value in changes.items():
        section, field = key.split(".")
        if value is None:
            config[section].pop(field, None)
        else:
            config.setdefault(section, {})[field] = value
    return config


def _load(config: dict):
    from hyft.config import validate_config
    from hyft.experiments.config import RunConfig

    return validate_config(config, RunConfig)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from hyft.experiments.runner import run

    tmp_path = tmp_path_factory.mktemp("runs")
    return run(_load(_reduced_demo(tmp_path, "e2e")), show_progress=False)


def test_run_folder_has_every_file_and_the_report_matches_results(demo_run):
    from hyft.evaluation.tables import parse_markdown_table

    for name in (
        "report.md",
        "results.json",
        "manifest.json",
        "config.resolved.yaml",
        "launch.txt",
        "curation/ledger.jsonl",
        "curation/c2.jsonl",
        "curation/report.md",
    ):
        assert (demo_run / name).is_file(), name
    results = json.loads((demo_run / "results.json").read_text())
    cells = results["cells"]
    # lora + hybrid at C2, plus the hybrid's C0 curation-ablation cell.
    assert sorted((c["method"], c["curation"]) for c in cells) == [
        ("hybrid", "C0"),
        ("hybrid", "C2"),
        ("lora", "C2"),
    ]
    for cell in cells:
        assert cell["status"] == "done"
        assert (demo_run / cell["adapter_dir"] / "adapter_config.json").is_file()
        assert (demo_run / cell["adapter_dir"] / "adapter_model.safetensors").is_file()
        samples = (demo_run / cell["samples_path"]).read_text().splitlines()
        assert len(samples) == 24  # 12 test rows × 2 languages
        assert cell["footprint"]["trainable_parameters"] > 0 and cell["footprint"]["steps"] == 2
    hybrid = next(c for c in cells if c["method"] == "hybrid" and c["curation"] == "C2")
    assert hybrid["dynamics"]["lambda"] and all(len(v) == 2 for v in hybrid["dynamics"]["lambda"].values())
    figures = sorted(p.name for p in (demo_run / "figures").glob("*.png"))
    assert len(figures) >= 4, figures
    manifest = json.loads((demo_run / "manifest.json").read_text())
    assert manifest["config_sha256"] == results["run"]["config_hash"]
    assert manifest["models"]["minilm"] and all("sha256" in f for f in manifest["models"]["minilm"])
    assert any("pool.jsonl" in f["path"] for f in manifest["data_files"])
    # Table II in the report carries the same numbers as results.json (percent, one decimal).
    report = (demo_run / "report.md").read_text()
    lora = next(c for c in cells if c["method"] == "lora")
    found = False
    for block in report.split("\n\n"):
        if block.lstrip().startswith("|") and "Macro" in block:
            for row in parse_markdown_table(block):
                if row.get("Method", "").startswith("lora") and "EN" in row:
                    assert float(row["EN"].split()[0]) == pytest.approx(
                        100 * lora["eval"]["accuracy"]["en"], abs=0.051
                    )
                    assert float(row["Macro"].split()[0]) == pytest.approx(
                        100 * lora["eval"]["macro"], abs=0.051
                    )
                    found = True
    assert found, "Table II with a lora row not found in report.md"


def test_interrupted_run_skips_finished_cells_and_ends_with_the_same_results(tmp_path, demo_run):
    from hyft.experiments.runner import run

    config = _load(_reduced_demo(tmp_path, "resume", **{"curation.ablation_stages": []}))
    run_dir = run(config, max_cells=1, show_progress=False)
    first = next((run_dir / "cells").iterdir()) / "result.json"
    stamp = first.stat().st_mtime_ns
    run(config, show_progress=False)
    assert first.stat().st_mtime_ns == stamp  # not recomputed
    resumed = json.loads((run_dir / "results.json").read_text())["cells"]
    straight = {c["cell_id"]: c for c in json.loads((demo_run / "results.json").read_text())["cells"]}
    assert len(resumed) == 2
    for cell in resumed:
        assert cell["eval"]["accuracy"] == straight[cell["cell_id"]]["eval"]["accuracy"]
        assert cell["eval"]["ece"] == straight[cell["cell_id"]]["eval"]["ece"]


def test_validate_reports_all_mistakes_with_suggestions(tmp_path):
    config = _reduced_demo(tmp_path, "bad")
    config["train"]["epoch"] = 3  # epochs
    config["data"]["langauges"] = config["data"].pop("languages")  # languages
    config["methods"]["lora"]["alpah"] = 8  # alpha
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "hyft.cli.main", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "did you mean 'epochs'" in done.stderr
    assert "did you mean 'languages'" in done.stderr
    assert "methods.lora.alpah" in done.stderr and "did you mean 'alpha'" in done.stderr
    assert "bad.yaml:" in done.stderr  # file and line


def test_missing_data_file_fails_before_any_training(tmp_path):
    config = _reduced_demo(tmp_path, "nodata", **{"curation.pool": str(tmp_path / "missing.jsonl")})
    config["data"]["task"] = "xnli"
    config["data"]["data_dir"] = str(tmp_path / "no-such-dir")
    path = tmp_path / "nodata.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "hyft.cli.main", "run", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "missing.jsonl" in done.stderr and "no-such-dir" in done.stderr
    assert not (tmp_path / "nodata" / "cells").exists()
