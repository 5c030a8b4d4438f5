"""Evaluation rows by task name for decontamination (``xnli:test``), resolved above the governance layer.

``hyft.governance`` and ``hyft.tasks`` are sibling layers (pyproject's import contract): curation cannot
load a task. ``hyft curate`` and ``hyft run`` call :func:`resolve_eval_tasks`, which loads each named split
here and hands the rows down in ``curation.decontaminate.rows``, the same way ``hyft run`` already passes
its own evaluation rows.
"""

from __future__ import annotations

from typing import Any

from hyft.tasks.base import Task
from hyft.tasks.loading import DataError, DataSource


def task_split_rows(
    name_split: str, data: DataSource, languages: list[str] | None = None
) -> list[dict[str, Any]]:
    """Rows ``{id, texts}`` of ``task:split`` in each of the task's languages (only ``languages`` if given).

    Texts are the task's text fields in task order (XNLI: premise, hypothesis); ids are the task's own row
    ids (``xnli/test/hi/17``), which the ledger names as ``eval_id``. A translation task (FLORES) gives one
    row per sentence and language (directions ``en-x`` read both sides; English once).
    """
    from hyft.tasks.registry import get_task

    name, split = name_split.split(":", 1)
    task: Task = get_task(name)
    wanted = [lang for lang in task.languages if languages is None or lang in languages]
    rows: list[dict[str, Any]] = []
    if task.kind == "translation":
        seen: set[str] = set()
        for lang in (lang for lang in task.languages if lang != "en"):
            for example in task.load(split, f"en-{lang}", data):
                for side, code in (("source", "en"), ("target", lang)):
                    row_id = f"{name}/{split}/{code}/{str(example['id']).rsplit('/', 1)[-1]}"
                    if code in wanted and row_id not in seen and isinstance(example.get(side), str):
                        seen.add(row_id)
                        rows.append({"id": row_id, "texts": [example[side]]})
        return rows
    if not task.text_fields:
        raise DataError(f"task {name!r} names no text fields; decontaminate against a JSONL file instead")
    for lang in wanted:
        for example in task.load(split, lang, data):
            texts = [example[f] for f in task.text_fields if isinstance(example.get(f), str)]
            if texts:
                rows.append({"id": str(example.get("id", f"{name}/{split}/{lang}")), "texts": texts})
    return rows


def resolve_eval_tasks(settings: Any, data: DataSource | None = None) -> Any:
    """``settings`` (a CurationConfig) with the rows of every ``decontaminate.tasks`` split added to
    ``decontaminate.rows`` and those names marked resolved; unchanged when it names no task.

    Raises UnknownTaskError (did-you-mean) or DataError (missing file, unknown split), both user errors.
    """
    decontaminate = settings.decontaminate
    todo = [name for name in decontaminate.tasks if name not in decontaminate.resolved_tasks]
    if not todo:
        return settings
    data = data or DataSource.default()
    rows = [row for name in todo for row in task_split_rows(name, data, settings.languages)]
    dumped = decontaminate.model_dump()
    updated = decontaminate.model_validate(
        dumped | {"rows": [*dumped["rows"], *rows], "resolved_tasks": [*decontaminate.resolved_tasks, *todo]}
    )
    return settings.model_copy(update={"decontaminate": updated})
