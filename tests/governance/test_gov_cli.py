"""`hyft curate` from the command line: flags only, a config file, overrides, and clean user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, xnli_rows
from typer.testing import CliRunner

from hyft.config import ConfigError
from hyft.governance import CurationConfig


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "pool.jsonl"
    rows = [dict(r, lang=lang) for lang in ("en", "sw") for r in xnli_rows(lang)[900:960]]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{bad\n", encoding="utf-8")
    return path


def test_flags_only(app, pool, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "curate",
            "--input",
            str(pool),
            "--text-fields",
            "premise,hypothesis",
            "--label-field",
            "label",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "curated 121 records" in result.output
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(ledger) == 121 and ledger[-1]["reason"] == "invalid_json"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["languages"]) == {"en", "sw", "und"}
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# Curation report")


def test_config_file_with_overrides(app, pool, tmp_path):
    config = tmp_path / "curate.yaml"
    config.write_text(
        f"input: {pool}\noutput_dir: {tmp_path / 'a'}\ncuration:\n  text_fields: [premise, hypothesis]\n"
        "  languages: ['en']\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app,
        [
            "curate",
            str(config),
            "--out",
            str(tmp_path / "b"),
            "--quiet",
            "--set",
            "curation.quality.ppl=false",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b" / "report.json").read_text(encoding="utf-8"))
    assert report["languages"]["sw"]["dropped"] == {"language_not_selected": 60}
    assert "ppl_too_high" not in report["languages"]["en"]["dropped"]
    assert not (tmp_path / "a").exists()


def test_user_errors_exit_2_with_a_message(app, pool, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["curate", "--input", str(pool), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "--text-fields" in missing.output
    config = tmp_path / "typo.yaml"
    config.write_text(
        f"input: {pool}\noutput_dir: {tmp_path}\ncuration:\n  text_fields: [premise]\n"
        "  dedup:\n    hamm: 3\n",
        encoding="utf-8",
    )
    typo = runner.invoke(app, ["curate", str(config)])
    assert typo.exit_code == 2 and "typo.yaml:6" in typo.output and "did you mean 'hamming'" in typo.output
    absent = runner.invoke(
        app, ["curate", "--input", str(tmp_path / "none.jsonl"), "--text-fields", "a", "--out", str(tmp_path)]
    )
    assert absent.exit_code == 2 and "input pool not found" in absent.output


def test_shipped_example_config_validates():
    from hyft.config import load_config
    from hyft.governance import CurateJob

    job = load_config(REPO / "configs" / "curate-example.yaml", CurateJob)
    assert job.curation.text_fields == ["premise", "hypothesis"] and job.curation.default_language == "en"


def test_config_validation():
    with pytest.raises(ValueError, match="boolean"):
        CurationConfig(text_fields=["a"], languages=[False])
    with pytest.raises(ValueError, match="unknown language code"):
        CurationConfig(text_fields=["a"], languages=["xx"])
    with pytest.raises(ValueError, match="must not also be a text field"):
        CurationConfig(text_fields=["a", "lang"])
    assert CurationConfig(text_fields=["a"], languages=["zho_Hans", "en"]).languages == ["en", "zh"]
    base = CurationConfig(text_fields=["a"])
    assert (
        base.decision_hash()
        == CurationConfig(text_fields=["a"], workers=4, executor="datatrove_local").decision_hash()
    )
    assert base.decision_hash() != CurationConfig(text_fields=["a"], dedup={"hamming": 3}).decision_hash()


def test_base_lm_without_a_scorer_is_a_config_error(tmp_path):
    from hyft.governance import curate

    config = CurationConfig(text_fields=["premise"], quality={"ppl_scorer": "base_lm"}, progress=False)
    with pytest.raises(ConfigError, match="ppl_scorer"):
        curate([{"premise": "x", "lang": "en"}], config, tmp_path)
