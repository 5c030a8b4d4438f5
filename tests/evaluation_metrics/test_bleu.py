"""BLEU/chrF through our wrapper equal the sacrebleu command line on the same FLORES lines."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from hyft.metrics import bleu, bleu_signature, bleu_tokenizer, chrf

N_LINES = 150


def _perturb(references: list[str], unit: str, seed: int) -> list[str]:
    """Deterministic damage: drop a unit, swap two neighbours, every 5th line another sentence."""
    rng = random.Random(seed)
    hypotheses = []
    for index, reference in enumerate(references):
        if index % 5 == 4:
            hypotheses.append(references[(index + 7) % len(references)])
            continue
        units = list(reference) if unit == "char" else reference.split(" ")
        if len(units) > 3:
            del units[rng.randrange(len(units))]
            j = rng.randrange(len(units) - 1)
            units[j], units[j + 1] = units[j + 1], units[j]
        hypotheses.append(("" if unit == "char" else " ").join(units))
    return hypotheses


def _sacrebleu_cli(reference: Path, hypothesis: Path, *options: str) -> float:
    executable = Path(sys.executable).parent / "sacrebleu"
    command = [str(executable), str(reference), "-i", str(hypothesis), "-b", "-w", "6", *options]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip())


@pytest.mark.parametrize(("lang", "unit", "tokenizer"), [("zh", "char", "zh"), ("es", "word", "13a")])
def test_bleu_and_chrf_equal_the_sacrebleu_cli(shared_data, tmp_path, lang, unit, tokenizer) -> None:
    lines = (shared_data / "flores" / f"devtest.{lang}.txt").read_text(encoding="utf-8").splitlines()
    references = lines[:N_LINES]
    hypotheses = _perturb(references, unit, seed=3)
    reference_file, hypothesis_file = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    reference_file.write_text("\n".join(references) + "\n", encoding="utf-8")
    hypothesis_file.write_text("\n".join(hypotheses) + "\n", encoding="utf-8")

    assert bleu_tokenizer(lang) == tokenizer
    ours = bleu(hypotheses, references, target_lang=lang)
    assert round(ours, 6) == _sacrebleu_cli(reference_file, hypothesis_file, "-m", "bleu", "-tok", tokenizer)
    assert 20.0 < ours < 95.0  # damaged but related: neither trivial value
    assert round(chrf(hypotheses, references), 6) == _sacrebleu_cli(
        reference_file, hypothesis_file, "-m", "chrf"
    )
    assert f"tok:{tokenizer}" in bleu_signature(lang)


def test_tokenizer_choice() -> None:
    assert [bleu_tokenizer(x) for x in ["zh", "zh_Hant", "ja", "th", "ko", "hi", "en"]] == [
        "zh", "zh", "char", "char", "13a", "13a", "13a",
    ]  # fmt: skip
    # the Chinese tokenizer matters: 13a leaves an unspaced Chinese sentence as one token
    references = ["我们今天去公园散步。", "他喜欢读书和写字。"]
    hypotheses = ["我们今天去公园走路。", "他喜欢读书写字。"]
    assert bleu(hypotheses, references, "zh") > bleu(hypotheses, references, "zh", tokenize="13a")
