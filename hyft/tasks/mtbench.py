"""MT-Bench (Zheng et al., 2023): 80 two-turn questions; hyft writes the answers.

Scoring needs an LLM judge (GPT-4 in the paper), which hyft does not call (no network calls the user
did not ask for), so the results hold the answers and ``judge_score: None``. GPT-4 reference answers
(math, reasoning, coding) are attached when ``reference_answer.gpt-4.jsonl`` is present.
"""

from __future__ import annotations

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
        examples.append(
            {
                "id": f"mtbench/{split}/{lang}/{record['question_id']}",
                "lang": lang,
                "question_id": record["question_id"],
                "category": record["category"],
                "turns": list(record["turns"]),
                "reference_turns": references.get(record["question_id"]),
            }
        )
    return examples


def _score(answers, examples, options) -> dict:
    return {
        "judge_score": None,
        "answered": sum(1 for answer in answers if answer.strip()),
        "note": "MT-Bench needs an LLM judge; hyft writes the answers (samples) and does not call one",
    }


MTBENCH = register_task(
    Task(
        name="mtbench",
        family="mtbench",
        kind="generation",
        metric="judge_score",
        description="MT-Bench two-turn questions (answers written; judging needs an external LLM judge)",
        languages=("en",),
        loader=load_mtbench,
        eval_split="test",
        shot_split=None,
        max_new_tokens=512,
        supports_fewshot=False,
        score_generations=_score,
        hub_dataset="HuggingFaceH4/mt_bench_prompts",
        extra={"multi_turn": True},
    )
)
