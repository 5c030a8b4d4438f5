"""GSM8K test (Cobbe et al., 2021): grade-school maths, scored by exact match of the final number.

Only the test split exists here, so k-shot demonstrations (question + full worked answer) are drawn
from test and removed from the evaluated questions.
"""

from __future__ import annotations

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource, format_error, load_records
from hyft.tasks.registry import register_task

_EXPECTED = (
    "JSONL at <data_dir>/gsm8k/test.jsonl, one object per line with string fields 'question' and "
    "'answer', the answer ending in '#### <number>'"
)


def final_answer(answer: str) -> str:
    """The number after ``####`` in a GSM8K answer, without thousands separators."""
    return answer.rsplit("####", 1)[-1].strip().replace(",", "")


def load_gsm8k(split: str, lang: str, data: DataSource) -> list[Example]:
    where, records = load_records(
        data,
        "gsm8k/test.jsonl",
        {"question": str, "answer": str},
        _EXPECTED,
        hub=("openai/gsm8k", "main", "test"),
    )
    examples = []
    for line, record in records:
        if "####" not in record["answer"]:
            raise format_error(where, line, "answer has no '#### <number>' final line", _EXPECTED)
        examples.append(
            {
                "id": f"gsm8k/{split}/{lang}/{line}",
                "lang": lang,
                "question": record["question"],
                "answer": record["answer"],
                "final_answer": final_answer(record["answer"]),
            }
        )
    return examples


GSM8K = register_task(
    Task(
        name="gsm8k",
        family="gsm8k",
        kind="generation",
        metric="exact_match",
        description="GSM8K test maths word problems (greedy chain of thought, exact match of the answer)",
        languages=("en",),
        loader=load_gsm8k,
        eval_split="test",
        shot_split=None,
        max_new_tokens=256,
        hub_dataset="openai/gsm8k",
        extra={"reference_field": "answer"},
    )
)
