"""The two plain functions every executor runs, in this order:

1. ``validate_and_identify`` (map, any shard): validate + decontaminate + LID for each input item -> entries.
2. ``dedup_and_filter_language`` (one language or language-script group, e.g. hi-Latn, at a time): the
   deferred LID decisions of an adaptive tau, exact/near dedup, then length and perplexity, on that group's
   LID survivors sorted by record key -> one decision per record.

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
from hyft.governance.dedup import dedup_language, exact_dedup, near_inputs, wants_near
from hyft.governance.languages import script_tag
from hyft.governance.lid import LID_CHUNK, Detectors, LidDecision, adaptive_decisions, identify_records
from hyft.governance.near_dedup import NearResult
from hyft.governance.quality import PplScorer, quality_language
from hyft.governance.reasons import Flag, Reason
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


def validate_and_identify(
    items: Iterable[tuple[str, int, Any]],
    config: CurationConfig,
    detectors: Detectors,
    total: int | None = None,
    progress: bool = False,
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
    """The evaluation rows of ``config.decontaminate`` (files, then rows) indexed;
    None when there are none."""
    settings = config.decontaminate
    if not settings.active:
        return None
    rows = [
        row for path in settings.files for row in read_eval_file(path, config.text_fields, config.id_field)
    ]
    rows += [(row.id, row.texts) for row in settings.rows]
    return EvalIndex(rows, settings.ngram, settings.ngram_dense)


def _identify(entries: list[dict[str, Any]], config: CurationConfig, detectors: Detectors) -> None:
    """Fill LID reason, flags and evidence into valid entries, in place; apply the romanised policy."""
    records = [(entry["fields"], entry["lang"]) for entry in entries]
    outcomes = identify_records(records, config.text_fields, config.lid, detectors)
    for entry, (reason, flags, evidence) in zip(entries, outcomes, strict=True):
        entry["evidence"]["lid"] = evidence
        entry["flags"] = sorted({*entry["flags"], *flags})  # validate's flags (mojibake_fixed) stay
        if reason is not None:
            entry["reason"] = reason.value
        elif Flag.ROMANISED.value in flags:
            _romanised(entry, config)


def _romanised(entry: dict[str, Any], config: CurationConfig) -> None:
    """Tag a romanised record <lang>-Latn and apply ``lid.romanised_policy`` (config.py says what each does).

    A record is romanised when one of its fields is (the others in the language's own script): a Devanagari
    premise with a romanised hypothesis is not a plain `hi` example either.
    """
    tag = script_tag(entry["lang"])
    entry["evidence"]["script_tag"] = tag
    policy = config.lid.romanised_policy
    if policy == "drop":
        entry["reason"] = Reason.ROMANISED.value
    elif policy == "keep":
        entry["lang"] = tag  # its own group: dedup, quality and the report run per group
        entry.setdefault("curated", {})[config.lang_field] = tag  # C1/C2 records carry the tag as language


def lid_survivors_by_language(entries: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group entries that passed validate and LID by language, each list sorted by record key."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry["reason"] is None:
            groups.setdefault(entry["lang"], []).append(entry)
    for members in groups.values():
        members.sort(key=lambda e: e["key"])
    return dict(sorted(groups.items()))


def dedup_and_filter_language(
    lang: str,
    entries: list[dict[str, Any]],
    config: CurationConfig,
    ppl_scorer: PplScorer | None = None,
    near: NearResult | None = None,
) -> dict[str, Any]:
    """Dedup and quality decisions for one language's LID survivors (``entries`` sorted by key).

    ``near``: the near-dedup pairs when the distributed disk stages computed them (datatrove_steps).
    Returns {"lang", "decisions": {line: {reason, dup_of, evidence, flags}}, "stats"}; JSON-ready.
    """
    with cyclic_gc_paused():
        return _dedup_and_filter_language(lang, entries, config, ppl_scorer, near)


def _adaptive_lid(
    lang: str, entries: list[dict[str, Any]], config: CurationConfig
) -> tuple[float, dict[str, dict[str, Any]], dict[int, LidDecision], list[dict[str, Any]]]:
    """Deferred LID (adaptive tau) first: it needs the whole group's confidences, and drops before dedup.

    Returns (tau, decisions of the dropped, LID updates by survivor position, survivors).
    """
    tau, outcomes = adaptive_decisions(
        lang, [e["evidence"].get("lid", {}) for e in entries], config.text_fields, config.lid
    )
    decisions: dict[str, dict[str, Any]] = {}
    lid_updates: dict[int, LidDecision] = {}
    survivors = []
    for entry, outcome in zip(entries, outcomes, strict=True):
        if outcome is not None and outcome.reason is not None:
            decisions[str(entry["line"])] = {
                "reason": outcome.reason.value,
                "dup_of": None,
                "evidence": {"lid": outcome.evidence},
                "flags": outcome.flags,
            }
            continue
        if outcome is not None:
            lid_updates[len(survivors)] = outcome
        survivors.append(entry)
    return tau, decisions, lid_updates, survivors


def near_input(
    lang: str, entries: list[dict[str, Any]], config: CurationConfig
) -> tuple[list[list[str]], list[int]] | None:
    """What the near step of ``lang`` examines (feature texts per field, label codes);
    None when it does not run.

    The datatrove disk stages write this out, compute the near pairs across tasks, and hand them
    back to ``dedup_and_filter_language(near=...)``, which recomputes the cheap steps before it.
    """
    with cyclic_gc_paused():
        survivors = _adaptive_lid(lang, entries, config)[3]
        fields = [e["fields"] for e in survivors]
        labels = [e["label"] for e in survivors]
        outcome = exact_dedup(fields, labels, config.dedup)
        if not wants_near(outcome, config.dedup):
            return None
        texts, codes = near_inputs(fields, labels, outcome)
        return texts, codes.tolist()


def _dedup_and_filter_language(
    lang: str,
    entries: list[dict[str, Any]],
    config: CurationConfig,
    ppl_scorer: PplScorer | None,
    near: NearResult | None,
) -> dict[str, Any]:
    tau, decisions, lid_updates, entries = _adaptive_lid(lang, entries, config)
    fields = [e["fields"] for e in entries]
    labels = [e["label"] for e in entries]
    dedup = dedup_language(fields, labels, config.dedup, config.seed, config.near_dedup, near)
    c1 = []
    for index, entry in enumerate(entries):
        reason = dedup.reasons[index]
        decision: dict[str, Any] = {
            "reason": reason.value if reason else None,
            "dup_of": None,
            "evidence": dict(dedup.evidence[index]),
            "flags": sorted(dedup.flags[index]) if dedup.flags[index] else [],
        }
        if index in lid_updates:
            decision["evidence"]["lid"] = lid_updates[index].evidence
            decision["flags"] = sorted({*decision["flags"], *lid_updates[index].flags})
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
    # dup_of names the cluster's representative. Only the representative of a cluster reaches C2's
    # filters, so when they drop it no member survives: say so on every member rather than re-admit one.
    for index, entry in enumerate(entries):
        if dedup.reasons[index] is not None:
            representative = decisions[str(entries[dedup.representative[index]]["line"])]
            if representative["reason"] is not None:
                decisions[str(entry["line"])]["evidence"]["representative_dropped"] = representative["reason"]
    stats = {"lid_threshold": tau, "dedup": dedup.stats, "quality": quality.stats, "pool_c1": len(c1)}
    return {"lang": lang, "decisions": decisions, "stats": stats}
