"""Reading the pool and the validate stage (C0): every input line becomes exactly one entry.

An entry is a plain JSON-ready dict (so the same code runs in-process and in datatrove workers):
``key`` (sort key), ``id``, ``source``, ``line``, ``lang``, ``reason`` (None while alive),
``detail``, ``flags``, ``evidence``, plus for valid records ``record`` (the input object, untouched:
C0 stays byte-faithful), ``fields`` (cleaned texts used for decisions) and ``label``.

Nothing is dropped silently and nothing crashes: undecodable bytes, broken JSON, missing or non-text
fields, empty text and unknown language codes each get a reason, with the file and line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hyft.governance.config import CurationConfig
from hyft.governance.languages import normalize_language
from hyft.governance.reasons import Reason
from hyft.governance.text import clean_text

UNKNOWN_LANG = "und"
ITERABLE_SOURCE = "<iterable>"


def iter_pool(source: str | Path | Iterable[Any]) -> Iterator[tuple[str, int, Any]]:
    """Yield (source name, 1-based line number, raw item) for a JSONL path or an iterable.

    File lines are yielded as bytes (decoded later, so bad encoding is a reason, not a crash);
    iterable items are passed through (dicts, or JSON strings).
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: input pool not found (expected a JSONL file)")
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield str(path), number, raw
        return
    for number, item in enumerate(source, start=1):
        yield ITERABLE_SOURCE, number, item


def sort_key(record_id: Any, line: int, from_field: bool) -> list[Any]:
    """Total order on records: ids from the id field first (ints before strings), then line numbers.

    The smallest key is the copy kept in a duplicate group, independent of workers and input order.
    """
    if not from_field:
        return [1, 0, line, line]
    if isinstance(record_id, int) and not isinstance(record_id, bool):
        return [0, 0, record_id, line]
    return [0, 1, record_id if isinstance(record_id, str) else json.dumps(record_id), line]


def _entry(source: str, line: int, **extra: Any) -> dict[str, Any]:
    entry = {
        "key": sort_key(None, line, False), "id": line, "source": source, "line": line,
        "lang": UNKNOWN_LANG, "reason": None, "detail": None, "flags": [], "evidence": {},
    }
    entry.update(extra)
    return entry


def _drop(entry: dict[str, Any], reason: Reason, detail: str) -> dict[str, Any]:
    entry["reason"], entry["detail"] = reason.value, f"{entry['source']}:{entry['line']}: {detail}"
    return entry


def _parse(source: str, line: int, raw: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Decode and parse one raw item; returns (record or None, entry)."""
    entry = _entry(source, line)
    if isinstance(raw, Mapping):
        return dict(raw), entry
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            entry["evidence"]["raw"] = raw[:200].decode("utf-8", errors="replace")
            return None, _drop(entry, Reason.INVALID_ENCODING, f"not UTF-8 at byte {exc.start}")
    if not isinstance(raw, str):
        return None, _drop(entry, Reason.INVALID_JSON, f"expected a JSON object, got {type(raw).__name__}")
    entry["evidence"]["raw"] = raw.rstrip("\r\n")[:200]
    if not raw.strip():
        return None, _drop(entry, Reason.INVALID_JSON, "blank line")
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, _drop(entry, Reason.INVALID_JSON, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(record, dict):
        return None, _drop(entry, Reason.INVALID_JSON, f"expected a JSON object, got {type(record).__name__}")
    del entry["evidence"]["raw"]
    return record, entry


def validate_item(source: str, line: int, raw: Any, config: CurationConfig) -> dict[str, Any]:
    """Validate one raw item into an entry (alive, or dropped with a validate reason)."""
    record, entry = _parse(source, line, raw)
    if record is None:
        return entry
    if config.id_field is not None:
        if config.id_field not in record:
            return _drop(entry, Reason.INVALID_MISSING_FIELD, f"missing id field '{config.id_field}'")
        entry["id"] = record[config.id_field]
        entry["key"] = sort_key(record[config.id_field], line, True)
    declared = record.get(config.lang_field, config.default_language)
    entry["evidence"]["declared_lang"] = declared if isinstance(declared, str) else repr(declared)
    if config.lang_field not in record and config.default_language is None:
        return _drop(entry, Reason.INVALID_MISSING_FIELD, f"missing language field '{config.lang_field}'")
    lang = normalize_language(declared)
    if lang is None:
        return _drop(entry, Reason.INVALID_LANGUAGE, f"unknown language code {declared!r} (not in the lid.176 set)")
    entry["lang"] = lang
    if config.languages is not None and lang not in config.languages:
        return _drop(entry, Reason.LANGUAGE_NOT_SELECTED, f"language '{lang}' is not in `languages`")
    fields = []
    for name in config.text_fields:
        if name not in record:
            return _drop(entry, Reason.INVALID_MISSING_FIELD, f"missing text field '{name}'")
        value = record[name]
        if not isinstance(value, str):
            return _drop(entry, Reason.INVALID_FIELD_TYPE, f"field '{name}' is {type(value).__name__}, expected text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _drop(entry, Reason.INVALID_ENCODING, f"field '{name}' holds a lone surrogate")
        cleaned = clean_text(value)
        if not cleaned.strip():
            return _drop(entry, Reason.INVALID_EMPTY, f"field '{name}' is empty")
        fields.append(cleaned)
    label = record.get(config.label_field) if config.label_field else None
    entry.update(
        record=record, fields=fields,
        label=None if label is None else json.dumps(label, ensure_ascii=False, sort_keys=True),
    )
    return entry
