"""XNLI (Conneau et al., 2018): 3-way NLI in 15 languages; shots from dev, evaluation on test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource, format_error, load_records
from hyft.tasks.registry import register_task

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
# Order of the Hub's integer labels and of encoder heads (also MNLI's order in GLUE).
NLI_LABELS = ("entailment", "neutral", "contradiction")
_HUB_SPLITS = {"dev": "validation", "test": "test"}


def nli_format(relative_path: str) -> str:
    return (
        f"JSONL at <data_dir>/{relative_path}, one object per line with string fields 'premise', "
        f"'hypothesis' and 'label' in {{{', '.join(NLI_LABELS)}}}"
    )


def nli_examples(
    records: list[tuple[int, dict[str, Any]]], where: Any, expected: str, id_prefix: str, lang: str
) -> list[Example]:
    """Check labels and build examples ``{id, lang, premise, hypothesis, label}``."""
    examples = []
    for line, record in records:
        if record["label"] not in NLI_LABELS:
            raise format_error(where, line, f"label {record['label']!r} is not an NLI label", expected)
        examples.append(
            {
                "id": f"{id_prefix}/{line}",
                "lang": lang,
                "premise": record["premise"],
                "hypothesis": record["hypothesis"],
                "label": record["label"],
            }
        )
    return examples


def _hub_row(row: dict[str, Any]) -> dict[str, Any]:
    label = row["label"]
    return {**row, "label": NLI_LABELS[label] if isinstance(label, int) and 0 <= label < 3 else label}


def load_nli_file(
    data: DataSource,
    relative: str,
    id_prefix: str,
    lang: str,
    hub: tuple[str, str | None, str] | None = None,
    from_hub_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[Example]:
    """An NLI JSONL file (premise, hypothesis, label) as checked examples with ids ``<id_prefix>/<n>``;
    XNLI and the shipped demo set share it."""
    expected = nli_format(relative)
    where, records = load_records(
        data,
        relative,
        {"premise": str, "hypothesis": str, "label": str},
        expected,
        hub=hub,
        from_hub_row=from_hub_row,
    )
    return nli_examples(records, where, expected, id_prefix, lang)


def load_xnli(split: str, lang: str, data: DataSource) -> list[Example]:
    return load_nli_file(
        data,
        f"xnli/{split}.{lang}.jsonl",
        f"xnli/{split}/{lang}",
        lang,
        hub=("facebook/xnli", lang, _HUB_SPLITS[split]),
        from_hub_row=_hub_row,
    )


XNLI = register_task(
    Task(
        name="xnli",
        family="xnli",
        kind="classification",
        metric="accuracy",
        description="XNLI natural language inference, 15 languages (shots: dev, evaluation: test)",
        languages=XNLI_LANGUAGES,
        loader=load_xnli,
        eval_split="test",
        shot_split="dev",
        labels=NLI_LABELS,
        text_fields=("premise", "hypothesis"),
        hub_dataset="facebook/xnli",
    )
)
