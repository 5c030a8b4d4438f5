"""Decontamination: pool records that copy an evaluation row are dropped as eval_contamination."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import xnli_rows

from hyft.config.loading import load_config
from hyft.experiments import runner
from hyft.experiments.config import RunConfig
from hyft.governance import CurationConfig, curate
from hyft.governance.decontam import EvalIndex
from tests.conftest import require_shared_data

EVAL_EN = (
    "The old lighthouse keeper walked along the rocky shore every morning before the fishing "
    "boats left the harbour"
)
EVAL_ZH = (
    "在这个安静的小城里，每天清晨都有一位老人沿着河边慢慢散步，他会向每一个路过的孩子微笑问好，"
    "然后坐在那棵老槐树下读报纸，直到太阳升得很高才回家吃早饭。"
)
SHORT_EN = "Heavy rain is expected across the northern hills tonight."
CLEAN = [
    "My grandmother cooks the best lentil soup in the whole village.",
    "The new phone has a faster chip and a much brighter screen.",
    "Our team scored twice in the last ten minutes of the match.",
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(**extra) -> CurationConfig:
    return CurationConfig(text_fields=["text"], id_field="id", progress=False, **extra)


def test_planted_copies_are_dropped_with_the_matched_id(tmp_path):
    eval_en = _write(tmp_path / "test.en.jsonl", [{"id": "en-1", "text": EVAL_EN}, {"text": SHORT_EN}])
    eval_zh = _write(tmp_path / "test.zh.jsonl", [{"id": "zh-1", "text": EVAL_ZH}])
    words = EVAL_EN.split()
    pool = [
        {"id": "exact", "lang": "en", "text": SHORT_EN.upper()},  # exact after normalisation
        {
            "id": "span13",
            "lang": "en",
            "text": "Yesterday I read that " + " ".join(words[2:15]) + " which surprised nobody at all.",
        },
        {
            "id": "span12",
            "lang": "en",
            "text": "Yesterday I read that " + " ".join(words[2:14]) + " which surprised nobody at all.",
        },
        {"id": "cjk", "lang": "zh", "text": "据报道，" + EVAL_ZH[5:58] + "大家都觉得很温暖。"},
        {"id": "cjk49", "lang": "zh", "text": "据报道，" + EVAL_ZH[5:57] + "大家都觉得很温暖。"},
        *({"id": f"clean{i}", "lang": "en", "text": text} for i, text in enumerate(CLEAN)),
    ]
    config = _config(decontaminate=f"{eval_en},{eval_zh}")
    result = curate(_write(tmp_path / "pool.jsonl", pool), config, tmp_path / "out")
    rows = {
        json.loads(line)["id"]: json.loads(line)
        for line in (tmp_path / "out" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    }
    assert rows["exact"]["reason"] == "eval_contamination"
    assert rows["exact"]["evidence"]["contamination"] == {"eval_id": f"{eval_en}:2", "match": "exact"}
    assert rows["span13"]["reason"] == "eval_contamination"
    assert rows["span13"]["evidence"]["contamination"]["eval_id"] == "en-1"
    assert rows["span13"]["evidence"]["contamination"]["match"] == "13-word-gram"
    assert rows["cjk"]["reason"] == "eval_contamination"
    assert rows["cjk"]["evidence"]["contamination"]["eval_id"] == "zh-1"
    assert rows["cjk"]["evidence"]["contamination"]["match"] == "50-char-gram"
    assert rows["span12"]["reason"] != "eval_contamination"
    assert rows["cjk49"]["reason"] != "eval_contamination"
    for i in range(len(CLEAN)):
        assert rows[f"clean{i}"]["kept"], rows[f"clean{i}"]
    assert all(
        r["stage"] == "decontaminate" and r["view"] == "c0"
        for r in rows.values()
        if r["reason"] == "eval_contamination"
    )
    assert result.report["languages"]["en"]["eval_contamination"] == 2
    assert result.report["languages"]["zh"]["eval_contamination"] == 1
    assert result.report["total"]["eval_contamination"] == 3
    assert "eval_contamination" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")


def test_index_short_eval_rows_only_match_exactly():
    index = EvalIndex([("a", ["one two three"])])
    assert index.match(["One  two\u3000THREE"]) == {"eval_id": "a", "match": "exact"}
    assert index.match(["one two three four"]) is None


def test_cli_flag_reaches_the_config(tmp_path):
    from hyft.cli.curate import build_job

    job = build_job(
        None,
        {
            "input": "p.jsonl",
            "output_dir": "out",
            "text_fields": ["text"],
            "decontaminate": ["a.jsonl", "b.jsonl"],
        },
        [],
    )
    assert [str(p) for p in job.curation.decontaminate.files] == ["a.jsonl", "b.jsonl"]


def test_run_decontaminates_against_its_own_eval_rows(tmp_path, monkeypatch):
    config = load_config(Path(__file__).parents[2] / "configs" / "demo.yaml", RunConfig)
    assert config.curation.decontaminate_against_eval
    views, report = runner.curate_stage(config, tmp_path / "run")
    assert report["run"]["decontamination"]["eval_rows_given"] > 0
    assert {lang: s["eval_contamination"] for lang, s in report["languages"].items()} == {
        lang: 0 for lang in report["languages"]
    }
    # A test row planted in the pool is caught, with its id.
    from hyft.data import demo_path

    test_row = json.loads(demo_path("topic.test.es.jsonl").read_text(encoding="utf-8").splitlines()[3])
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        demo_path("pool.jsonl").read_text(encoding="utf-8")
        + json.dumps({**test_row, "id": "planted"}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    planted = config.model_copy(update={"curation": config.curation.model_copy(update={"pool": str(pool)})})
    _, report = runner.curate_stage(planted, tmp_path / "run2")
    assert report["languages"]["es"]["eval_contamination"] == 1
    ledger = (tmp_path / "run2" / "curation" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    row = next(json.loads(line) for line in ledger if json.loads(line)["id"] == "planted")
    assert row["reason"] == "eval_contamination"
    assert row["evidence"]["contamination"]["eval_id"] == "demo-topic/test/es/4"  # the task's row id


def _cli_app():
    import typer

    from hyft.cli import curate as curate_cli

    application = typer.Typer()
    curate_cli.register(application)

    @application.command("noop")  # a second command keeps typer in multi-command mode, as in hyft
    def _noop() -> None: ...

    return application


def test_decontaminate_by_task_name_drops_planted_test_rows(tmp_path):
    """`hyft curate --decontaminate xnli:test`: the CLI loads the task's test split (governance cannot
    import hyft.tasks) and planted test rows are dropped with the matched XNLI id."""
    from typer.testing import CliRunner

    data = require_shared_data()
    test_en, test_hi = xnli_rows("en", "test"), xnli_rows("hi", "test")
    long_premise = next(k for k, r in enumerate(test_en) if len(r["premise"].split()) >= 20)
    pool = [dict(r, id=f"dev-{k}", lang="en") for k, r in enumerate(xnli_rows("en")[:40])]
    pool += [
        dict(test_en[10], id="planted-en", lang="en"),
        dict(test_hi[20], id="planted-hi", lang="hi"),
        {
            "id": "planted-span",
            "lang": "en",
            "label": "neutral",
            "premise": test_en[long_premise]["premise"],
            "hypothesis": "Nobody in the room had ever heard of it before.",
        },
    ]
    path = _write(tmp_path / "pool.jsonl", pool)
    result = CliRunner().invoke(
        _cli_app(),
        [
            "curate",
            "--input",
            str(path),
            "--text-fields",
            "premise,hypothesis",
            "--label-field",
            "label",
            "--id-field",
            "id",
            "--languages",
            "en,hi",
            "--decontaminate",
            "xnli:test",
            "--data-dir",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {
        r["id"]: r
        for r in map(json.loads, (tmp_path / "out" / "ledger.jsonl").read_text(encoding="utf-8").splitlines())
    }
    assert rows["planted-en"]["reason"] == "eval_contamination"
    assert rows["planted-en"]["evidence"]["contamination"] == {"eval_id": "xnli/test/en/11", "match": "exact"}
    assert rows["planted-hi"]["evidence"]["contamination"] == {"eval_id": "xnli/test/hi/21", "match": "exact"}
    assert rows["planted-span"]["reason"] == "eval_contamination"
    assert rows["planted-span"]["evidence"]["contamination"]["match"] == "13-word-gram"
    assert rows["planted-span"]["evidence"]["contamination"]["eval_id"].startswith("xnli/test/en/")
    assert sum(r["reason"] == "eval_contamination" for r in rows.values()) == 3  # XNLI dev rows are clean
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["run"]["decontamination"]["tasks"] == ["xnli:test"]
    assert report["run"]["decontamination"]["eval_rows_given"] == 2 * len(test_en)


def test_task_names_in_configs(tmp_path):
    from hyft.cli.curate import build_job
    from hyft.config import ConfigError

    eval_file = _write(tmp_path / "eval.jsonl", [{"text": SHORT_EN}])
    config = tmp_path / "curate.yaml"
    config.write_text(
        f"input: p.jsonl\noutput_dir: out\ncuration:\n  text_fields: [text]\n"
        f"  decontaminate: xnli:test,{eval_file}\n",
        encoding="utf-8",
    )
    job = build_job(config, {}, [])
    assert job.curation.decontaminate.tasks == ["xnli:test"]
    assert [str(p) for p in job.curation.decontaminate.files] == [str(eval_file)]
    flagged = build_job(
        None,
        {
            "input": "p.jsonl",
            "output_dir": "out",
            "text_fields": ["text"],
            "decontaminate": ["flores:devtest"],
        },
        [],
    )
    assert (
        flagged.curation.decontaminate.tasks == ["flores:devtest"]
        and flagged.curation.decontaminate.files == []
    )
    # The governance layer refuses names nobody resolved into rows (it cannot load tasks itself).
    with pytest.raises(ConfigError, match="xnli:test"):
        curate(
            [{"text": SHORT_EN, "lang": "en"}],
            job.curation.model_copy(update={"progress": False}),
            tmp_path / "o",
        )
    with pytest.raises(ValueError, match="task:split"):
        CurationConfig(text_fields=["text"], decontaminate={"tasks": ["xnli"]})
