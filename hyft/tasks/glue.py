"""GLUE dev sets (English): MNLI-matched, SST-2, QNLI, and QQP when a local file is given.

The group name ``glue`` expands to mnli, sst2, qnli, plus qqp when ``<data_dir>/glue/qqp.dev.jsonl``
exists (shared/data has no QQP copy). Only dev exists here, so shots come from dev and are removed
from the evaluated rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource, format_error, load_records
from hyft.tasks.registry import register_group, register_task
from hyft.tasks.xnli import NLI_LABELS, nli_examples, nli_format


@dataclass(frozen=True)
class _GlueLayout:
    file: str
    hub_config: str
    hub_split: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...]
    label_type: type  # how the local file stores labels: int class ids or str names


_LAYOUTS = {
    "sst2": _GlueLayout("sst2.dev.jsonl", "sst2", "validation", ("sentence",), ("negative", "positive"), int),
    "qnli": _GlueLayout(
        "qnli.dev.jsonl",
        "qnli",
        "validation",
        ("question", "sentence"),
        ("entailment", "not_entailment"),
        str,
    ),
    "qqp": _GlueLayout(
        "qqp.dev.jsonl", "qqp", "validation", ("question1", "question2"), ("not_duplicate", "duplicate"), int
    ),
}


def _expected(name: str, layout: _GlueLayout) -> str:
    labels = "0/1 (" + ", ".join(f"{i} = {n}" for i, n in enumerate(layout.labels)) + ")"
    if layout.label_type is str:
        labels = "one of {" + ", ".join(layout.labels) + "}"
    fields = ", ".join(f"'{f}'" for f in layout.text_fields)
    return (
        f"JSONL at <data_dir>/glue/{layout.file}, one object per line with string fields {fields} "
        f"and 'label' {labels}"
    )


def _loader(name: str):
    layout = _LAYOUTS[name]

    def load(split: str, lang: str, data: DataSource) -> list[Example]:
        expected = _expected(name, layout)
        fields: dict[str, Any] = {field: str for field in layout.text_fields}
        fields["label"] = layout.label_type
        where, records = load_records(
            data,
            f"glue/{layout.file}",
            fields,
            expected,
            hub=("nyu-mll/glue", layout.hub_config, layout.hub_split),
        )
        examples = []
        for line, record in records:
            label = record["label"]
            if isinstance(label, int) and 0 <= label < len(layout.labels):
                label = layout.labels[label]  # Hub rows and SST-2/QQP files store class ids
            if label not in layout.labels:
                raise format_error(where, line, f"label {record['label']!r} is not valid", expected)
            example = {"id": f"{name}/{split}/{lang}/{line}", "lang": lang, "label": label}
            example.update({field: record[field] for field in layout.text_fields})
            examples.append(example)
        return examples

    return load


def _load_mnli(split: str, lang: str, data: DataSource) -> list[Example]:
    relative = "glue/mnli.dev_matched.jsonl"
    expected = nli_format(relative)
    where, records = load_records(
        data,
        relative,
        {"premise": str, "hypothesis": str, "label": (str, int)},
        expected,
        hub=("nyu-mll/glue", "mnli", "validation_matched"),
        from_hub_row=lambda row: {**row, "label": NLI_LABELS[row["label"]]},
    )
    return nli_examples(records, where, expected, f"mnli/{split}/{lang}", lang)


def _task(name: str, description: str, loader, labels, text_fields) -> Task:
    return register_task(
        Task(
            name=name,
            family="glue",
            kind="classification",
            metric="accuracy",
            description=description,
            languages=("en",),
            loader=loader,
            eval_split="dev",
            shot_split=None,
            labels=labels,
            text_fields=text_fields,
            hub_dataset="nyu-mll/glue",
        )
    )


MNLI = _task("mnli", "GLUE MNLI matched dev (3-way NLI)", _load_mnli, NLI_LABELS, ("premise", "hypothesis"))
SST2 = _task("sst2", "GLUE SST-2 dev (sentiment)", _loader("sst2"), _LAYOUTS["sst2"].labels, ("sentence",))
QNLI = _task(
    "qnli",
    "GLUE QNLI dev (question/sentence entailment)",
    _loader("qnli"),
    _LAYOUTS["qnli"].labels,
    ("question", "sentence"),
)
QQP = _task(
    "qqp",
    "GLUE QQP dev (paraphrase; needs a local glue/qqp.dev.jsonl or the Hub)",
    _loader("qqp"),
    _LAYOUTS["qqp"].labels,
    ("question1", "question2"),
)


def _glue_members(data: DataSource) -> list[str]:
    members = ["mnli", "sst2", "qnli"]
    if (data.root / "glue" / _LAYOUTS["qqp"].file).is_file():
        members.append("qqp")
    return members


register_group("glue", _glue_members)
