"""Assembly: entries + per-language decisions -> ledger, C0/C1/C2 views, rejects, report; checked.

Output folder layout:
    ledger.jsonl                  one row per input line (ledger.py)
    c0.jsonl c1.jsonl c2.jsonl    records per view + "_provenance": c0 = every input line that is a valid
                                  record, as read (C0 also counts the invalid lines, kept in the ledger and
                                  removed/1_validate.jsonl); c1/c2 = curated (mojibake repaired, romanised
                                  records kept as their own group carry the <lang>-Latn tag)
    <lang>/removed/<n>_<stage>.jsonl   dropped records per stage, with reason and detail
    <lang>/stats.json             counts rebuilt from the ledger
    report.json report.md report.png
    _COMPLETE                     written last (hyft.io.write_marker): input sha256, config hash,
                                  every file's sha256; readers refuse a folder without it

Every file is written atomically (temp name + fsync + os.replace), so a killed run leaves whole
files and no marker; :func:`clear_outputs` removes an earlier run's files before a new run writes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyft.governance.ledger import check_ledger, ledger_row, read_jsonl, write_jsonl
from hyft.governance.reasons import Flag, Stage
from hyft.governance.report import build_report, write_report
from hyft.io import MARKER, clear_marker, read_marker, require_marker

VIEWS = ("c0", "c1", "c2")
STAGE_NUMBER = {stage.value: n for n, stage in enumerate(Stage, start=1)}


@dataclass
class CurationResult:
    """What `curate` returns. ``c0``/``c1``/``c2`` are the kept records (input dicts plus a
    ``_provenance`` dict: id, source, line, lang), in record-key order (input order by default); c0 holds
    the valid records as read, c1/c2 the curated ones (assembly module docstring)."""

    c0: list[dict[str, Any]]
    c1: list[dict[str, Any]]
    c2: list[dict[str, Any]]
    ledger_path: Path
    report: dict[str, Any]
    out_dir: Path
    files: list[Path] = field(default_factory=list)  # every file this run wrote in out_dir
    previous: str | None = None  # what happened to an earlier run's outputs (reused / cleared)

    @property
    def views(self) -> dict[str, list[dict[str, Any]]]:
        return {"c0": self.c0, "c1": self.c1, "c2": self.c2}


def _with_provenance(entry: dict[str, Any], view: str) -> dict[str, Any]:
    """The record as a view holds it: C0 byte-faithful, C1/C2 with the curated fields (mojibake repaired,
    the language-script tag of a kept romanised record)."""
    provenance = {"id": entry["id"], "source": entry["source"], "line": entry["line"], "lang": entry["lang"]}
    curated = entry.get("curated") if view != "c0" else None
    return {**entry["record"], **(curated or {}), "_provenance": provenance}


OUTPUT_PATTERNS = (
    "ledger.jsonl",
    "c0.jsonl",
    "c1.jsonl",
    "c2.jsonl",
    "report.json",
    "report.md",
    "report.png",
    "*/stats.json",
    "*/removed/*.jsonl",
    ".*.tmp*",
)


def clear_outputs(out_dir: Path) -> list[Path]:
    """Remove everything an earlier curation run wrote in ``out_dir`` (the marker first); returns it.

    Only files of this layout (or listed in the old marker) are removed, never other files in the
    folder; removed/ and language folders left empty go too, as does the datatrove work folder.
    """
    listed = (read_marker(out_dir) or {}).get("files", {})
    clear_marker(out_dir)
    paths = {out_dir / name for name in listed} | {
        p for pattern in OUTPUT_PATTERNS for p in out_dir.glob(pattern)
    }
    removed = []
    for path in sorted(paths):
        if path.is_file() and path.name != MARKER:
            path.unlink()
            removed.append(path)
    shutil.rmtree(out_dir / "datatrove", ignore_errors=True)
    for folder in sorted({p.parent for p in removed} | {p.parent.parent for p in removed}, reverse=True):
        if folder != out_dir and out_dir in folder.parents and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def load_curation(out_dir: str | Path) -> CurationResult:
    """Read a finished curation folder back; IncompleteOutputError when its marker is missing or stale."""
    out_dir = Path(out_dir)
    marker = require_marker(out_dir, "curation folder")
    views = {view: read_jsonl(out_dir / f"{view}.jsonl") for view in VIEWS}
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    files = [out_dir / name for name in marker["files"]]
    return CurationResult(
        views["c0"], views["c1"], views["c2"], out_dir / "ledger.jsonl", report, out_dir, files
    )


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
    entries: list[dict[str, Any]],
    language_results: list[dict[str, Any]],
    n_input: int,
    out_dir: Path,
    run: dict[str, Any],
    text_fields: list[str],
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
        if row["view"] is not None and row["stage"] != Stage.VALIDATE.value:  # an invalid line is no record
            for view in VIEWS[: VIEWS.index(row["view"]) + 1]:
                views[view].append(_with_provenance(entry, view))
        if not row["kept"]:
            reject = {k: row[k] for k in ("id", "source", "line", "reason", "detail", "dup_of")}
            reject["record"] = entry.get("record")
            removed.setdefault((row["lang"], row["stage"]), []).append(reject)

    ledger_path = out_dir / "ledger.jsonl"
    files = [ledger_path, *(out_dir / f"{view}.jsonl" for view in VIEWS)]
    write_jsonl(ledger_path, rows)
    for view in VIEWS:
        write_jsonl(out_dir / f"{view}.jsonl", views[view])
    for (lang, stage), rejects in sorted(removed.items()):
        files.append(out_dir / lang / "removed" / f"{STAGE_NUMBER[stage]}_{stage}.jsonl")
        write_jsonl(files[-1], rejects)

    written = read_jsonl(ledger_path)
    check_ledger(written, n_input, {view: read_jsonl(out_dir / f"{view}.jsonl") for view in VIEWS})
    report = build_report(written, records, run, applied, text_fields)
    files += write_report(report, out_dir)
    return CurationResult(views["c0"], views["c1"], views["c2"], ledger_path, report, out_dir, files)
