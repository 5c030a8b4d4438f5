"""MT-Bench (Zheng et al., 2023): 80 two-turn questions; hyft writes the answers and scores them.

Two scores, both in the results:

- ``reference_bleu`` (always, the paper's proxy): corpus BLEU (sacrebleu, 13a, via
  :func:`hyft.evaluation.metrics.bleu`) of the model's answers against the GPT-4 reference answers of
  ``reference_answer.gpt-4.jsonl`` (questions 101–130: math, reasoning, coding). Only questions with a
  reference count; each (question, turn) is one segment, answer of turn t against reference turn t.
  None when no evaluated question has a reference.
- ``judge_score`` (1–10): only with a local judge model (``eval.judge``), graded by
  :mod:`hyft.evaluation.judge`; otherwise None. hyft calls no remote judge (GPT-4 in the original).

k-shot training (k > 0 in ``hyft run``): MT-Bench has no shot split, so shots come from its questions
and are then left out of evaluation. Only a question with a GPT-4 reference can be a shot (target =
the first reference turn, prompt = the first user turn); ``task.extra["trainable"]`` says which rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource, format_error, load_records, read_jsonl
from hyft.tasks.registry import register_task

_EXPECTED = (
    "JSONL at <data_dir>/mtbench/question.jsonl, one object per line with 'question_id' (int), "
    "'category' (string) and 'turns' (list of strings)"
)
_REFERENCE_EXPECTED = (
    "JSONL at <data_dir>/mtbench/reference_answer.gpt-4.jsonl with 'question_id' (int) and "
    "'choices' (list of objects with 'turns', a list of strings)"
)


def _references(data: DataSource) -> dict[int, list[str]]:
    path = data.root / "mtbench" / "reference_answer.gpt-4.jsonl"
    if not path.is_file():
        return {}
    references = {}
    for line, record in read_jsonl(path, {"question_id": int, "choices": list}, _REFERENCE_EXPECTED):
        choices = record["choices"]
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("turns"), list):
            raise format_error(path, line, "'choices' has no first choice with 'turns'", _REFERENCE_EXPECTED)
        references[record["question_id"]] = [str(turn) for turn in choices[0]["turns"]]
    return references


def load_mtbench(split: str, lang: str, data: DataSource) -> list[Example]:
    where, records = load_records(
        data,
        "mtbench/question.jsonl",
        {"question_id": int, "category": str, "turns": list},
        _EXPECTED,
        hub=("HuggingFaceH4/mt_bench_prompts", None, "train"),
        from_hub_row=lambda row: {
            "question_id": int(row["prompt_id"]),
            "category": row["category"],
            "turns": list(row["prompt"]),
        },
    )
    references = {} if isinstance(where, str) else _references(data)
    examples = []
    for line, record in records:
        if not record["turns"] or not all(isinstance(turn, str) for turn in record["turns"]):
            raise format_error(where, line, "'turns' must be a non-empty list of strings", _EXPECTED)
        reference_turns = references.get(record["question_id"])
        example = {
            "id": f"mtbench/{split}/{lang}/{record['question_id']}",
            "lang": lang,
            "question_id": record["question_id"],
            "category": record["category"],
            "turns": list(record["turns"]),
            "reference_turns": reference_turns,
            "turn": record["turns"][0],  # the prompt of a k-shot training example (first turn)
        }
        if reference_turns:
            example["answer"] = example["target"] = reference_turns[0]  # its training target
        examples.append(example)
    return examples


def has_reference(example: Example) -> bool:
    """Whether the question has a GPT-4 reference answer (scored by BLEU; usable as a k-shot example)."""
    return bool(example.get("reference_turns"))


def reference_bleu_segments(
    turn_answers: Sequence[Sequence[str]], examples: Sequence[Example]
) -> tuple[list[str], list[str]]:
    """(hypotheses, references): answer of turn t against GPT-4 reference turn t, for every question
    that has a reference, in question order, turns in order."""
    hypotheses, references = [], []
    for answers, example in zip(turn_answers, examples, strict=True):
        for answer, reference in zip(answers, example.get("reference_turns") or (), strict=False):
            hypotheses.append(answer)
            references.append(reference)
    return hypotheses, references


MTBENCH = register_task(
    Task(
        name="mtbench",
        family="mtbench",
        kind="generation",
        metric="judge_score",
        description="MT-Bench two-turn questions (BLEU against GPT-4 "
        "references; judge score with eval.judge)",
        languages=("en",),
        loader=load_mtbench,
        eval_split="test",
        shot_split=None,
        max_new_tokens=512,
        supports_fewshot=False,
        hub_dataset="HuggingFaceH4/mt_bench_prompts",
        extra={"multi_turn": True, "trainable": has_reference, "also_reported": ("reference_bleu",)},
    )
)
