"""The two plain functions every executor runs, in this order:

1. ``annotate`` (map, any shard): validate + decontaminate + LID for each input item -> entries.
2. ``decide_language`` (one language at a time): exact/near dedup, then length and perplexity, on
   that language's LID survivors sorted by record key -> one decision per record.

``assemble`` (assembly.py) then merges entries and decisions into the ledger, views and report. The
in-process runner and the datatrove steps call exactly these functions, which is why their outputs
are byte-identical.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

from hyft.governance.config import CurationConfig
from hyft.governance.decontam import EvalIndex, read_eval_file
from hyft.governance.dedup import dedup_language
from hyft.governance.lid import LID_CHUNK, Detectors, identify_records
from hyft.governance.quality import PplScorer, quality_language
from hyft.governance.reasons import Reason
from hyft.governance.validate import validate_item


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk stage (reference counting still frees memory).

    The stages build one small acyclic structure per record (entry, evidence, flags) and keep them all;
    every automatic collection then re-scans everything kept so far. On 20,000 short records that cost
    ~10 µs per record in LID alone (55.9 → 45.0 µs). The collector is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def annotate(
    items: Iterable[tuple[str, int, Any]], config: CurationConfig, detectors: Detectors,
    total: int | None = None, progress: bool = False,
) -> list[dict[str, Any]]:
    """Validate, decontaminate and language-identify each (source, line, raw) item; one entry per item.

    Valid entries that copy no evaluation row are language-identified a chunk of ``LID_CHUNK`` at a
    time (``identify_records``).
    """
    index = eval_index(config)
    entries: list[dict[str, Any]] = []
    bar = tqdm(items, total=total, desc="validate+LID", unit="rec", disable=not progress, mininterval=1.0)
    with cyclic_gc_paused():
        waiting: list[dict[str, Any]] = []
        for source, line, raw in bar:
            entry = validate_item(source, line, raw, config)
            entries.append(entry)
            if entry["reason"] is None and index is not None:
                match = index.match(entry["fields"])
                if match is not None:
                    entry["reason"] = Reason.EVAL_CONTAMINATION.value
                    entry["evidence"]["contamination"] = match
            if entry["reason"] is None:
                waiting.append(entry)
                if len(waiting) == LID_CHUNK:
                    _identify(waiting, config, detectors)
                    waiting = []
        _identify(waiting, config, detectors)
    return entries


def eval_index(config: CurationConfig) -> EvalIndex | None:
    """The evaluation rows of ``config.decontaminate`` (files, then rows) indexed; None when there are none."""
    settings = config.decontaminate
    if not settings.active:
        return None
    rows = [row for path in settings.files for row in read_eval_file(path, config.text_fields, config.id_field)]
    rows += [(row.id, row.texts) for row in settings.rows]
    return EvalIndex(rows, settings.ngram, settings.ngram_dense)


def _identify(entries: list[dict[str, Any]], config: CurationConfig, detectors: Detectors) -> None:
    """Fill LID reason, flags and evidence into valid entries, in place."""
    records = [(entry["fields"], entry["lang"]) for entry in entries]
    outcomes = identify_records(records, config.text_fields, config.lid, detectors)
    for entry, (reason, flags, evidence) in zip(entries, outcomes, strict=True):
        entry["evidence"]["lid"] = evidence
        entry["flags"] = flags
        if reason is not None:
            entry["reason"] = reason.value


def lid_survivors_by_language(entries: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group entries that passed validate and LID by language, each list sorted by record key."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry["reason"] is None:
            groups.setdefault(entry["lang"], []).append(entry)
    for members in groups.values():
        members.sort(key=lambda e: e["key"])
    return dict(sorted(groups.items()))


def decide_language(
    lang: str, entries: list[dict[str, Any]], config: CurationConfig, ppl_scorer: PplScorer | None = None
) -> dict[str, Any]:
    """Dedup and quality decisions for one language's LID survivors (``entries`` sorted by key).

    Returns {"lang", "decisions": {line: {reason, dup_of, evidence, flags}}, "stats"}; JSON-ready.
    """
    with cyclic_gc_paused():
        return _decide_language(lang, entries, config, ppl_scorer)


def _decide_language(
    lang: str, entries: list[dict[str, Any]], config: CurationConfig, ppl_scorer: PplScorer | None
) -> dict[str, Any]:
    fields = [e["fields"] for e in entries]
    labels = [e["label"] for e in entries]
    dedup = dedup_language(fields, labels, config.dedup, config.seed)
    decisions: dict[str, dict[str, Any]] = {}
    c1 = []
    for index, entry in enumerate(entries):
        reason = dedup.reasons[index]
        decision: dict[str, Any] = {
            "reason": reason.value if reason else None, "dup_of": None,
            "evidence": dict(dedup.evidence[index]), "flags": sorted(dedup.flags[index]) if dedup.flags[index] else [],
        }
        if reason is not None:
            decision["dup_of"] = entries[dedup.representative[index]]["id"]
            if "near_match" in decision["evidence"]:
                decision["evidence"]["near_match"] = entries[decision["evidence"]["near_match"]]["id"]
        else:
            c1.append(index)
        decisions[str(entry["line"])] = decision
    quality = quality_language([fields[i] for i in c1], lang, config.quality, ppl_scorer)
    for position, index in enumerate(c1):
        decision = decisions[str(entries[index]["line"])]
        reason = quality.reasons[position]
        decision["reason"] = reason.value if reason else None
        decision["evidence"].update(quality.evidence[position])
        if quality.flags[position]:
            decision["flags"] = sorted(set(decision["flags"]) | quality.flags[position])
    threshold = config.lid.threshold_per_language.get(lang, config.lid.threshold)
    stats = {"lid_threshold": threshold, "dedup": dedup.stats, "quality": quality.stats, "pool_c1": len(c1)}
    return {"lang": lang, "decisions": decisions, "stats": stats}
