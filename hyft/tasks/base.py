"""What a benchmark task is: a small object naming its loader, its prompt/head and its metric.

Examples are plain dicts. Every example carries ``id`` (stable: task/split/language/line), ``lang``
and the task's text fields; classification examples carry ``label`` as a label *name* (e.g.
``"entailment"``) whose index in :attr:`Task.labels` is the class id of an encoder head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hyft.tasks.loading import DataError, DataSource

Example = dict[str, Any]
TaskKind = Literal["classification", "translation", "generation"]
# (split, language, data source) -> examples in file order
Loader = Callable[[str, str, DataSource], list[Example]]
# (generated texts, examples, options) -> {metric name: value}, pure apart from a code sandbox
GenerationScorer = Callable[[Sequence[str], Sequence[Example], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One benchmark. For translation, ``language`` arguments are directions such as ``"en-de"``.

    ``shot_split``: where k-shot demonstrations come from. ``None`` means the task has no separate
    split here (FLORES has devtest only, GSM8K test only), so shots are drawn from ``eval_split``
    and removed from the evaluated examples (see :func:`hyft.tasks.kshot.draw_shots`).
    """

    name: str
    family: str
    kind: TaskKind
    metric: str
    description: str
    languages: tuple[str, ...]
    loader: Loader
    eval_split: str
    shot_split: str | None = None
    labels: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    max_new_tokens: int = 0
    supports_fewshot: bool = True
    score_generations: GenerationScorer | None = None
    hub_dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self, split: str, language: str, data: DataSource | None = None) -> list[Example]:
        """Examples of ``split`` in ``language`` (a direction ``src-tgt`` for translation)."""
        valid_splits = {self.eval_split} | ({self.shot_split} if self.shot_split else set())
        if split not in valid_splits:
            raise DataError(f"task {self.name!r} has splits {sorted(valid_splits)}, not {split!r}")
        self.check_language(language)
        return self.loader(split, language, data or DataSource.default())

    def check_language(self, language: str) -> None:
        """Raise DataError when the task has no such language (or direction, for translation)."""
        targets = [language]
        if self.kind == "translation":
            if "-" not in language:
                raise DataError(f"task {self.name!r} takes directions like 'en-de', not {language!r}")
            targets = language.split("-", 1)
        for code in targets:
            if code not in self.languages:
                raise DataError(
                    f"task {self.name!r} has no language {code!r}; available: {', '.join(self.languages)}"
                )

    def label_index(self, example: Example) -> int:
        """Class id of a classification example (position of its label name in :attr:`labels`)."""
        try:
            return self.labels.index(example["label"])
        except ValueError:
            raise ValueError(
                f"{example.get('id')}: label {example['label']!r} not in {self.labels}"
            ) from None

    def reference(self, example: Example) -> str:
        """The gold output text of a generation/translation example (used for shots and training)."""
        return str(example[self.extra.get("reference_field", "target")])


def direction(source_language: str, target_language: str) -> str:
    """The language key of a translation direction, e.g. ``direction("en", "de") == "en-de"``."""
    return f"{source_language}-{target_language}"
