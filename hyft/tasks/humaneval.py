"""HumanEval (Chen et al., 2021): Python function completion, pass@1 from greedy decoding.

The ``test`` field is code: it is only ever run through part A's sandbox
(:func:`hyft.evaluation.sandbox.run_humaneval_problem`). Zero-shot only.
"""

from __future__ import annotations

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource, load_records
from hyft.tasks.registry import register_task

_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
_EXPECTED = (
    "JSONL at <data_dir>/humaneval/HumanEval.jsonl, one object per line with string fields "
    + ", ".join(f"'{field}'" for field in _FIELDS)
)


def load_humaneval(split: str, lang: str, data: DataSource) -> list[Example]:
    _, records = load_records(
        data,
        "humaneval/HumanEval.jsonl",
        dict.fromkeys(_FIELDS, str),
        _EXPECTED,
        hub=("openai/openai_humaneval", None, "test"),
    )
    return [
        {
            "id": f"humaneval/{split}/{lang}/{line}",
            "lang": lang,
            **{field: record[field] for field in _FIELDS},
        }
        for line, record in records
    ]


def _score(completions, examples, options) -> dict:
    from hyft.evaluation import metrics
    from hyft.evaluation.sandbox import run_humaneval_problems

    timeout_s = float(options.get("sandbox_timeout_s", 10.0))
    problems = [{field: example[field] for field in _FIELDS} for example in examples]
    outcomes = run_humaneval_problems(problems, list(completions), timeout_s)
    passed = [outcome.status == "passed" for outcome in outcomes]
    # One greedy sample per problem: pass@1 per problem is 0 or 1; pass_at_k keeps one estimator.
    per_problem = [metrics.pass_at_k(1, int(ok), 1) for ok in passed]
    return {
        "pass@1": sum(per_problem) / len(per_problem),
        "per_example": [
            {"passed": ok, "status": o.status, "reason": o.reason}
            for ok, o in zip(passed, outcomes, strict=True)
        ],
    }


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
        score_generations=_score,
        hub_dataset="openai/openai_humaneval",
        extra={"reference_field": "canonical_solution"},
    )
)
