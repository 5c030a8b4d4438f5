"""``data.task: custom``: a classification task over the user's own JSONL / CSV / Parquet file(s).

The files are read with ``datasets``' local loaders (``json``, ``csv``, ``parquet``; offline, nothing
from the Hub) and mapped onto hyft's example layout by a :class:`CustomTaskSpec` (``data.custom`` in a
run config): which columns hold the text (one field, or a pair for encoders), the label (names, or
integer ids into ``label_names``), and the language (a column, or one fixed language). Decoders are
scored by a verbaliser per label after a prompt over the text fields.

Splits: ``test`` is evaluated; the k shots and the validation rows come from ``train`` when given, else
from the test file itself, and those rows are then left out of the evaluation (like FLORES). Problems
are reported as the built-in tasks report them (:class:`~hyft.tasks.loading.DataError`, naming the file,
the line and the expected format); a column that is not there is named with the columns that are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataError, DataSource, format_error, missing_file_error
from hyft.tasks.registry import register_task
from hyft.tasks.templates import ClassificationTemplate

CUSTOM_TASK = "custom"
FileFormat = Literal["auto", "jsonl", "csv", "parquet"]
_BUILDERS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}
_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class CustomTaskSpec(BaseModel):
    """How to read a classification task from local files (``data.custom``)."""

    model_config = ConfigDict(extra="forbid")

    test: Path = Field(description="File evaluated on (JSONL, CSV or Parquet; relative to the current folder).")
    train: Path | None = Field(None, description="File the k shots and validation rows come from; default: the "
                               "test file, whose drawn rows are then not evaluated.")
    format: FileFormat = Field("auto", description="jsonl | csv | parquet; auto: from the file suffix.")
    text_fields: list[str] = Field(min_length=1, max_length=2, description="Column(s) holding the text: one, or "
                                   "a pair (premise, hypothesis) that encoders read as two segments.")
    label_field: str = Field(description="Column holding the label: a label name, or an integer id into label_names.")
    label_names: list[str] = Field(min_length=2, description="The classes in class-id order.")
    language_field: str | None = Field(None, description="Column holding each row's language code.")
    language: str | None = Field(None, description="One fixed language for every row (when there is no "
                                 "language column); default en.")
    verbalizers: dict[str, str] | None = Field(None, description="Decoders: label name → continuation scored "
                                               "after the prompt; default ' <label name>'.")
    prompt: str | None = Field(None, description="Decoders: format string over the text fields; default: the "
                               "fields one per line, then 'Answer:'.")
    instruction: str = Field("", description="Decoders: text placed once before the shots and the prompt.")

    @model_validator(mode="after")
    def _consistent(self) -> CustomTaskSpec:
        if self.language_field is not None and self.language is not None:
            raise ValueError("give language_field (a column) or language (one fixed code), not both")
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"label_names repeats a name: {self.label_names}")
        if self.verbalizers is not None and set(self.verbalizers) != set(self.label_names):
            raise ValueError(f"verbalizers cover {sorted(self.verbalizers)}, but label_names are "
                             f"{sorted(self.label_names)}: give one per label")
        return self

    def file_format(self, path: Path) -> str:
        if self.format != "auto":
            return self.format
        kind = _SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise DataError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; set "
                            "data.custom.format to jsonl, csv or parquet")
        return kind

    def expected_format(self, path: Path) -> str:
        columns = [*self.text_fields, self.label_field, *([self.language_field] if self.language_field else [])]
        return (f"{self.file_format(path).upper()} at {path} with columns {columns}; labels in "
                f"{self.label_names} or integer ids 0–{len(self.label_names) - 1}")

    def template(self) -> ClassificationTemplate:
        prompt = self.prompt or "\n".join(f"{{{name}}}" for name in self.text_fields) + "\nAnswer:"
        verbalizers = self.verbalizers or {label: f" {label}" for label in self.label_names}
        return ClassificationTemplate(instruction=self.instruction, prompt=prompt, verbalizers=verbalizers)


_ROWS: dict[tuple, list[dict[str, Any]]] = {}


def read_rows(spec: CustomTaskSpec, path: Path) -> list[dict[str, Any]]:
    """The file's rows through ``datasets``, checked against the column mapping (cached per file version)."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, spec.expected_format(path))
    kind = spec.file_format(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, kind)
    if key not in _ROWS:
        import datasets

        try:
            table = datasets.load_dataset(_BUILDERS[kind], data_files=str(path), split="train")
        except Exception as exc:  # pyarrow / pandas raise many types for a malformed file
            raise DataError(f"{path}: could not be read as {kind.upper()} ({type(exc).__name__}: {exc}); "
                            f"expected {spec.expected_format(path)}") from None
        columns = list(table.column_names)
        wanted = {"text_fields": spec.text_fields, "label_field": [spec.label_field],
                  "language_field": [spec.language_field] if spec.language_field else []}
        for setting, names in wanted.items():
            for name in names:
                if name not in columns:
                    raise DataError(f"{path}: data.custom.{setting} names column {name!r}, which the file does not "
                                    f"have; its columns are: {', '.join(columns)}")
        if len(table) == 0:
            raise format_error(path, 1, "empty file", spec.expected_format(path))
        _ROWS[key] = [dict(row) for row in table]
    return _ROWS[key]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                  and not value.strip())


def _line(kind: str, index: int) -> int:
    """Line of row ``index`` in the file (CSV: after its header; Parquet: the row number)."""
    return index + 2 if kind == "csv" else index + 1


def custom_examples(spec: CustomTaskSpec, path: Path, split: str) -> list[Example]:
    """Every row of ``path`` as ``{id, lang, <text fields>, label}`` (the label as its name)."""
    rows = read_rows(spec, path)
    kind, expected = spec.file_format(path), spec.expected_format(path)
    examples = []
    for index, row in enumerate(rows):
        line = _line(kind, index)
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
            raise format_error(path, line, f"label {label!r} in column '{spec.label_field}' is not one of "
                               f"{spec.label_names}", expected)
        example["label"] = label
        if spec.language_field:
            lang = row[spec.language_field]
            if _missing(lang) or not isinstance(lang, str):
                raise format_error(path, line, f"no language code in column '{spec.language_field}'", expected)
            example["lang"] = lang.strip()
        else:
            example["lang"] = spec.language or "en"
        examples.append(example)
    return examples


def build_custom_task(spec: CustomTaskSpec) -> Task:
    """The task the spec describes; reads the files now, so a wrong column fails at config validation."""
    files = {"test": spec.test, **({"train": spec.train} if spec.train is not None else {})}
    languages = sorted({example["lang"] for split, path in files.items() for example in custom_examples(spec, path, split)})

    def load(split: str, language: str, data: DataSource) -> list[Example]:
        return [example for example in custom_examples(spec, files[split], split) if example["lang"] == language]

    return Task(
        name=CUSTOM_TASK,
        family=CUSTOM_TASK,
        kind="classification",
        metric="accuracy",
        description=f"custom classification task from {spec.test}"
                    + (f" (shots: {spec.train})" if spec.train is not None else ""),
        languages=tuple(languages),
        loader=load,
        eval_split="test",
        shot_split="train" if spec.train is not None else None,
        labels=tuple(spec.label_names),
        text_fields=tuple(spec.text_fields),
        extra={"template": spec.template(), "spec": spec.model_dump(mode="json")},
    )


def register_custom_task(spec: CustomTaskSpec) -> Task:
    """Build the task and make it ``get_task("custom")`` (replacing an earlier custom task of this process)."""
    return register_task(build_custom_task(spec), replace=True)
