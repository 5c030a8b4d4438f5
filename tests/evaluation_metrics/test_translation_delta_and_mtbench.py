"""FLORES Δ (EN→X spread) beside the reverse-direction gap; MT-Bench BLEU against the GPT-4 references;
the judge's rating parser. Expected values are by hand or from sacrebleu called directly."""

from __future__ import annotations

import json

import pytest

from hyft.evaluation import metrics
from hyft.evaluation.evaluate_generation import _direction_gap_or_none, _en_x_spread_or_none
from hyft.evaluation.judge import JudgeResult, grading_prompt, judge_answers, parse_rating
from hyft.evaluation.scoring import generation_scorer

HAND = {"en-zh": 10.0, "en-es": 30.0, "zh-en": 25.0}


def test_flores_delta_is_the_en_x_spread_and_the_reverse_gap_is_separate():
    assert metrics.en_x_spread(HAND) == 20.0  # max(10, 30) − min(10, 30); zh-en does not enter
    assert _en_x_spread_or_none(HAND) == 20.0
    # reverse gap: only {en, zh} has both directions → |10 − 25|
    assert metrics.direction_gap(HAND) == 15.0
    assert _direction_gap_or_none(HAND) == 15.0
    # three EN→X directions: max − min, whatever lies between
    assert metrics.en_x_spread({"en-zh": 12.5, "en-de": 31.0, "en-hi": 20.0, "hi-en": 99.0}) == 18.5


def test_flores_delta_needs_two_en_x_directions_and_reverse_gap_a_complete_pair():
    en_zh_es = {"en-zh": 10.0, "en-es": 30.0}  # the paper's EN→X-only run: Δ defined, no reverse gap
    assert _en_x_spread_or_none(en_zh_es) == 20.0 and _direction_gap_or_none(en_zh_es) is None
    one_pair = {"en-de": 20.0, "de-en": 26.0}
    assert _en_x_spread_or_none(one_pair) is None and _direction_gap_or_none(one_pair) == 6.0
    with pytest.raises(ValueError, match="two or more"):
        metrics.en_x_spread({"en-zh": 10.0, "zh-en": 3.0})


def _mtbench_rows(data_dir, ids):
    from hyft.tasks.loading import DataSource
    from hyft.tasks.mtbench import MTBENCH

    rows = {
        row["question_id"]: row for row in MTBENCH.load("test", "en", DataSource.default(data_dir, "local"))
    }
    return [rows[i] for i in ids]


def _gpt4_references(data_dir):
    path = data_dir / "mtbench" / "reference_answer.gpt-4.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return {r["question_id"]: r["choices"][0]["turns"] for r in map(json.loads, lines)}


def test_mtbench_reference_bleu_equals_sacrebleu_on_the_same_strings(shared_data):
    import sacrebleu

    from hyft.tasks.mtbench import MTBENCH

    references = _gpt4_references(shared_data)
    assert len(references) == 30 and min(references) == 101 and max(references) == 130
    rows = _mtbench_rows(shared_data, [81, 101, 111])  # 81 (writing) has no GPT-4 reference
    answers = [
        ["A poem about Hawaii.", "Every sentence starts with A."],
        ["You are in second place; the person you overtook is third.", "You would be second to last."],
        ["The area of the triangle is 3.", "The area of the circle is 5 pi."],
    ]
    texts = ["\n\n".join(turns) for turns in answers]
    scores = generation_scorer(MTBENCH)(texts, rows, {"turn_answers": answers})
    # the same segments by hand: answer of turn t against GPT-4 reference turn t, referenced questions only
    hypotheses = answers[1] + answers[2]
    gold = references[101] + references[111]
    expected = sacrebleu.corpus_bleu(hypotheses, [gold], tokenize="13a").score
    assert expected > 0
    assert scores["reference_bleu"] == pytest.approx(expected, abs=1e-9)
    assert scores["reference_bleu_questions"] == 2 and scores["reference_bleu_segments"] == 4
    assert scores["judge_score"] is None
    # a question without a reference: no BLEU at all (not 0)
    alone = generation_scorer(MTBENCH)(texts[:1], rows[:1], {"turn_answers": answers[:1]})
    assert alone["reference_bleu"] is None and alone["reference_bleu_segments"] == 0


def test_mtbench_rows_with_a_reference_are_the_trainable_ones(shared_data):
    from hyft.tasks.mtbench import MTBENCH

    rows = _mtbench_rows(shared_data, [81, 101])
    trainable = MTBENCH.extra["trainable"]
    assert [trainable(row) for row in rows] == [False, True]
    assert rows[1]["turn"] == rows[1]["turns"][0]
    assert rows[1]["answer"] == MTBENCH.reference(rows[1]) == _gpt4_references(shared_data)[101][0]
    assert "answer" not in rows[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is correct and complete. Rating: [[7]]", 7.0),
        ("Rating: [[7.5]]", 7.5),
        ("[[ 10 ]]", 10.0),
        ('Format "[[rating]]" then Rating: [[6]] and later [[2]]', 6.0),  # first numeric rating
        ("Rating: 7", None),  # no [[x]]
        ("Rating: [7]", None),
        ("", None),
        ("Rating: [[11]]", None),  # outside 1–10
        ("Rating: [[0]]", None),
    ],
)
def test_judge_rating_parser(text, expected):
    assert parse_rating(text) == expected


def test_judge_answers_scores_per_turn_and_counts_unparsed(monkeypatch):
    from hyft.evaluation import judge
    from hyft.evaluation.generate import Generation

    outputs = ["Fine. Rating: [[7]]", "I cannot decide.", "Rating: [[7.5]]", "Rating: [[12]]"]
    seen = []

    def fake_generate(model, tokenizer, prompts, max_new_tokens, stop_strings, batch_size, progress):
        seen.extend(prompts)
        return [Generation(text, 3, "eos") for text in outputs[: len(prompts)]]

    monkeypatch.setattr(judge, "greedy_generate", fake_generate)

    class NoTemplate:
        chat_template = None
        bos_token = "<s>"

    rows = [
        {"turns": ["Q1", "Q1 follow-up"], "reference_turns": None},
        {"turns": ["Q2", "Q2 follow-up"], "reference_turns": ["R2", "R2b"]},
    ]
    result = judge_answers(None, NoTemplate(), rows, [["A1", "A1b"], ["A2", "A2b"]])
    assert isinstance(result, JudgeResult)
    assert result.scores == [[7.0, None], [7.5, None]]
    assert result.parsed == 2 and result.unparsed == 2
    assert result.mean == pytest.approx(7.25)
    assert result.outputs[0][1] == "I cannot decide."
    assert len(seen) == 4 and "Rating: [[5]]" in seen[0] and "[Question]\nQ1" in seen[0]
    assert "A1b" in seen[1] and "Q1 follow-up" in seen[1]  # second turn: the whole conversation
    assert "R2" in seen[2] and "Reference Answer" in seen[2] and "Reference Answer" not in seen[0]


def test_grading_prompt_structure():
    first = grading_prompt(["What is 2+2?"], ["4"], 0)
    assert (
        first.index("[Instruction]")
        < first.index("[Question]\nWhat is 2+2?")
        < first.index("[The Start of Assistant's Answer]\n4\n[The End of Assistant's Answer]")
    )
    assert '"[[rating]]"' in first and "1 to 10" in first
