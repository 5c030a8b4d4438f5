"""HumanEval (Chen et al., 2021): Python function completion, pass@1 from greedy decoding.

The ``test`` field is code: it is only ever run through part A's sandbox
(:func:`hyft.evaluation.sandbox.run_humaneval_problem`). Zero-shot only.
"""

from __future__ import annotations

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource, load_records
from hyft.tasks.registry import register_task

HUMANEVAL_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
_EXPECTED = (
    "JSONL at <data_dir>/humaneval/HumanEval.jsonl, one object per line with string fields "
    + ", ".join(f"'{field}'" for field in HUMANEVAL_FIELDS)
)


def load_humaneval(split: str, lang: str, data: DataSource) -> list[Example]:
    _, records = load_records(
        data,
        "humaneval/HumanEval.jsonl",
        dict.fromkeys(HUMANEVAL_FIELDS, str),
        _EXPECTED,
        hub=("openai/openai_humaneval", None, "test"),
    )
    return [
        {
            "id": f"humaneval/{split}/{lang}/{line}",
            "lang": lang,
            **{field: record[field] for field in HUMANEVAL_FIELDS},
        }
        for line, record in records
    ]


HUMANEVAL = register_task(
    Task(
        name="humaneval",
        family="humaneval",
        kind="generation",
        metric="pass@1",
        description="HumanEval Python completion, pass@1 with greedy decoding, tests run in the sandbox",
        languages=("en",),
        loader=load_humaneval,
        eval_split="test",
        shot_split=None,
        max_new_tokens=384,
        supports_fewshot=False,
        hub_dataset="openai/openai_humaneval",
        extra={"reference_field": "canonical_solution"},
    )
)
