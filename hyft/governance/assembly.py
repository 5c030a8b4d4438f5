"""Assembly: entries + per-language decisions -> ledger, C0/C1/C2 views, rejects, report; checked.

Output folder layout:
    ledger.jsonl                  one row per input line (ledger.py)
    c0.jsonl c1.jsonl c2.jsonl    kept records per view: the input object + "_provenance"
    <lang>/removed/<n>_<stage>.jsonl   dropped records per stage, with reason and detail
    <lang>/stats.json             counts rebuilt from the ledger
    report.json report.md report.png
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyft.governance.ledger import check_ledger, ledger_row, read_jsonl, write_jsonl
from hyft.governance.reasons import Flag, Stage
from hyft.governance.report import build_report, write_report

VIEWS = ("c0", "c1", "c2")
STAGE_NUMBER = {stage.value: n for n, stage in enumerate(Stage, start=1)}


@dataclass
class CurationResult:
    """What `curate` returns. ``c0``/``c1``/``c2`` are the kept records (input dicts plus a
    ``_provenance`` dict: id, source, line, lang), in record-key order (input order by default)."""

    c0: list[dict[str, Any]]
    c1: list[dict[str, Any]]
    c2: list[dict[str, Any]]
    ledger_path: Path
    report: dict[str, Any]
    out_dir: Path

    @property
    def views(self) -> dict[str, list[dict[str, Any]]]:
        return {"c0": self.c0, "c1": self.c1, "c2": self.c2}


def _with_provenance(entry: dict[str, Any]) -> dict[str, Any]:
    provenance = {"id": entry["id"], "source": entry["source"], "line": entry["line"], "lang": entry["lang"]}
    return {**entry["record"], "_provenance": provenance}


def _clear_previous(out_dir: Path) -> None:
    """Remove per-language files of an earlier run (only folders this module wrote: with stats.json)."""
    for stats in out_dir.glob("*/stats.json"):
        shutil.rmtree(stats.parent / "removed", ignore_errors=True)
        stats.unlink()


def _flag_repeated_ids(entries: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Flag records whose id (from the id field) repeats an earlier one: dup_of would be ambiguous."""
    seen: set[str] = set()
    for entry, row in zip(entries, rows, strict=True):
        if entry["key"][0] != 0:  # id is the line number: unique by construction
            continue
        identity = json.dumps(entry["id"], sort_keys=True)
        if identity in seen:
            row["flags"] = sorted({*row["flags"], Flag.DUPLICATE_ID.value})
        seen.add(identity)


def assemble(
    entries: list[dict[str, Any]], language_results: list[dict[str, Any]], n_input: int,
    out_dir: Path, run: dict[str, Any], text_fields: list[str],
) -> CurationResult:
    """Merge, write every output file, then verify the ledger read back from disk."""
    decisions: dict[str, dict[str, Any]] = {}
    applied: dict[str, Any] = {}
    for result in language_results:
        for line, decision in result["decisions"].items():
            decisions[f"{result['lang']}:{line}"] = decision
        applied[result["lang"]] = result["stats"]
    entries = sorted(entries, key=lambda e: e["key"])
    rows = [ledger_row(e, decisions.get(f"{e['lang']}:{e['line']}")) for e in entries]
    _flag_repeated_ids(entries, rows)
    views: dict[str, list] = {view: [] for view in VIEWS}
    removed: dict[tuple[str, str], list] = {}
    records: dict[int, dict] = {}
    for entry, row in zip(entries, rows, strict=True):
        if entry.get("record") is not None:
            records[entry["line"]] = entry["record"]
        if row["view"] is not None:
            for view in VIEWS[: VIEWS.index(row["view"]) + 1]:
                views[view].append(_with_provenance(entry))
        if not row["kept"]:
            reject = {k: row[k] for k in ("id", "source", "line", "reason", "detail", "dup_of")}
            reject["record"] = entry.get("record")
            removed.setdefault((row["lang"], row["stage"]), []).append(reject)

    _clear_previous(out_dir)
    ledger_path = out_dir / "ledger.jsonl"
    write_jsonl(ledger_path, rows)
    for view in VIEWS:
        write_jsonl(out_dir / f"{view}.jsonl", views[view])
    for (lang, stage), rejects in sorted(removed.items()):
        write_jsonl(out_dir / lang / "removed" / f"{STAGE_NUMBER[stage]}_{stage}.jsonl", rejects)

    written = read_jsonl(ledger_path)
    check_ledger(written, n_input, {view: read_jsonl(out_dir / f"{view}.jsonl") for view in VIEWS})
    report = build_report(written, records, run, applied, text_fields)
    write_report(report, out_dir)
    return CurationResult(views["c0"], views["c1"], views["c2"], ledger_path, report, out_dir)
