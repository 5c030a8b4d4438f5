"""End to end: a synthetic, schema-faithful run folder → report.md + figures, checked against results.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hyft.cli.errors import UserError
from hyft.evaluation.tables import parse_markdown_table
from hyft.experiments.report import write_report
from tests.experiments_report import synthetic_run as syn

FIGURES = (
    "fig1_fewshot_scaling.png",
    "fig2_cost_quality.png",
    "fig3_epoch_cost.png",
    "fig4_training_dynamics.png",
    "lambda_per_layer.png",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict, str]:
    run_dir = syn.make_run(tmp_path_factory.mktemp("run"))
    report = write_report(run_dir, progress=False).read_text(encoding="utf-8")
    return run_dir, json.loads((run_dir / "results.json").read_text(encoding="utf-8")), report


def section(report: str, heading: str) -> str:
    """Text from the line ``heading`` up to the next heading."""
    start = report.index(heading + "\n")
    rest = report[start + len(heading) + 1 :]
    ends = [i for i in (rest.find("\n## "), rest.find("\n### ")) if i >= 0]
    return rest[: min(ends)] if ends else rest


def split(cell: str) -> tuple[float, float | None]:
    """``"61.0 ± 1.2"`` → (61.0, 1.2); ``"61.0"`` → (61.0, None)."""
    parts = cell.split(" ± ")
    return float(parts[0]), float(parts[1]) if len(parts) == 2 else None


def expected(values: list[float], scale: float = 100.0) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64) * scale
    return float(array.mean()), float(array.std(ddof=1))


def assert_printed(cell: str, values: list[float], scale: float = 100.0, digits: int = 1) -> None:
    mean, std = split(cell)
    want_mean, want_std = expected(values, scale)
    tolerance = 0.5 * 10**-digits + 1e-9  # equal to the printed precision
    assert abs(mean - want_mean) <= tolerance, (cell, want_mean)
    assert std is not None and abs(std - want_std) <= tolerance, (cell, want_std)


def evals(results: dict, method: str, k: int = 32, stage: str = "C2", key: str = "eval") -> list[dict]:
    cells = [
        c for c in results["cells"] if c["method"] == method and c["k_shot"] == k and c["curation"] == stage
    ]
    assert len(cells) == len(syn.SEEDS)
    return [c[key] for c in cells]


def test_every_file_exists_and_every_png_is_a_real_image(run):
    run_dir, _, report = run
    assert (run_dir / "report.md").is_file()
    for name in FIGURES:
        assert f"](figures/{name})" in report
        image = matplotlib.image.imread(run_dir / "figures" / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        ink = (image[..., :3] < 0.9).any(axis=2).mean()  # share of non-white pixels
        assert 0.01 < ink < 0.8 and image[..., :3].std() > 0.05


def test_table_ii_numbers_are_seed_means_and_stds(run):
    _, results, report = run
    rows = parse_markdown_table(section(report, f"### Table II · {syn.TASK} · {syn.MODEL}"))
    assert [row["Method"] for row in rows] == list(syn.METHODS)
    for row in rows:
        cells = evals(results, row["Method"])
        for lang in syn.LANGUAGES:
            assert_printed(row[lang.upper()], [e["accuracy"][lang] for e in cells])
        assert_printed(row["Macro"], [e["macro"] for e in cells])
        assert_printed(row["Δ"], [e["delta"] for e in cells])
        assert_printed(row["Avg-ECE"], [e["avg_ece"] for e in cells])
        assert_printed(row["Avg-ECE (TS)"], [e["avg_ece_temperature_scaled"] for e in cells])
    # the planted ordering survives aggregation: hybrid far above lora
    macro = {row["Method"]: split(row["Macro"])[0] for row in rows}
    assert macro["hybrid"] - macro["lora"] > 30


def test_table_iv_robustness_and_table_vi_footprint(run):
    _, results, report = run
    for row in parse_markdown_table(section(report, f"### Table IV · {syn.TASK} · {syn.MODEL}")):
        cells = evals(results, row["Method"])
        assert_printed(row["Macro drop"], [e["orthographic"]["macro"]["drop"] for e in cells])
        assert_printed(row["HI drop"], [e["per_language"]["hi"]["orthographic"]["drop_all"] for e in cells])
    for row in parse_markdown_table(section(report, f"### Table VI · {syn.TASK} · {syn.MODEL}")):
        footprints = evals(results, row["Method"], key="footprint")
        assert_printed(row["Peak mem. (GB)"], [f["peak_memory_bytes"] for f in footprints], 1e-9, 2)
        assert_printed(row["Step time (s)"], [f["step_time_median_s"] for f in footprints], 1.0, 3)
        assert_printed(row["Tunable (M)"], [f["trainable_parameters"] for f in footprints], 1e-6, 3)


def test_table_v_curation_ablation_and_counts(run):
    _, results, report = run
    rows = parse_markdown_table(section(report, f"### Table V · {syn.TASK} · {syn.MODEL}"))
    assert [row["Method"] for row in rows] == [f"{s} · {m}" for m in syn.METHODS for s in syn.STAGES]
    for row in rows:
        stage, method = row["Method"].split(" · ")
        cells = evals(results, method, 32, stage)
        assert_printed(row["Macro"], [e["macro"] for e in cells])
        assert_printed(row["Avg-ECE"], [e["avg_ece"] for e in cells])
    counts = parse_markdown_table(section(report, "### Data governance"))
    languages = results["curation"]["languages"]
    assert [row["Language"] for row in counts] == list(languages)
    for row in counts:
        summary = languages[row["Language"]]
        assert [int(row[c]) for c in ("Input", "C0", "C1", "C2")] == [
            summary["n_input"],
            summary["n_c0"],
            summary["n_c1"],
            summary["n_c2"],
        ]
        assert float(row["C0→C2 kept (%)"]) == pytest.approx(
            100 * summary["n_c2"] / summary["n_c0"], abs=0.05
        )


def test_tables_without_data_are_skipped_with_a_note(run):
    _, _, report = run
    assert (
        "### Table III" not in report
        and "_Table III skipped: the run has no translation (FLORES) cells._" in report
    )
    assert "### Table I ·" not in report and "_Table I skipped" in report


def test_significance_planted_difference_yes_identical_methods_no(run):
    run_dir, results, report = run
    rows = parse_markdown_table(section(report, "## Significance"))
    assert len(rows) == len(syn.K_SHOTS) * len(syn.STAGES) * (len(syn.METHODS) - 1)
    by = {(row["Comparison"], int(row["k"]), row["Curation"]): row for row in rows}
    for k in syn.K_SHOTS:
        for stage in syn.STAGES:
            assert by[("hybrid − lora", k, stage)]["Significant"] == "yes"
            identical = by[("hybrid − lora_ga", k, stage)]
            assert identical["Significant"] == "no" and float(identical["Mean diff (pp)"]) == 0.0
            # mean difference = micro accuracy difference recomputed from the samples files
            diffs = []
            for seed in syn.SEEDS:
                correct = {}
                for method in ("hybrid", "lora"):
                    path = (
                        run_dir
                        / f"cells/{syn.MODEL}__{method}__{syn.TASK}__k{k}__{stage}__seed{seed}/samples.jsonl"
                    )
                    lines = [json.loads(line) for line in path.read_text().splitlines()]
                    correct[method] = np.mean([s["prediction"] == s["gold"] for s in lines])
                diffs.append(correct["hybrid"] - correct["lora"])
            row = by[("hybrid − lora", k, stage)]
            assert float(row["Mean diff (pp)"]) == pytest.approx(100 * np.mean(diffs), abs=0.005)
            low, high = (float(v) for v in row["95% CI (pp)"].strip("[]").split(", "))
            assert 0 < low < float(row["Mean diff (pp)"]) < high


def test_report_states_setup_and_honest_notes(run):
    _, _, report = run
    setup = section(report, "## Setup")
    for expected_line in (
        "- Methods: lora, lora_ga, boft, hybrid",
        "- Seeds: 0, 1",
        "- k (shots per language): 8, 32",
        "k = 32, curation C2",
        "en 40, zh 40, hi 40",
        "`git_commit`: abc123",
        "`packages.torch`: 2.13.0",
        "`xnli.test.en.jsonl`: 1234 bytes, sha256 `abababab",
    ):
        assert expected_line in setup
    assert "2 seeds" in section(report, "## Notes") and "CIs are wide" in section(report, "## Notes")


def test_same_input_gives_identical_report_and_figures(run, tmp_path):
    run_dir, _, report = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "figures")
    assert write_report(copy, progress=False).read_text(encoding="utf-8") == report
    for name in FIGURES:
        assert (copy / "figures" / name).read_bytes() == (run_dir / "figures" / name).read_bytes()


def test_failed_cell_is_left_out_and_named(run, tmp_path):
    run_dir, results, _ = run
    copy = tmp_path / "failed"
    shutil.copytree(run_dir, copy)
    broken = json.loads(json.dumps(results))
    victim = next(
        c for c in broken["cells"] if c["method"] == "boft" and c["k_shot"] == 32 and c["curation"] == "C2"
    )
    victim.update(status="failed", error="CUDA out of memory")
    (copy / "results.json").write_text(json.dumps(broken), encoding="utf-8")
    report = write_report(copy, progress=False).read_text(encoding="utf-8")
    assert f"`{victim['cell_id']}` is failed and left out: CUDA out of memory" in report
    rows = {
        r["Method"]: r
        for r in parse_markdown_table(section(report, f"### Table II · {syn.TASK} · {syn.MODEL}"))
    }
    survivor = next(
        c
        for c in broken["cells"]
        if c["method"] == "boft" and c["k_shot"] == 32 and c["curation"] == "C2" and c["status"] == "done"
    )
    assert rows["boft"]["Macro"] == f"{100 * survivor['eval']['macro']:.1f}"  # one seed: no ± std


def test_cli_verb_writes_the_report_and_reports_user_errors(run, tmp_path):
    from hyft.cli import report as report_cli

    app = typer.Typer()
    report_cli.register(app)

    @app.callback()
    def main() -> None:  # a callback keeps "report" a named sub-command, as in hyft's app
        pass

    run_dir, _, _ = run
    copy = tmp_path / "cli"
    shutil.copytree(run_dir, copy)
    (copy / "report.md").unlink()
    result = CliRunner().invoke(app, ["report", str(copy), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    assert (copy / "report.md").is_file()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "results.json: not found" in missing.output


def test_malformed_results_name_the_problem(tmp_path):
    (tmp_path / "results.json").write_text('{"schema_version": 1,\n "cells": [}', encoding="utf-8")
    with pytest.raises(UserError, match=r"results.json:2: not valid JSON"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 2, "cells": []}), encoding="utf-8")
    with pytest.raises(UserError, match="expected schema_version 1"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "cells": [
                    {
                        "cell_id": "x",
                        "model": "m",
                        "method": "lora",
                        "task": "t",
                        "k_shot": 8,
                        "seed": 0,
                        "status": "done",
                    }
                ],
            }
        )
    )
    with pytest.raises(UserError, match=r"cells\[0\] \(x\) lacks \['eval'\]"):
        write_report(tmp_path)


def test_key_differences_in_plain_words_before_the_setup(run):
    run_dir, results, report = run
    assert report.index("## Key differences") < report.index("## Setup")
    lines = [line for line in section(report, "## Key differences").splitlines() if line.startswith("- ")]
    assert len(lines) == len(syn.METHODS) - 1  # main setting (k = 32, C2) only
    by_other = {line.split(" vs ")[1].split(":")[0]: line for line in lines}
    assert by_other["lora_ga"].endswith("0.0 points [0.0, 0.0], not significant (2 seeds, 120 examples).")
    assert ", significant (2 seeds, 120 examples)." in by_other["lora"]
    # the mean difference is the micro accuracy difference recomputed from the samples files
    diffs = []
    for seed in syn.SEEDS:
        correct = {}
        for method in ("hybrid", "lora"):
            path = run_dir / f"cells/{syn.MODEL}__{method}__{syn.TASK}__k32__C2__seed{seed}/samples.jsonl"
            correct[method] = np.mean(
                [s["prediction"] == s["gold"] for s in map(json.loads, path.read_text().splitlines())]
            )
        diffs.append(correct["hybrid"] - correct["lora"])
    assert by_other["lora"].startswith(
        f"- {syn.MODEL} · {syn.TASK}: hybrid vs lora: +{100 * np.mean(diffs):.1f} points ["
    )
    low, high = (float(v) for v in by_other["lora"].split("[")[1].split("]")[0].split(", "))
    assert 0 < low < 100 * np.mean(diffs) < high


def test_table_ii_ci_table_means_are_seed_means_inside_their_intervals(run):
    _, results, report = run
    block = section(report, f"### Table II · {syn.TASK} · {syn.MODEL}")
    ci_rows = parse_markdown_table(block[block.index("95% CIs") :])
    assert [row["Method"] for row in ci_rows] == list(syn.METHODS)
    for row in ci_rows:
        cells = evals(results, row["Method"])
        for column, values in [
            *[(lang.upper(), [e["accuracy"][lang] for e in cells]) for lang in syn.LANGUAGES],
            ("Macro", [e["macro"] for e in cells]),
            ("Δ", [e["delta"] for e in cells]),
        ]:
            mean, interval = row[column].split(" [")
            low, high = (float(v) for v in interval.rstrip("]").split(", "))
            assert float(mean) == pytest.approx(100 * np.mean(values), abs=0.05 + 1e-6), (
                row["Method"],
                column,
            )
            assert low <= float(mean) <= high and high - low > 5  # 40 examples a language: never a point
    hybrid = next(row for row in ci_rows if row["Method"] == "hybrid")
    assert {k: v for k, v in hybrid.items() if k != "Method"} == {
        k: v for k, v in next(row for row in ci_rows if row["Method"] == "lora_ga").items() if k != "Method"
    }


def test_notes_say_the_cis_include_seed_variance(run):
    _, _, report = run
    notes = section(report, "## Notes")
    assert "include seed-to-seed training variance" in notes and "leave out seed-to-seed" not in notes
    assert "With 2 seeds the seed part of a CI" in notes


def test_multi_task_run_table_i_has_a_glue_column_and_every_task_is_compared(run, tmp_path):
    """The synthetic xnli cells copied as sst2, qnli and mnli (macro scaled by 1.0, 0.9, 0.8): Table I shows
    a column per task and GLUE = the mean of the three; Table II keeps xnli only; each task is compared."""
    run_dir, results, _ = run
    copy = tmp_path / "multi"
    shutil.copytree(run_dir, copy)
    multi = json.loads(json.dumps(results))
    factors = {"sst2": 1.0, "qnli": 0.9, "mnli": 0.8}
    for task, factor in factors.items():
        for cell in results["cells"]:
            clone = json.loads(json.dumps(cell))
            clone["task"], clone["cell_id"] = task, cell["cell_id"].replace(syn.TASK, task)
            clone["eval"]["task"], clone["eval"]["macro"] = task, factor * cell["eval"]["macro"]
            multi["cells"].append(clone)
    multi["run"]["tasks"] = [syn.TASK, *factors]
    (copy / "results.json").write_text(json.dumps(multi), encoding="utf-8")
    report = write_report(copy, progress=False).read_text(encoding="utf-8")
    table = parse_markdown_table(section(report, f"### Table I · tasks · {syn.MODEL}"))
    assert list(table[0]) == ["Method", syn.TASK, "sst2", "qnli", "mnli", "GLUE"]
    for row in table:
        macros = [e["macro"] for e in evals(results, row["Method"])]
        glue = [100 * np.mean([factor * m for factor in factors.values()]) for m in macros]  # per seed
        assert row["GLUE"] == f"{np.mean(glue):.1f} ± {np.std(glue, ddof=1):.1f}"
        assert_printed(row["qnli"], [0.9 * m for m in macros])
    assert "### Table II · sst2" not in report and f"### Table II · {syn.TASK} · {syn.MODEL}" in report
    key_lines = [line for line in section(report, "## Key differences").splitlines() if line.startswith("- ")]
    assert len(key_lines) == 4 * (len(syn.METHODS) - 1)
    assert any(line.startswith(f"- {syn.MODEL} · mnli: hybrid vs lora: ") for line in key_lines)


def test_collapsed_cells_are_named_with_whether_they_recovered(run, tmp_path):
    run_dir, results, _ = run
    copy = tmp_path / "collapsed"
    shutil.copytree(run_dir, copy)
    edited = json.loads(json.dumps(results))
    trained = [c for c in edited["cells"] if c["status"] == "done" and c["k_shot"] > 0]
    stuck, recovered = trained[0], trained[1]
    stuck.setdefault("dynamics", {}).update(epochs=[{}, {}, {}], collapsed_epochs=[0, 1, 2])
    recovered.setdefault("dynamics", {}).update(epochs=[{}, {}, {}], collapsed_epochs=[0])
    (copy / "results.json").write_text(json.dumps(edited), encoding="utf-8")
    report = write_report(copy, progress=False).read_text(encoding="utf-8")
    assert (
        f"`{stuck['cell_id']}` had its mean training loss at the uniform-prediction loss (ln C) in epoch(s) "
        "[0, 1, 2], the last included: it never learned" in report
    )
    assert (
        "Slow start: 1 cell had the mean training loss at the uniform-prediction loss (ln C) in early epochs "
        f"and learned afterwards: `{recovered['cell_id']}` [0]." in report
    )
    assert report.count("Collapse:") == 1


def test_headline_names_the_best_method_and_its_gain_over_the_untrained_model(run, tmp_path):
    run_dir, results, _ = run
    copy = tmp_path / "headline"
    shutil.copytree(run_dir, copy)
    edited = json.loads(json.dumps(results))
    languages = list(syn.LANGUAGES)
    for seed in syn.SEEDS:  # an untrained k = 0 cell per seed at the main stage, at chance
        edited["cells"].append(
            {
                "cell_id": f"{syn.MODEL}__zero-shot__{syn.TASK}__k0__C2__seed{seed}",
                "model": syn.MODEL,
                "method": "zero-shot",
                "task": syn.TASK,
                "k_shot": 0,
                "curation": "C2",
                "seed": seed,
                "status": "done",
                "eval": {
                    "kind": "classification",
                    "accuracy": {lang: 0.30 + 0.02 * seed for lang in languages},
                    "macro": 0.30 + 0.02 * seed,
                    "delta": 0.0,
                    "avg_ece": 0.2,
                    "avg_ece_temperature_scaled": 0.1,
                },
                "footprint": {},
                "dynamics": {},
            }
        )
    (copy / "results.json").write_text(json.dumps(edited), encoding="utf-8")
    report = write_report(copy, progress=False).read_text(encoding="utf-8")
    assert report.index("## Headline") < report.index("## Key differences")
    means = {m: np.mean([c["macro"] for c in evals(results, m)]) for m in syn.METHODS}
    best = max(means, key=means.get)
    best_cells = evals(results, best)
    gain = 100 * (means[best] - 0.31)
    english = 100 * (np.mean([c["accuracy"]["en"] for c in best_cells]) - 0.31)
    line = next(line for line in section(report, "## Headline").splitlines() if line.startswith("- "))
    assert f"best method **{best}**, macro accuracy {100 * means[best]:.1f} % (2 seeds)" in line
    assert f"+{gain:.1f} points over the untrained model (+{english:.1f} in English)" in line
    ece = (
        100 * np.mean([c["avg_ece"] for c in best_cells]),
        100 * np.mean([c["avg_ece_temperature_scaled"] for c in best_cells]),
    )
    assert f"ECE {ece[0]:.1f} → {ece[1]:.1f} after temperature scaling" in line
    gains = next(line for line in report.splitlines() if line.strip().startswith("Gain over untrained"))
    assert all(f"{m} " in gains for m in syn.METHODS)


def test_search_trials_and_the_chosen_values_are_in_the_report(run, tmp_path):
    run_dir, results, report = run
    assert "### Hyper-parameter search" not in report  # the synthetic run has no search
    copy = tmp_path / "searched"
    shutil.copytree(run_dir, copy)
    searched = json.loads(json.dumps(results))
    trials = [
        {"point": {"lr": 2e-4}, "name": "lr=0.0002", "score": 0.375, "scores": {"0": 0.375}},
        {"point": {"lr": 1e-3}, "name": "lr=0.001", "score": 0.46875, "scores": {"0": 0.46875}},
    ]
    searched["search"] = {
        "grid": {"lr": [2e-4, 1e-3]},
        "metric": "accuracy",
        "k_shot": 32,
        "seeds": [0],
        "methods": ["lora"],
        "searches": [
            {"model": syn.MODEL, "task": syn.TASK, "method": "lora", "trials": trials, "chosen": {"lr": 1e-3}}
        ],
    }
    (copy / "results.json").write_text(json.dumps(searched), encoding="utf-8")
    text = section(
        write_report(copy, progress=False).read_text(encoding="utf-8"), "### Hyper-parameter search"
    )
    assert "lr ∈ {0.0002, 0.001}" in text and "k = 32 on seed(s) 0" in text
    rows = {r["Trial"]: r for r in parse_markdown_table(text[text.index("| Model") :])}
    assert rows["lr=0.0002"]["Validation accuracy"] == "37.5" and rows["lr=0.0002"]["Chosen"] == ""
    assert rows["lr=0.001"]["Validation accuracy"] == "46.9" and rows["lr=0.001"]["Chosen"] == "**yes**"
    assert rows["lr=0.001"]["Model · task · method"] == f"{syn.MODEL} · {syn.TASK} · lora"
