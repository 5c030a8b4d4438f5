"""Curation under hostile bytes: every line becomes one ledger row or one kept record, never a crash.

Each case is judged by what lands on disk (the ledger row's reason and file:line) and by the exit code,
not by the absence of an exception alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hyft.governance import CurationConfig, curate
from hyft.governance.reasons import Reason
from hyft.governance.validate import ARRAY_HINT, MAX_JSON_DEPTH, PoolFormatError, validate_item

CONFIG = CurationConfig(text_fields=["premise", "hypothesis"], progress=False)
GOOD = {"premise": "The cat sat on the mat all afternoon.", "hypothesis": "A cat was resting.", "lang": "en"}
CLOSED = {r.value for r in Reason}


def _good(**extra) -> bytes:
    return json.dumps(dict(GOOD, **extra), ensure_ascii=False).encode()


HOSTILE = {
    "deep": (b"[" * 100_000 + b"]" * 100_000, Reason.INVALID_JSON_DEPTH),
    "deep_object": (b'{"premise": ' + b"[" * 150 + b"]" * 150 + b"}", Reason.INVALID_JSON_DEPTH),
    "huge_int": (_good(n=0)[:-2] + b" " + b"9" * 5000 + b"}", Reason.INVALID_JSON_NUMBER),
    "huge_float": (_good(n=0)[:-2] + b" 1e999}", Reason.INVALID_JSON_NUMBER),
    "nan": (_good(n=0)[:-2] + b" NaN}", Reason.INVALID_JSON),
    "infinity": (_good(n=0)[:-2] + b" Infinity}", Reason.INVALID_JSON),
    "minus_infinity": (_good(n=0)[:-2] + b" -Infinity}", Reason.INVALID_JSON),
    "array_line": (b"[1, 2, 3]", Reason.INVALID_JSON),
    "string_line": (b'"just a string"', Reason.INVALID_JSON),
    "number_line": (b"42", Reason.INVALID_JSON),
    "null_line": (b"null", Reason.INVALID_JSON),
    "bad_utf8": (b'{"premise": "caf\xe9"}', Reason.INVALID_ENCODING),
    "lone_surrogate_elsewhere": (_good()[:-1] + b', "note": "\\ud800"}', Reason.INVALID_ENCODING),
    "broken": (b"{bad", Reason.INVALID_JSON),
    "nul_bytes": (b"\x00\x00\x00", Reason.INVALID_JSON),
}


def _not_strict(name: str) -> None:
    raise AssertionError(f"a view holds {name}, which strict JSON parsers reject")


def _ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]


def test_hostile_lines_become_ledger_rows_with_file_and_line(app, tmp_path):
    pool = tmp_path / "pool.jsonl"
    lines = [b"\xef\xbb\xbf" + _good(premise="A BOM opens this file, and this valid record must be kept.")]
    lines += [raw for raw, _ in HOSTILE.values()] + [_good(premise="A last clean record is kept as well.")]
    pool.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["curate", "--input", str(pool), "--text-fields", "premise,hypothesis", "--out", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    rows = {row["line"]: row for row in _ledger(out)}
    assert sorted(rows) == list(range(1, len(lines) + 1))
    assert rows[1]["stage"] != "validate", rows[1]  # the BOM no longer costs the first record
    for line, (name, (_, reason)) in enumerate(HOSTILE.items(), start=2):
        assert rows[line]["reason"] == reason.value, (name, rows[line])
        assert rows[line]["detail"].startswith(f"{pool}:{line}: "), (name, rows[line]["detail"])
    # every view is strict JSON: no NaN/Infinity a strict consumer would choke on
    for view in ("c0", "c1", "c2"):
        for text in (out / f"{view}.jsonl").read_text(encoding="utf-8").splitlines():
            json.loads(text, parse_constant=_not_strict)
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["total"]["n_input"] == len(lines)


def test_depth_limit_is_exact():
    ok = (
        b'{"premise": "x", "lang": "en", "deep": '
        + b"[" * (MAX_JSON_DEPTH - 1)
        + b"]" * (MAX_JSON_DEPTH - 1)
        + b"}"
    )
    too_deep = ok.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1)
    assert validate_item("f", 1, ok, CurationConfig(text_fields=["premise"]))["reason"] is None
    assert validate_item("f", 1, too_deep, CONFIG)["reason"] == Reason.INVALID_JSON_DEPTH.value


def test_iterable_items_that_are_not_strict_json_are_rows_too(tmp_path):
    looped: dict = dict(GOOD)
    looped["self"] = looped
    items = [dict(GOOD, x=float("nan")), looped, dict(GOOD, x=object()), "[1]", dict(GOOD, x=10**5000), GOOD]
    result = curate(items, CONFIG, tmp_path)
    rows = _ledger(tmp_path)
    assert [r["reason"] for r in rows[:5]] == [
        "invalid_json_number",
        "invalid_json_depth",
        "invalid_json",
        "invalid_json",
        "invalid_json_number",
    ]
    assert result.report["total"]["n_input"] == 6


@pytest.mark.parametrize(
    "text",
    [
        json.dumps([GOOD, GOOD]),
        json.dumps([GOOD, GOOD], indent=2),
        "\ufeff" + json.dumps([GOOD], indent=1),
    ],
)
def test_a_json_array_file_is_refused_with_a_hint(app, tmp_path, text):
    pool = tmp_path / "pool.json"
    pool.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["curate", "--input", str(pool), "--text-fields", "premise", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2, result.output
    assert ARRAY_HINT in result.output and "jq -c '.[]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "ledger.jsonl").exists()


def test_jsonl_whose_lines_are_arrays_is_not_mistaken_for_an_array_file(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("[1]\n[2]\n", encoding="utf-8")
    curate(pool, CONFIG, tmp_path / "out")
    assert [r["reason"] for r in _ledger(tmp_path / "out")] == ["invalid_json", "invalid_json"]


def _unwritable_targets(tmp_path: Path) -> list[Path]:
    existing_file = tmp_path / "taken"
    existing_file.write_text("not a folder")
    targets = [existing_file, existing_file / "below", Path("/proc/self/hyft-out")]
    if Path("/sys/kernel").is_dir():
        targets.append(Path("/sys/kernel/hyft-out"))
    if os.geteuid() != 0:  # root ignores permission bits
        read_only = tmp_path / "read-only"
        read_only.mkdir()
        read_only.chmod(0o500)
        targets.append(read_only)
    return targets


def test_output_problems_exit_2_naming_out(app, tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(_good() + b"\n")
    for target in _unwritable_targets(tmp_path):
        result = CliRunner().invoke(
            app, ["curate", "--input", str(pool), "--text-fields", "premise", "--out", str(target), "--quiet"]
        )
        assert result.exit_code == 2, (target, result.output, result.exception)
        assert "--out" in result.output and str(target) in result.output, result.output


line_bytes = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda prefix, body: prefix + body,
        st.sampled_from([b"{", b"[", b'{"premise": ', b"\xef\xbb\xbf"]),
        st.binary(max_size=40),
    ),
    st.builds(
        lambda p, h, lang: json.dumps({"premise": p, "hypothesis": h, "lang": lang}).encode(),
        st.text(max_size=40),
        st.text(max_size=20),
        st.sampled_from(["en", "sw", "xx", "de", ""]),
    ),
    st.builds(lambda cut, good: good[:cut], st.integers(0, 60), st.just(_good())),
).map(lambda b: b.replace(b"\n", b" "))


@settings(max_examples=400, deadline=None)
@given(st.lists(line_bytes, min_size=1, max_size=8))
def test_validate_never_raises_on_arbitrary_bytes(lines):
    for number, raw in enumerate(lines, start=1):
        entry = validate_item("pool.jsonl", number, raw, CONFIG)
        assert entry["line"] == number
        if entry["reason"] is not None:
            assert entry["reason"] in CLOSED and entry["detail"].startswith(f"pool.jsonl:{number}: ")
        else:
            json.dumps(entry["record"], ensure_ascii=False, allow_nan=False).encode("utf-8")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line_bytes, min_size=1, max_size=12))
@example(lines=[b"[", b"{}"])  # found by CI: a file opening a JSON array is refused whole, with the hint
def test_curate_gives_one_row_per_arbitrary_byte_line(tmp_path, lines):
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(b"\n".join(lines) + b"\n")
    try:
        result = curate(pool, CONFIG, tmp_path / "out")
    except PoolFormatError:
        # The one whole-file refusal: only for a file whose first non-blank byte opens a JSON array.
        assert pool.read_bytes().removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"[")
        return
    rows = _ledger(tmp_path / "out")
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1))
    assert all(r["reason"] is None or r["reason"] in CLOSED for r in rows)
    assert all(r["view"] is not None for r in rows)  # C0 is the raw input: every line counts in it
    assert sum(r["stage"] != "validate" for r in rows) == len(result.c0)  # the c0 file holds the records
