"""Units of the report: seed aggregation, Pareto front, paired matching, hierarchical bootstrap on samples
files, Tables I and III, curation counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hyft.evaluation.tables import parse_markdown_table
from hyft.experiments import tables
from hyft.experiments.aggregate import (
    GroupKey,
    MainSetting,
    compare_methods,
    group_cells,
    group_language_intervals,
    language_intervals,
    mean_std,
    paired_matrices,
)
from hyft.experiments.figures import figure_1_fewshot_scaling, pareto_front


def test_mean_std_is_leafwise_with_sample_std_and_keeps_labels():
    mean, std = mean_std(
        [
            {"kind": "classification", "accuracy": {"en": 0.5, "zh": 0.2}, "macro": 0.35},
            {"kind": "classification", "accuracy": {"en": 0.7, "zh": None}, "macro": 0.45},
        ]
    )
    assert mean == {
        "kind": "classification",
        "accuracy": {"en": pytest.approx(0.6), "zh": 0.2},
        "macro": pytest.approx(0.4),
    }
    assert std["kind"] == "classification"
    assert std["accuracy"]["en"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert std["accuracy"]["zh"] is None  # one seed has it: no spread
    assert mean_std([3.0]) == (3.0, None)


def test_pareto_front_on_a_hand_made_case():
    #        cost  quality
    points = [
        (1.0, 50.0),  # 0 cheapest: on the front
        (2.0, 70.0),  # 1 on the front
        (2.5, 65.0),  # 2 dominated by 1 (dearer and worse)
        (3.0, 80.0),  # 3 on the front
        (3.0, 75.0),  # 4 dominated by 3 (same cost, worse)
        (4.0, 80.0),  # 5 dominated by 3 (dearer, same quality)
        (2.0, 70.0),
    ]  # 6 equal to 1: kept as well
    costs, qualities = zip(*points, strict=True)
    assert pareto_front(costs, qualities) == [0, 1, 6, 3]  # sorted by cost, ties by index
    assert pareto_front([1.0], [0.0]) == [0]
    with pytest.raises(ValueError):
        pareto_front([1.0, 2.0], [1.0])


def test_paired_matrices_match_by_id_not_by_position_and_keep_ids_scored_in_every_seed():
    reference = [{"a": 1.0, "b": 1.0, "c": 0.0}, {"a": 1.0, "b": 0.0, "c": 1.0}]
    other = [
        {"c": 1.0, "b": 0.0, "a": 0.0, "zz": 1.0},
        {"b": 1.0, "a": 0.0},
    ]  # shuffled, extra and missing ids
    a, b, partial = paired_matrices(reference, other)
    np.testing.assert_array_equal(a, [[1.0, 1.0], [1.0, 0.0]])  # columns: ids a, b (c lacks seed 1's other)
    np.testing.assert_array_equal(b, [[0.0, 0.0], [0.0, 1.0]])
    assert partial == 1  # c: scored by both in seed 0 only
    with pytest.raises(ValueError):
        paired_matrices(reference, other[:1])


def _cell(method: str, task: str, seed: int, eval_: dict, samples_path: str | None = None) -> dict:
    return {
        "cell_id": f"m__{method}__{task}__k32__C2__seed{seed}",
        "model": "m",
        "method": method,
        "task": task,
        "k_shot": 32,
        "curation": "C2",
        "seed": seed,
        "status": "done",
        "eval": eval_,
        "samples_path": samples_path,
    }


def _write_samples(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_bootstrap_identical_methods_are_not_significant_and_a_large_gap_is(tmp_path):
    rng = np.random.default_rng(0)
    cells = []
    for seed in (0, 1):
        strong = rng.random(300) < 0.9
        for method, correct in (("hybrid", strong), ("twin", strong), ("weak", rng.random(300) < 0.4)):
            path = f"{method}{seed}.jsonl"
            _write_samples(
                tmp_path / path,
                [
                    {"id": f"x{i}", "gold": "y", "prediction": "y" if ok else "n"}
                    for i, ok in enumerate(correct)
                ],
            )
            cells.append(_cell(method, "nli", seed, {"kind": "classification", "macro": 0.5}, path))
    comparisons, notes = compare_methods(tmp_path, group_cells(cells), progress=False)
    verdict = {c.other: c for c in comparisons}
    assert not notes
    assert verdict["weak"].significant and verdict["weak"].low > 30
    assert not verdict["twin"].significant and verdict["twin"].mean_difference == 0.0
    assert (verdict["twin"].low, verdict["twin"].high) == (0.0, 0.0)
    assert verdict["weak"].n_examples == 300 and verdict["weak"].seeds == (0, 1)


def test_compare_methods_counts_seed_variance(tmp_path):
    """Seed 0: hybrid right on all 200 examples, lora on none; seed 1 the other way round. The mean
    difference is 0 and an example-only bootstrap of the seed-averaged scores would give [0, 0]; resampling
    seeds gives −100 (both draws seed 1, p = ¼), 0 or +100 (both seed 0), so the 95% CI is [−100, 100]."""
    cells = []
    for seed in (0, 1):
        for method, right in (("hybrid", seed == 0), ("lora", seed == 1)):
            path = f"{method}{seed}.jsonl"
            _write_samples(
                tmp_path / path,
                [{"id": f"x{i}", "gold": "y", "prediction": "y" if right else "n"} for i in range(200)],
            )
            cells.append(_cell(method, "nli", seed, {"kind": "classification", "macro": 0.5}, path))
    (comparison,), _ = compare_methods(tmp_path, group_cells(cells), n_resamples=2000, progress=False)
    assert (comparison.mean_difference, comparison.low, comparison.high) == (0.0, -100.0, 100.0)
    assert not comparison.significant


def test_language_intervals_by_hand():
    """Two seeds, two languages. en: seed 0 all wrong, seed 1 all right; zh: the reverse. A resample that
    draws seeds (0, 0) has en 0 %, zh 100 %; (1, 1) the reverse; mixed draws give 50 % each. So each language
    has mean 50 and CI [0, 100]; Macro is 50 in every resample (the languages move together because they
    share the seed draw): CI [50, 50]; Δ is 100 within every seed, so mean and CI are 100 [100, 100]."""
    seeds = [
        {
            "en": {f"en{i}": float(seed == 1) for i in range(30)},
            "zh": {f"zh{i}": float(seed == 0) for i in range(20)},
        }
        for seed in (0, 1)
    ]
    key = GroupKey("m", "lora", "xnli", 32, "C2")
    found = group_language_intervals(seeds, key, (0, 1), n_resamples=2000)
    assert found is not None and found.n_examples == {"en": 30, "zh": 20}
    for lang in ("en", "zh"):
        assert (found.accuracy[lang].mean, found.accuracy[lang].low, found.accuracy[lang].high) == (
            50.0,
            0.0,
            100.0,
        )
    assert (found.macro.mean, found.macro.low, found.macro.high) == (50.0, 50.0, 50.0)
    assert (found.delta.mean, found.delta.low, found.delta.high) == (100.0, 100.0, 100.0)


def test_language_intervals_from_samples_files_with_one_seed_are_the_example_bootstrap(tmp_path):
    """One seed, one language: the interval is a plain example bootstrap of the accuracy; its mean is the
    accuracy of the samples file and the interval holds the normal-approximation one to within 2 points."""
    rng = np.random.default_rng(4)
    correct = rng.random(400) < 0.7
    _write_samples(
        tmp_path / "s.jsonl",
        [
            {"id": f"en/{i}", "lang": "en", "gold": "y", "prediction": "y" if ok else "n"}
            for i, ok in enumerate(correct)
        ],
    )
    cells = [_cell("lora", "xnli", 0, {"kind": "classification", "macro": 0.7}, "s.jsonl")]
    found, notes = language_intervals(tmp_path, group_cells(cells).values(), n_resamples=2000, progress=False)
    en = found[GroupKey("m", "lora", "xnli", 32, "C2")].accuracy["en"]
    p = correct.mean()
    half = 196 * np.sqrt(p * (1 - p) / 400)
    assert not notes and en.mean == pytest.approx(100 * p)
    assert abs(en.low - (100 * p - half)) < 2 and abs(en.high - (100 * p + half)) < 2
    missing = [_cell("boft", "xnli", 0, {"kind": "classification", "macro": 0.7}, "absent.jsonl")]
    found, notes = language_intervals(tmp_path, group_cells(missing).values(), progress=False)
    assert not found and "samples file 'absent.jsonl' not found" in notes[0]


def test_table_i_one_column_per_task_and_glue_macro_over_the_glue_tasks_present():
    """sst2, qnli, mnli and xnli cells: GLUE = per seed the mean of the three GLUE tasks (xnli is not GLUE),
    then mean ± std over seeds; xnli gets its own column; a method lacking a GLUE task has no GLUE number."""
    scores = {
        ("lora", 0): {"sst2": 0.80, "qnli": 0.70, "mnli": 0.60, "xnli": 0.40},
        ("lora", 1): {"sst2": 0.84, "qnli": 0.74, "mnli": 0.58, "xnli": 0.44},
        ("hybrid", 0): {"sst2": 0.90, "qnli": 0.81, "mnli": 0.66, "xnli": 0.50},
        ("hybrid", 1): {"sst2": 0.88, "qnli": 0.79, "mnli": 0.70, "xnli": 0.52},
        ("boft", 0): {"sst2": 0.85, "xnli": 0.45},
    }
    cells = [
        _cell(method, task, seed, {"kind": "classification", "accuracy": {"en": value}, "macro": value})
        for (method, seed), by_task in scores.items()
        for task, value in by_task.items()
    ]
    run = {"methods": ["lora", "boft", "hybrid"], "tasks": ["sst2", "qnli", "mnli", "xnli"]}
    markdown = tables.table_general(group_cells(cells), run, MainSetting(32, "C2", "xnli"))
    assert (
        "### Table I · tasks · m" in markdown and "GLUE = per seed the mean over sst2, qnli, mnli" in markdown
    )
    table = parse_markdown_table(markdown[markdown.index("|") :])
    assert list(table[0]) == ["Method", "sst2", "qnli", "mnli", "GLUE", "xnli"]
    rows = {row["Method"]: row for row in table}
    assert list(rows) == ["lora", "boft", "hybrid"]
    hybrid_glue = [100 * (0.90 + 0.81 + 0.66) / 3, 100 * (0.88 + 0.79 + 0.70) / 3]  # 79.0, 79.0
    lora_glue = [100 * (0.80 + 0.70 + 0.60) / 3, 100 * (0.84 + 0.74 + 0.58) / 3]  # 70.0, 72.0
    assert (
        rows["hybrid"]["GLUE"]
        == f"{np.mean(hybrid_glue):.1f} ± {np.std(hybrid_glue, ddof=1):.1f}"
        == "79.0 ± 0.0"
    )
    assert (
        rows["lora"]["GLUE"] == f"{np.mean(lora_glue):.1f} ± {np.std(lora_glue, ddof=1):.1f}" == "71.0 ± 1.4"
    )
    assert rows["lora"]["xnli"] == "42.0 ± 2.8" and rows["lora"]["mnli"] == "59.0 ± 1.4"
    assert rows["boft"]["GLUE"] == "–" and rows["boft"]["sst2"] == "85.0" and rows["boft"]["qnli"] == "–"


def test_table_i_general_benchmarks_per_model_with_glue_as_task_mean():
    scores = {
        ("lora", 0): (0.80, 0.70, 0.30, 0.40),
        ("lora", 1): (0.82, 0.74, 0.34, 0.44),
        ("hybrid", 0): (0.90, 0.80, 0.40, 0.50),
        ("hybrid", 1): (0.86, 0.78, 0.44, 0.52),
    }
    cells = []
    for (method, seed), (sst2, mnli, gsm8k, humaneval) in scores.items():
        for task, value in (("sst2", sst2), ("mnli", mnli)):
            cells.append(
                _cell(
                    method, task, seed, {"kind": "classification", "accuracy": {"en": value}, "macro": value}
                )
            )
        cells.append(
            _cell(
                method,
                "gsm8k",
                seed,
                {"kind": "generation", "metric": "exact_match", "exact_match": {"en": gsm8k}},
            )
        )
        cells.append(
            _cell(
                method,
                "humaneval",
                seed,
                {"kind": "generation", "metric": "pass@1", "pass@1": {"en": humaneval}},
            )
        )
        cells.append(
            _cell(
                method,
                "mtbench",
                seed,
                {"kind": "generation", "metric": "judge_score", "judge_score": {"en": None}},
            )
        )
    markdown = tables.table_general(
        group_cells(cells), {"methods": ["lora", "hybrid"]}, MainSetting(32, "C2", "sst2")
    )
    rows = {r["Method"]: r for r in parse_markdown_table(markdown[markdown.index("|") :])}
    glue = [100 * (0.90 + 0.80) / 2, 100 * (0.86 + 0.78) / 2]
    assert rows["hybrid"]["GLUE"] == f"{np.mean(glue):.1f} ± {np.std(glue, ddof=1):.1f}"
    assert rows["lora"]["GSM8K (%)"] == f"{np.mean([30, 34]):.1f} ± {np.std([30, 34], ddof=1):.1f}"
    assert rows["hybrid"]["HumanEval pass@1 (%)"] == "51.0 ± 1.4"
    assert "MT-Bench" not in rows["lora"]  # unjudged: no numbers, no column
    # the multilingual Table II leaves GLUE tasks to Table I
    assert "skipped" in tables.table_multilingual(group_cells(cells), {}, MainSetting(32, "C2", "sst2"))


def test_mt_bench_judge_score_stays_on_its_1_to_10_scale():
    from hyft.experiments.aggregate import headline_score

    assert headline_score(
        {"kind": "generation", "metric": "judge_score", "judge_score": {"en": 7.0, "zh": 6.0}}
    ) == (6.5, "MT-Bench score (1–10)")
    assert headline_score({"kind": "generation", "metric": "pass@1", "pass@1": {"en": 0.25}})[0] == 25.0


def test_table_iii_translation_per_direction():
    cells = []
    for method, seed, en_zh, zh_en in (
        ("lora", 0, 20.0, 24.0),
        ("lora", 1, 22.0, 26.0),
        ("hybrid", 0, 25.0, 27.0),
    ):
        bleu = {"en-zh": en_zh, "zh-en": zh_en}
        cells.append(
            _cell(
                method,
                "flores",
                seed,
                {
                    "kind": "translation",
                    "bleu": bleu,
                    "avg_bleu": (en_zh + zh_en) / 2,
                    "delta_bleu": abs(en_zh - zh_en),
                    "chrf": {"en-zh": 30.0, "zh-en": 40.0},
                    "avg_chrf": 35.0,
                    "delta_chrf": 10.0,
                },
            )
        )
    markdown = tables.table_translation(group_cells(cells), {}, MainSetting(32, "C2", "flores"))
    bleu_rows = {r["Method"]: r for r in parse_markdown_table(markdown[markdown.index("BLEU") :])}
    assert bleu_rows["lora"]["EN→ZH"] == f"21.0 ± {np.std([20, 22], ddof=1):.1f}"
    assert bleu_rows["lora"]["Avg"] == f"23.0 ± {np.std([22, 24], ddof=1):.1f}"
    # One EN→X direction: no spread across targets (Δ); the old reverse gap reads as Rev. Δ.
    assert bleu_rows["hybrid"]["Δ"] == "–" and bleu_rows["hybrid"]["Rev. Δ"] == "2.0"
    chrf_rows = parse_markdown_table(markdown[markdown.index("chrF") :])
    assert chrf_rows[0]["Avg"] == "35.0 ± 0.0"


def test_curation_counts_read_both_report_shapes():
    schema_doc = {
        "stages": {"C0": {"en": 9}},
        "per_language": {"en": {"input": 10, "dropped": {"lid": 1}, "kept": {"C0": 9, "C1": 8, "C2": 7}}},
    }
    governance = {
        "languages": {"en": {"n_input": 10, "n_c0": 9, "n_c1": 8, "n_c2": 7, "dropped": {"lid": 1}}}
    }
    for shape in (schema_doc, governance):
        assert tables.curation_counts(shape) == {
            "en": {"input": 10, "dropped": {"lid": 1}, "C0": 9, "C1": 8, "C2": 7}
        }
    assert tables.curation_counts({"stages": {"C0": {"hi": 4}, "C2": {"hi": 3}}})["hi"]["C2"] == 3
    assert "No curation counts" in tables.table_curation_counts(None)


def test_figures_return_none_without_data(tmp_path):
    one_k = {"run": {}, "cells": [_cell("lora", "nli", 0, {"kind": "classification", "macro": 0.5})]}
    assert figure_1_fewshot_scaling(one_k, tmp_path / "f1.png") is None
    assert not (tmp_path / "f1.png").exists()
    assert GroupKey("m", "lora", "nli", 32, "C2") in group_cells(one_k["cells"])


def test_figure_1_starts_every_method_at_the_shared_zero_shot_cell(tmp_path, monkeypatch):
    """Each trained method's line is drawn from the one k = 0 cell (macro 0.30 over two seeds, at the
    first x position) to its own k = 32 mean; the zero-shot cell gets no line of its own."""
    from hyft.experiments import figures

    cells = [
        _cell("zero-shot", "nli", seed, {"kind": "classification", "macro": 0.3 + 0.02 * seed})
        | {"k_shot": 0}
        for seed in (0, 1)
    ]
    cells += [
        _cell(method, "nli", seed, {"kind": "classification", "macro": value + 0.01 * seed})
        for method, value in (("lora", 0.5), ("hybrid", 0.6))
        for seed in (0, 1)
    ]
    results = {"run": {"methods": ["lora", "hybrid"], "primary_task": "nli"}, "cells": cells}
    drawn = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, out_path: drawn.append(fig) or save(fig, out_path))
    path = figure_1_fewshot_scaling(results, tmp_path / "f1.png")
    assert path is not None and path.stat().st_size > 0
    (axes,) = drawn[0].axes
    lines = {container.get_label(): container.lines[0].get_xydata() for container in axes.containers}
    assert set(lines) == {"lora", "hybrid"}
    for method, value in (("lora", 50.5), ("hybrid", 60.5)):  # % means over seeds
        assert lines[method].tolist() == [[0, pytest.approx(31.0)], [1, pytest.approx(value)]]


def test_main_setting_of_an_interrupted_run_is_a_k_it_has_cells_for():
    from hyft.experiments.aggregate import main_setting

    cells = [{"k_shot": k, "curation": "none", "task": "xnli"} for k in (0, 32, 32, 128)]
    planned_512 = {"run": {"main_k_shot": 512, "train_stage": "none", "primary_task": "xnli"}, "cells": cells}
    assert main_setting(planned_512).k_shot == 32  # the paper's k, which the run has
    reached_128 = {"run": {"main_k_shot": 128, "train_stage": "none", "primary_task": "xnli"}, "cells": cells}
    assert main_setting(reached_128).k_shot == 128  # the planned k is kept when cells exist for it
