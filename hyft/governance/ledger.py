"""The ledger: one row per input record, and the invariants a run must satisfy to count as done.

Row fields: ``id`` (id field, else the line number), ``source``, ``line``, ``lang`` ("und" when it
could not be read; a language-script group such as ``hi-Latn`` for romanised records kept apart), ``kept``,
``reason`` (None when kept, else one closed-set reason), ``stage`` (the stage that dropped it, or "done"),
``view`` (last of c0/c1/c2 counting it; every input line is in C0, the raw input), ``dup_of`` (the
representative of its duplicate cluster: in C2, or with ``evidence.representative_dropped`` naming why it is
not), ``flags``, ``detail`` (file:line and what was wrong, for validate drops), ``evidence`` (LID scores,
Hamming/Jaccard, tokens, perplexity).

Counts in the report are rebuilt from the ledger as written to disk, never summed from worker
counters (datatrove#360: merged stats after a relaunch left out ranks of the earlier run).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from hyft.governance.reasons import Reason, Stage, stage_of, view_of
from hyft.io import atomic_write_jsonl


class LedgerError(RuntimeError):
    """The ledger does not reconcile with the input: the run's outputs must not be trusted."""


def ledger_row(entry: dict[str, Any], decision: dict[str, Any] | None) -> dict[str, Any]:
    """Merge a validate/LID entry with its language-stage decision (None if it never got there)."""
    reason = entry["reason"]
    flags = set(entry["flags"])
    evidence = dict(entry["evidence"])
    dup_of = None
    if decision is not None:
        reason = decision["reason"]
        flags |= set(decision["flags"])
        evidence.update(decision["evidence"])
        dup_of = decision["dup_of"]
    return {
        "id": entry["id"],
        "source": entry["source"],
        "line": entry["line"],
        "lang": entry["lang"],
        "kept": reason is None,
        "reason": reason,
        "stage": stage_of(reason).value,
        "view": view_of(reason),
        "dup_of": dup_of,
        "flags": sorted(flags),
        "detail": entry["detail"],
        "evidence": evidence,
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """UTF-8 JSONL, one object per line, keys in insertion order (deterministic); atomic (hyft.io)."""
    atomic_write_jsonl(path, rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def check_ledger(rows: list[dict[str, Any]], n_input: int, views: dict[str, list[dict[str, Any]]]) -> None:
    """Raise LedgerError unless every invariant holds (governance.md §6).

    - one row per input line, no line twice, and the per-language totals add up to the input;
    - per language: rows = kept + sum of drops; reasons, stages and views consistent;
    - every dup_of names a record of the same language (or language-script group) in the final view C2,
      or one that survived dedup but was dropped after it, and then the row's evidence says
      ``representative_dropped: <its reason>``;
    - the written C0/C1/C2 views hold exactly the records the ledger says they hold, by identity
      (source, line), each once; lines that failed validation count in C0 but are no records, so the
      c0 file leaves them out.
    """
    problems = []
    if len(rows) != n_input:
        problems.append(f"ledger has {len(rows)} rows for {n_input} input records")
    lines = Counter((r["source"], r["line"]) for r in rows)
    twice = [key for key, count in lines.items() if count > 1]
    if twice:
        problems.append(f"{len(twice)} input lines appear more than once, e.g. {twice[0]}")
    per_lang = Counter(r["lang"] for r in rows)
    kept = Counter(r["lang"] for r in rows if r["kept"])
    dropped = Counter(r["lang"] for r in rows if not r["kept"])
    for lang, total in per_lang.items():
        if kept[lang] + dropped[lang] != total:
            problems.append(f"{lang}: {total} rows but {kept[lang]} kept + {dropped[lang]} dropped")
    if sum(per_lang.values()) != n_input:
        problems.append(f"per-language rows sum to {sum(per_lang.values())}, input has {n_input}")
    final = {(r["lang"], json.dumps(r["id"])) for r in rows if r["view"] == "c2"}
    reason_of = {(r["lang"], json.dumps(r["id"])): r["reason"] for r in rows if r["view"] in ("c1", "c2")}
    for r in rows:
        reason = r["reason"]
        if reason is not None and reason not in Reason.__members__.values():
            problems.append(f"line {r['line']}: reason {reason!r} is not in the closed set")
            continue
        if r["kept"] != (reason is None) or r["stage"] != stage_of(reason) or r["view"] != view_of(reason):
            problems.append(f"line {r['line']}: kept/stage/view disagree with reason {reason!r}")
        representative = (r["lang"], json.dumps(r["dup_of"]))
        if r["dup_of"] is not None and representative not in final:
            if representative not in reason_of:
                problems.append(f"line {r['line']}: dup_of {r['dup_of']!r} is not a record kept by dedup")
            elif r["evidence"].get("representative_dropped") != reason_of[representative]:
                problems.append(
                    f"line {r['line']}: dup_of {r['dup_of']!r} was dropped as "
                    f"{reason_of[representative]!r} but the row does not say so (representative_dropped)"
                )
    for view, members in views.items():
        # Identities, not counts: a view that swapped a dropped record for a copy of a kept one has the
        # right per-language counts but the wrong (source, line) pairs. Views nest (c2 within c1 within
        # c0), and "c0" < "c1" < "c2" as strings.
        in_view = [
            r for r in rows if r["view"] is not None and r["view"] >= view and r["stage"] != Stage.VALIDATE
        ]
        expected = Counter((r["source"], r["line"]) for r in in_view)
        found = Counter((m["_provenance"]["source"], m["_provenance"]["line"]) for m in members)
        if expected != found:
            missing, extra = sorted(expected - found, key=str), sorted(found - expected, key=str)
            problems.append(
                f"{view}: view holds {sum(found.values())} records, ledger says {sum(expected.values())}; "
                f"{len(missing)} missing (e.g. {missing[:1]}), {len(extra)} not in the ledger or repeated "
                f"(e.g. {extra[:1]})"
            )
    if problems:
        raise LedgerError("ledger does not reconcile:\n" + "\n".join(f"  - {p}" for p in problems[:20]))
