"""``data.task: custom``: a classification task over the user's own data: JSONL / CSV / Parquet file(s), or a
dataset loaded with ``datasets.load_dataset`` (a Hub name from the local cache, or a local dataset folder).

The data is read by :mod:`hyft.tables` (the reader ``hyft curate`` uses too) and mapped onto hyft's example
layout by a :class:`CustomTaskSpec` (``data.custom`` in a run config): which columns hold the text (one
field, or a pair for encoders), the label (names, or integer ids into ``label_names``), and the language (a
column, or one fixed language). Decoders are scored by a verbaliser per label after a prompt over the text
fields.

Splits: ``test`` is evaluated; the k shots and the validation rows come from ``train`` when given, else
from the test split itself, and those rows are then left out of the evaluation (like FLORES). Problems
are reported as the built-in tasks report them (:class:`~hyft.tasks.loading.DataError`, naming the file,
the line and the expected format); a column that is not there is named with the columns that are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyft.tables import (
    FileFormat,
    TableError,
    check_columns,
    dataset_label,
    file_format,
    read_dataset,
    read_file,
)
from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataError, DataSource, format_error, missing_file_error
from hyft.tasks.registry import register_task
from hyft.tasks.templates import ClassificationTemplate

CUSTOM_TASK = "custom"


@dataclass(frozen=True)
class Source:
    """Where one split's rows come from: a local file (``path``) or a split of a dataset (``split``)."""

    label: str  # names the source in messages and row locations: the file path, or name[config]/split
    path: Path | None = None
    split: str | None = None


class CustomTaskSpec(BaseModel):
    """How to read a classification task from local files (``data.custom``)."""

    model_config = ConfigDict(extra="forbid")

    test: Path | None = Field(
        None,
        description="File evaluated on (JSONL, CSV or Parquet; relative to the current "
        "folder). Give test or dataset.",
    )
    train: Path | None = Field(
        None,
        description="File the k shots and validation rows come from; default: the "
        "test file, whose drawn rows are then not evaluated.",
    )
    dataset: str | None = Field(
        None,
        description="Instead of files: a dataset for datasets.load_dataset — a Hub "
        "name (offline: from the local Hugging Face cache) or a local folder of data files "
        "named by split (train.csv, test.parquet, ...).",
    )
    dataset_config: str | None = Field(
        None, description="dataset: its configuration (subset) name, if it has several."
    )
    test_split: str = Field("test", description="dataset: the split evaluated on.")
    train_split: str | None = Field(
        None,
        description="dataset: the split the shots and validation rows come from; default: the test split.",
    )
    format: FileFormat = Field("auto", description="jsonl | csv | parquet; auto: from the file suffix.")
    text_fields: list[str] = Field(
        min_length=1,
        max_length=2,
        description="Column(s) holding the text: one, or "
        "a pair (premise, hypothesis) that encoders read as two segments.",
    )
    label_field: str = Field(
        description="Column holding the label: a label name, or an integer id into label_names."
    )
    label_names: list[str] = Field(min_length=2, description="The classes in class-id order.")
    language_field: str | None = Field(None, description="Column holding each row's language code.")
    language: str | None = Field(
        None, description="One fixed language for every row (when there is no language column); default en."
    )
    verbalizers: dict[str, str] | None = Field(
        None,
        description="Decoders: label name → continuation scored after the prompt; default ' <label name>'.",
    )
    prompt: str | None = Field(
        None,
        description="Decoders: format string over the text fields; default: the "
        "fields one per line, then 'Answer:'.",
    )
    instruction: str = Field("", description="Decoders: text placed once before the shots and the prompt.")

    @model_validator(mode="after")
    def _consistent(self) -> CustomTaskSpec:
        if (self.test is None) == (self.dataset is None):
            raise ValueError(
                "give test (a local file, with train optional) or dataset (a Hub name or local dataset "
                "folder, with test_split / train_split), exactly one of them"
            )
        if self.dataset is not None and self.train is not None:
            raise ValueError("train is a file next to test; with dataset, name the split: train_split")
        dataset_only = {"dataset_config", "test_split", "train_split"} & self.model_fields_set
        if self.dataset is None and dataset_only:
            raise ValueError(
                f"{', '.join(sorted(dataset_only))} only apply with dataset; with files use test and train"
            )
        if self.language_field is not None and self.language is not None:
            raise ValueError("give language_field (a column) or language (one fixed code), not both")
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"label_names repeats a name: {self.label_names}")
        if self.verbalizers is not None and set(self.verbalizers) != set(self.label_names):
            raise ValueError(
                f"verbalizers cover {sorted(self.verbalizers)}, but label_names are "
                f"{sorted(self.label_names)}: give one per label"
            )
        return self

    def sources(self) -> dict[str, Source]:
        """Split name → where its rows come from (``train`` only when given)."""
        if self.dataset is not None:
            splits = {"test": self.test_split, **({"train": self.train_split} if self.train_split else {})}
            return {
                name: Source(dataset_label(self.dataset, self.dataset_config, split), split=split)
                for name, split in splits.items()
            }
        files = {"test": self.test, **({"train": self.train} if self.train is not None else {})}
        return {name: Source(str(path), path=Path(path)) for name, path in files.items() if path is not None}

    def file_format(self, path: Path) -> str:
        return file_format(path, self.format, "data.custom.format")

    def columns(self) -> dict[str, list[str]]:
        """Setting → the columns it names (what :func:`hyft.tables.check_columns` checks)."""
        return {
            "text_fields": self.text_fields,
            "label_field": [self.label_field],
            "language_field": [self.language_field] if self.language_field else [],
        }

    def expected_format(self, source: Source | Path) -> str:
        columns = [name for names in self.columns().values() for name in names]
        path = source if isinstance(source, Path) else source.path
        kind = self.file_format(path).upper() if path is not None else "a dataset split"
        return (
            f"{kind} at {source.label if isinstance(source, Source) else path} with columns {columns}; "
            f"labels in {self.label_names} or integer ids 0–{len(self.label_names) - 1}"
        )

    def template(self) -> ClassificationTemplate:
        prompt = self.prompt or "\n".join(f"{{{name}}}" for name in self.text_fields) + "\nAnswer:"
        verbalizers = self.verbalizers or {label: f" {label}" for label in self.label_names}
        return ClassificationTemplate(instruction=self.instruction, prompt=prompt, verbalizers=verbalizers)


_ROWS: dict[tuple, tuple[list[str], list[dict[str, Any]]]] = {}


def _cache_key(spec: CustomTaskSpec, source: Source) -> tuple:
    if source.path is None:
        folder = Path(spec.dataset or "")
        version = (
            folder.stat().st_mtime_ns if folder.exists() else None
        )  # a Hub name: the cache does not change
        return (spec.dataset, spec.dataset_config, source.split, version)
    stat = source.path.stat()
    return (str(source.path.resolve()), stat.st_mtime_ns, stat.st_size, spec.file_format(source.path))


def read_rows(spec: CustomTaskSpec, source: Source) -> list[dict[str, Any]]:
    """The source's rows through :mod:`hyft.tables`, checked against the column mapping (read once per
    version; checked on every call, since another spec may map the same data differently)."""
    if source.path is not None and not source.path.is_file():
        raise missing_file_error(source.path, spec.expected_format(source))
    key = _cache_key(spec, source)
    try:
        if key not in _ROWS:
            if source.path is not None:
                table = read_file(source.path, spec.file_format(source.path), spec.expected_format(source))
            else:
                table = read_dataset(spec.dataset or "", spec.dataset_config, source.split or "")
            _ROWS[key] = (list(table.column_names), [dict(row) for row in table])
        columns, rows = _ROWS[key]
        check_columns(source.label, columns, spec.columns(), "data.custom")
    except TableError as exc:
        raise DataError(str(exc)) from None
    if not rows:
        raise format_error(
            source.label, 1, "empty file" if source.path else "no rows", spec.expected_format(source)
        )
    return rows


def _missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _line(spec: CustomTaskSpec, source: Source, index: int) -> int:
    """Line of row ``index`` in the file (CSV: after its header; Parquet, a dataset split: the row number)."""
    return index + 2 if source.path is not None and spec.file_format(source.path) == "csv" else index + 1


def custom_examples(spec: CustomTaskSpec, source: Source, split: str) -> list[Example]:
    """Every row of ``source`` as ``{id, lang, <text fields>, label}`` (the label as its name)."""
    rows = read_rows(spec, source)
    path, expected = source.label, spec.expected_format(source)
    examples = []
    for index, row in enumerate(rows):
        line = _line(spec, source, index)
        example: Example = {"id": f"{CUSTOM_TASK}/{split}/{line}"}
        for name in spec.text_fields:
            if _missing(row[name]):
                raise format_error(path, line, f"empty text field '{name}'", expected)
            example[name] = row[name] if isinstance(row[name], str) else str(row[name])
        label = row[spec.label_field]
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(spec.label_names):
            label = spec.label_names[label]
        elif isinstance(label, float) and label.is_integer() and 0 <= label < len(spec.label_names):
            label = spec.label_names[int(label)]  # pandas reads an int column with gaps as floats
        if label not in spec.label_names:
            raise format_error(
                path,
                line,
                f"label {label!r} in column '{spec.label_field}' is not one of {spec.label_names}",
                expected,
            )
        example["label"] = label
        if spec.language_field:
            lang = row[spec.language_field]
            if _missing(lang) or not isinstance(lang, str):
                raise format_error(
                    path, line, f"no language code in column '{spec.language_field}'", expected
                )
            example["lang"] = lang.strip()
        else:
            example["lang"] = spec.language or "en"
        examples.append(example)
    return examples


def build_custom_task(spec: CustomTaskSpec) -> Task:
    """The task the spec describes; reads the files now, so a wrong column fails at config validation."""
    sources = spec.sources()
    languages = sorted(
        {
            example["lang"]
            for split, source in sources.items()
            for example in custom_examples(spec, source, split)
        }
    )

    def load(split: str, language: str, data: DataSource) -> list[Example]:
        return [
            example for example in custom_examples(spec, sources[split], split) if example["lang"] == language
        ]

    return Task(
        name=CUSTOM_TASK,
        family=CUSTOM_TASK,
        kind="classification",
        metric="accuracy",
        description=f"custom classification task from {sources['test'].label}"
        + (f" (shots: {sources['train'].label})" if "train" in sources else ""),
        languages=tuple(languages),
        loader=load,
        eval_split="test",
        shot_split="train" if "train" in sources else None,
        labels=tuple(spec.label_names),
        text_fields=tuple(spec.text_fields),
        extra={"template": spec.template(), "spec": spec.model_dump(mode="json")},
    )


def register_custom_task(spec: CustomTaskSpec) -> Task:
    """Build the task and make it ``get_task("custom")``
    (replacing an earlier custom task of this process)."""
    return register_task(build_custom_task(spec), replace=True)
