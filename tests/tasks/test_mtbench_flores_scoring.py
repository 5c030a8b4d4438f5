"""End to end with tiny random causal LMs: FLORES Δ and reverse gap in the results dict and Table III,
MT-Bench BLEU against the GPT-4 references, a tiny local judge, and MT-Bench shots left out of evaluation."""

from __future__ import annotations

import dataclasses
import json

import pytest
import sacrebleu

from hyft.tasks.loading import DataSource
from tests.tasks.conftest import make_llama, make_tokenizer

HAND_BLEU = {"en-zh": 10.0, "en-es": 30.0, "zh-en": 25.0}


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-judge")
    tokenizer = make_tokenizer()
    make_llama(len(tokenizer), seed=11).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _local(data_dir):
    return DataSource.default(data_dir, "local")


def test_flores_results_have_en_x_delta_and_reverse_gap(llama, tokenizer, data_dir):
    from hyft.evaluation.evaluate_generation import evaluate_generation
    from hyft.tasks.flores import FLORES

    def fixed_scores(hypotheses, examples, options):  # hand-made BLEU per direction, chrF = BLEU / 2
        value = HAND_BLEU[examples[0]["lang"]]
        return {"bleu": value, "chrf": value / 2}

    task = dataclasses.replace(FLORES, score_generations=fixed_scores)
    result = evaluate_generation(
        llama,
        tokenizer,
        task,
        list(HAND_BLEU),
        max_examples=2,
        max_new_tokens=2,
        data=_local(data_dir),
        progress=False,
    )
    assert result["bleu"] == HAND_BLEU
    assert result["delta_bleu"] == 20.0  # EN→ES 30 − EN→ZH 10
    assert result["reverse_gap_bleu"] == 15.0  # |EN→ZH 10 − ZH→EN 25|
    assert result["delta_chrf"] == 10.0 and result["reverse_gap_chrf"] == 7.5
    en_x_only = evaluate_generation(
        llama,
        tokenizer,
        task,
        ["en-zh", "en-es"],
        max_examples=1,
        max_new_tokens=2,
        data=_local(data_dir),
        progress=False,
    )
    assert en_x_only["delta_bleu"] == 20.0 and en_x_only["reverse_gap_bleu"] is None


def _translation_cell(method, seed, eval_dict):
    return {
        "model": "m",
        "method": method,
        "task": "flores",
        "k_shot": 32,
        "curation": "C2",
        "seed": seed,
        "status": "done",
        "eval": {"kind": "translation", **eval_dict},
    }


def test_table_iii_shows_delta_and_reverse_gap_and_reads_old_results():
    from hyft.evaluation.tables import parse_markdown_table
    from hyft.experiments import tables
    from hyft.experiments.aggregate import MainSetting, group_cells

    cells = []
    for seed, shift in ((0, 0.0), (1, 2.0)):  # second seed: EN→ES +2 → Δ 22, reverse gap unchanged
        bleu = {"en-zh": 10.0, "en-es": 30.0 + shift, "zh-en": 25.0}
        cells.append(
            _translation_cell(
                "hybrid",
                seed,
                {
                    "bleu": bleu,
                    "avg_bleu": sum(bleu.values()) / 3,
                    "delta_bleu": 20.0 + shift,
                    "reverse_gap_bleu": 15.0,
                    "chrf": bleu,
                    "avg_chrf": sum(bleu.values()) / 3,
                    "delta_chrf": 20.0 + shift,
                    "reverse_gap_chrf": 15.0,
                },
            )
        )
    # written before reverse_gap_* existed: delta_bleu held the reverse gap |en-zh − zh-en|
    old = {"en-zh": 12.0, "en-es": 31.0, "zh-en": 16.0}
    cells.append(
        _translation_cell(
            "lora",
            0,
            {
                "bleu": old,
                "avg_bleu": 19.67,
                "delta_bleu": 4.0,
                "chrf": old,
                "avg_chrf": 19.67,
                "delta_chrf": 4.0,
            },
        )
    )
    markdown = tables.table_translation(
        group_cells(cells), {"methods": ["hybrid", "lora"]}, MainSetting(32, "C2", "flores")
    )
    rows = {r["Method"]: r for r in parse_markdown_table(markdown[markdown.index("BLEU") :])}
    assert list(rows["hybrid"]) == ["Method", "EN→ZH", "EN→ES", "ZH→EN", "Avg", "Δ", "Rev. Δ"]
    assert rows["hybrid"]["Δ"] == "21.0 ± 1.4"  # mean(20, 22) ± std(20, 22, ddof=1) = 1.41
    assert rows["hybrid"]["Rev. Δ"] == "15.0 ± 0.0"
    assert rows["lora"]["Δ"] == "19.0"  # recomputed: 31 − 12
    assert rows["lora"]["Rev. Δ"] == "4.0"  # the old delta_bleu
    assert "Δ = max − min over the EN→X directions" in markdown


def _mtbench_rows_kept(data_dir, keep):
    from hyft.tasks.mtbench import MTBENCH

    rows = MTBENCH.load("test", "en", _local(data_dir))
    return {"en": {row["id"] for row in rows if row["question_id"] not in keep}}


def test_mtbench_reference_bleu_end_to_end_equals_sacrebleu(llama, tokenizer, data_dir):
    from hyft.evaluation.evaluate_generation import evaluate_generation
    from hyft.tasks.mtbench import MTBENCH

    result = evaluate_generation(
        llama,
        tokenizer,
        MTBENCH,
        ["en"],
        max_new_tokens=6,
        data=_local(data_dir),
        exclude_ids=_mtbench_rows_kept(data_dir, {81, 101, 102}),
        progress=False,
    )
    samples = {s["id"].rsplit("/", 1)[1]: s for s in result["samples"]}
    assert set(samples) == {"81", "101", "102"}
    assert "reference" not in samples["81"] and len(samples["101"]["reference"]) == 2
    hypotheses = samples["101"]["prediction"] + samples["102"]["prediction"]
    references = samples["101"]["reference"] + samples["102"]["reference"]
    expected = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="13a").score
    assert result["reference_bleu"]["en"] == pytest.approx(expected, abs=1e-9)
    assert result["per_language"]["en"]["reference_bleu_questions"] == 2
    assert result["per_language"]["en"]["reference_bleu_segments"] == 4
    assert result["judge_score"] == {"en": None} and result["judge"] is None


def test_tiny_local_judge_runs_end_to_end(llama, tokenizer, data_dir, tiny_judge_dir):
    from hyft.evaluation.evaluate_generation import evaluate_generation
    from hyft.tasks.mtbench import MTBENCH

    result = evaluate_generation(
        llama,
        tokenizer,
        MTBENCH,
        ["en"],
        max_new_tokens=4,
        data=_local(data_dir),
        exclude_ids=_mtbench_rows_kept(data_dir, {81, 101}),
        progress=False,
        judge=str(tiny_judge_dir),
        judge_max_new_tokens=6,
    )
    assert len(result["samples"]) == 2
    scores = [score for sample in result["samples"] for score in sample["judge_scores"]]
    assert len(scores) == 4  # 2 questions × 2 turns
    assert all(score is None or 1 <= score <= 10 for score in scores)
    unparsed = sum(score is None for score in scores)
    entry = result["per_language"]["en"]
    assert entry["judge_unparsed"] == unparsed and entry["judge_ratings"] == 4 - unparsed
    assert result["judge"]["model"] == str(tiny_judge_dir)
    assert result["judge"]["unparsed"] == unparsed and result["judge"]["ratings"] == 4 - unparsed
    parsed = [score for score in scores if score is not None]
    assert result["judge_score"]["en"] == (sum(parsed) / len(parsed) if parsed else None)
    assert all(len(sample["judge_outputs"]) == 2 for sample in result["samples"])


def test_mtbench_k_shots_come_from_referenced_questions_and_are_not_evaluated(llama, tokenizer, data_dir):
    """The runner's path for a task without a shot split: shots + validation rows drawn from the
    trainable (referenced) questions, encoded as training examples, then excluded from evaluation."""
    from hyft.evaluation.evaluate_generation import evaluate_generation
    from hyft.experiments.cell_run import draw_training_set, encode, excluded_from_evaluation
    from hyft.tasks.mtbench import MTBENCH

    assert MTBENCH.shot_split is None
    rows = MTBENCH.load("test", "en", _local(data_dir))
    pool = {"en": [row for row in rows if MTBENCH.extra["trainable"](row)]}
    assert len(pool["en"]) == 30
    shots, validation = draw_training_set(pool, 4, 0, 2, MTBENCH)
    assert len(shots["en"]) == 4 and len(validation["en"]) == 2
    examples = encode(MTBENCH, shots, tokenizer, "decoder", 96)
    assert all(
        any(label != -100 for label in example["labels"]) for example in examples
    )  # targets supervised
    excluded = excluded_from_evaluation(shots, validation)
    # keep the evaluation small: besides the 6 trained/validation ids, drop all but two referenced questions
    trained = {row["question_id"] for row in shots["en"] + validation["en"]}
    kept = [q for q in range(101, 131) if q not in trained][:2]
    excluded["en"] |= _mtbench_rows_kept(data_dir, set(kept) | trained)["en"]
    result = evaluate_generation(
        llama,
        tokenizer,
        MTBENCH,
        ["en"],
        max_new_tokens=2,
        data=_local(data_dir),
        exclude_ids=excluded,
        progress=False,
    )
    evaluated = {sample["id"] for sample in result["samples"]}
    assert evaluated == {f"mtbench/test/en/{q}" for q in kept}
    assert not evaluated & {row["id"] for row in shots["en"] + validation["en"]}
    assert result["per_language"]["en"]["reference_bleu_questions"] == 2


def test_run_with_k_shot_mtbench(tmp_path, tokenizer, data_dir):
    from hyft.config import validate_config
    from hyft.experiments.config import RunConfig
    from hyft.experiments.runner import run

    model_dir = tmp_path / "tiny"
    make_llama(len(tokenizer), seed=5).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    config = validate_config(
        {
            "run": {"name": "mt", "output_dir": str(tmp_path / "runs"), "seeds": [0]},
            "data": {
                "task": "mtbench",
                "languages": ["en"],
                "k_shots": [2],
                "data_dir": str(data_dir),
                "max_eval_examples": 2,
                "val_examples": 2,
                "max_length": 96,
            },
            "models": [{"name": "tiny", "name_or_path": str(model_dir), "kind": "decoder"}],
            "methods": {"lora": {"r": 2, "alpha": 4}},
            "train": {"max_steps": 1, "batch_size": 2, "init_batches": 1},
            "eval": {"batch_size": 8, "orthographic": False, "max_new_tokens": 2},
        },
        RunConfig,
    )
    out = run(config, show_progress=False, write_report=False)
    cell = json.loads((out / "results.json").read_text())["cells"][0]
    assert cell["status"] == "done"
    shots = set(cell["shots"]["en"])
    assert all(int(i.rsplit("/", 1)[1]) in range(101, 131) for i in shots)
    evaluated = [json.loads(line)["id"] for line in (out / cell["samples_path"]).read_text().splitlines()]
    assert evaluated and not shots & set(evaluated)
