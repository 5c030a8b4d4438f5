"""Reading the pool and the validate stage (C0): every input line becomes exactly one entry.

An entry is a plain JSON-ready dict (so the same code runs in-process and in datatrove workers):
``key`` (sort key), ``id``, ``source``, ``line``, ``lang``, ``reason`` (None while alive),
``detail``, ``flags``, ``evidence``, plus for valid records ``record`` (the input object, untouched:
C0 stays byte-faithful), ``fields`` (cleaned texts used for decisions) and ``label``.

Nothing is dropped silently and nothing crashes: undecodable bytes, broken JSON (including NaN and
Infinity literals, which strict parsers reject), nesting deeper than MAX_JSON_DEPTH, numbers no
strict parser holds (a 5000-digit integer, 1e999), non-object lines, missing or non-text fields,
empty text and unknown language codes each get a reason, with the file and line number. Mojibake
("cafÃ©") in a text field is repaired with ftfy for the decisions and the curated views C1/C2 (flag
``mojibake_fixed``; the raw text stays in ``record``, C0 and the ledger evidence). A UTF-8 byte
order mark on the first line is skipped (``utf-8-sig``). A whole file that is one JSON array is not
JSONL: :func:`check_pool_format` refuses it with a conversion hint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ftfy

from hyft.governance.config import CurationConfig
from hyft.governance.languages import normalize_language
from hyft.governance.reasons import Flag, Reason
from hyft.governance.text import clean_text

UNKNOWN_LANG = "und"
ITERABLE_SOURCE = "<iterable>"
UTF8_BOM = b"\xef\xbb\xbf"
MAX_JSON_DEPTH = 100  # far above any real record; keeps every later json.dumps clear of recursion limits
MAX_INT_DIGITS = 4300  # Python's int_max_str_digits default: int() refuses longer decimal strings
ARRAY_HINT = "looks like a JSON array; hyft expects JSONL (one object per line) — convert with `jq -c '.[]'`"


class PoolFormatError(ValueError):
    """The whole input file is not JSONL (e.g. one JSON array): no line-by-line ledger makes sense."""


class _NumberError(ValueError):
    """A JSON number that strict parsers cannot hold."""


class _ConstantError(ValueError):
    """NaN, Infinity or -Infinity: accepted by Python's json, rejected by strict JSON parsers."""


def _strict_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NumberError(f"integer with {len(text.lstrip('-'))} digits (more than {MAX_INT_DIGITS})")
    return int(text)


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberError(f"number {text[:40]} overflows a 64-bit float")
    return value


def _reject_constant(name: str) -> Any:
    raise _ConstantError(f"{name} is not valid JSON (RFC 8259; strict parsers reject it)")


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity and out-of-range numbers (raises ValueError subclasses)."""
    return json.loads(text, parse_int=_strict_int, parse_float=_strict_float, parse_constant=_reject_constant)


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), without recursion.

    Stops once the depth passes ``limit`` (so a self-referencing dict cannot loop forever).
    """
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= limit:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def check_pool_format(path: str | Path) -> None:
    """Raise PoolFormatError when the file is one JSON array rather than JSONL.

    Only files whose first non-blank byte is ``[`` are looked at: the whole file parses as an array,
    or its first line is a lone ``[`` (a pretty-printed array, one element spread over many lines).
    """
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(4096)
    head = head.removeprefix(UTF8_BOM).lstrip()
    if not head.startswith(b"["):
        return
    whole_array = head.split(b"\n", 1)[0].strip() in (b"[", b"[{")
    if not whole_array:
        try:
            whole_array = isinstance(json.loads(path.read_bytes().removeprefix(UTF8_BOM)), list)
        except (ValueError, RecursionError):
            whole_array = False
    if whole_array:
        raise PoolFormatError(f"{path}: {ARRAY_HINT}")


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
                yield str(path), number, raw.removeprefix(UTF8_BOM) if number == 1 else raw
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
        "key": sort_key(None, line, False),
        "id": line,
        "source": source,
        "line": line,
        "lang": UNKNOWN_LANG,
        "reason": None,
        "detail": None,
        "flags": [],
        "evidence": {},
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
        return _check_record(dict(raw), entry)
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
        record = strict_loads(raw)
    except json.JSONDecodeError as exc:
        return None, _drop(entry, Reason.INVALID_JSON, f"not valid JSON ({exc.msg} at column {exc.colno})")
    except _ConstantError as exc:
        return None, _drop(entry, Reason.INVALID_JSON, str(exc))
    except _NumberError as exc:
        return None, _drop(entry, Reason.INVALID_JSON_NUMBER, str(exc))
    except RecursionError:
        return None, _drop(entry, Reason.INVALID_JSON_DEPTH, f"nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError as exc:  # anything else the decoder refuses: still this line's problem, not the run's
        return None, _drop(entry, Reason.INVALID_JSON, f"not valid JSON ({exc})")
    if not isinstance(record, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(record), "a number"
        )
        return None, _drop(entry, Reason.INVALID_JSON, f"expected a JSON object, got {kind}")
    del entry["evidence"]["raw"]
    return _check_record(record, entry)


def _check_record(
    record: dict[str, Any], entry: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A parsed object must stay writable as strict UTF-8 JSON: bounded depth, no NaN, no lone surrogate."""
    if json_depth(record) > MAX_JSON_DEPTH:
        return None, _drop(entry, Reason.INVALID_JSON_DEPTH, f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, _drop(entry, Reason.INVALID_ENCODING, "holds a lone surrogate (a \\ud800-style escape)")
    except ValueError as exc:
        return None, _drop(entry, Reason.INVALID_JSON_NUMBER, f"not strict JSON ({exc})")
    except (TypeError, RecursionError) as exc:
        return None, _drop(entry, Reason.INVALID_JSON, f"not JSON-serializable ({exc})")
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
        return _drop(
            entry, Reason.INVALID_LANGUAGE, f"unknown language code {declared!r} (not in the lid.176 set)"
        )
    entry["lang"] = lang
    if config.languages is not None and lang not in config.languages:
        return _drop(entry, Reason.LANGUAGE_NOT_SELECTED, f"language '{lang}' is not in `languages`")
    fields = []
    raw_fields: dict[str, str] = {}
    curated: dict[str, str] = {}
    for name in config.text_fields:
        if name not in record:
            return _drop(entry, Reason.INVALID_MISSING_FIELD, f"missing text field '{name}'")
        value = record[name]
        if not isinstance(value, str):
            return _drop(
                entry, Reason.INVALID_FIELD_TYPE, f"field '{name}' is {type(value).__name__}, expected text"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _drop(entry, Reason.INVALID_ENCODING, f"field '{name}' holds a lone surrogate")
        cleaned = clean_text(value)
        # On the cleaned text: ftfy reads a lone C1 control (U+0085) as cp1252 and would turn it into "…".
        repaired = repair_mojibake(cleaned)
        if repaired != cleaned:
            raw_fields[name] = cleaned
            curated[name] = cleaned = repaired
        if not cleaned.strip():
            return _drop(entry, Reason.INVALID_EMPTY, f"field '{name}' is empty")
        fields.append(cleaned)
    label = record.get(config.label_field) if config.label_field else None
    entry.update(
        record=record,
        fields=fields,
        label=None if label is None else json.dumps(label, ensure_ascii=False, sort_keys=True),
    )
    if curated:
        entry["curated"] = curated  # C1/C2 hold the repair; C0 and `record` stay byte-faithful
        entry["evidence"]["mojibake"] = raw_fields  # the text before the repair (NFC, controls removed)
        entry["flags"] = [Flag.MOJIBAKE_FIXED.value]
    return entry


def repair_mojibake(text: str) -> str:
    """``text`` with mojibake undone by ftfy's ``fix_encoding`` ("cafÃ©" -> "café"), else unchanged.

    Only the encoding fix runs, not ``fix_text``, whose other steps (curly quotes to straight, ligatures,
    width) would rewrite correct text. Mojibake needs non-ASCII characters, so ASCII text skips ftfy.
    """
    if text.isascii():
        return text
    return ftfy.fix_encoding(text)
