"""Dedup stage for one language (C1, part 2): exact, then normalised, then near duplicates.

Two exact keys per record, both BLAKE2b-128 over the text fields joined with U+001F in config
order (governance.md §4): ``raw`` (the NFC text) gives `exact_duplicate`, ``canonical`` (NFKC,
casefold, punctuation map, spaces) gives `normalized_duplicate`. Then near duplicates
(near_dedup.py) among the survivors. The kept member of every group is the record with the
smallest sort key, and every ``dup_of`` points at a record that survives all three steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyft.governance.config import DedupSettings
from hyft.governance.near_dedup import (
    FieldShingles,
    clusters,
    confirm_pairs,
    exhaustive_candidates,
    lsh_candidates,
)
from hyft.governance.reasons import Flag, Reason
from hyft.governance.shingles import record_key
from hyft.governance.text import canonical_text, feature_text


@dataclass
class DedupOutcome:
    """Per record (same order as the input): reason or None, representative index, evidence, flags."""

    reasons: list[Reason | None]
    representative: list[int]  # index of the record this one duplicates (itself when kept)
    evidence: list[dict[str, Any]]
    flags: list[set[str]]
    stats: dict[str, Any] = field(default_factory=dict)


def _exact_groups(keys: list[bytes], alive: list[bool]) -> dict[int, int]:
    """Map each later member of an equal-key group (among ``alive``) to the group's first index."""
    first: dict[bytes, int] = {}
    duplicate_of: dict[int, int] = {}
    for index, key in enumerate(keys):
        if not alive[index]:
            continue
        if key in first:
            duplicate_of[index] = first[key]
        else:
            first[key] = index
    return duplicate_of


def dedup_language(fields: list[list[str]], labels: list[str | None], settings: DedupSettings, seed: int) -> DedupOutcome:
    """Dedup the records of one language; ``fields[r]`` holds record r's cleaned text fields.

    Records must already be sorted by record key: index order decides which copy is kept.
    """
    n = len(fields)
    reasons: list[Reason | None] = [None] * n
    representative = list(range(n))
    evidence: list[dict[str, Any]] = [{} for _ in range(n)]
    flags: list[set[str]] = [set() for _ in range(n)]
    alive = [True] * n
    stats: dict[str, Any] = {}

    steps = []
    if settings.exact:
        steps.append((Reason.EXACT_DUPLICATE, [record_key(f) for f in fields]))
    if settings.normalized:
        steps.append((Reason.NORMALIZED_DUPLICATE, [record_key([canonical_text(t) for t in f]) for f in fields]))
    for reason, keys in steps:
        for index, first in _exact_groups(keys, alive).items():
            reasons[index], representative[index], alive[index] = reason, first, False
            if labels[index] != labels[first]:
                flags[first].add(Flag.DUPLICATE_LABEL_CONFLICT)
                flags[index].add(Flag.DUPLICATE_LABEL_CONFLICT)

    survivors = np.flatnonzero(alive)
    stats["engine"] = None
    if settings.near and len(survivors) > 1:
        _near(fields, labels, settings, seed, survivors, reasons, representative, evidence, flags, stats)

    # Resolve chains (an exact copy of a record that is itself a near duplicate) to the final root.
    for index in range(n):
        root = representative[index]
        while representative[root] != root:
            root = representative[root]
        representative[index] = root
    return DedupOutcome(reasons, representative, evidence, flags, stats)


def _near(
    fields: list[list[str]], labels: list[str | None], settings: DedupSettings, seed: int,
    survivors: np.ndarray, reasons: list, representative: list, evidence: list, flags: list, stats: dict,
) -> None:
    """Near-duplicate step over the survivors of exact dedup (updates the outcome lists in place)."""
    width = len(fields[0])
    shingled = [FieldShingles.build([feature_text(fields[r][f]) for r in survivors]) for f in range(width)]
    codes = {label: code for code, label in enumerate(sorted({str(labels[r]) for r in survivors}))}
    label_codes = np.array([codes[str(labels[r])] for r in survivors], dtype=np.int64)
    # Search on the field with the largest sets: it separates unrelated records best.
    search = max(range(width), key=lambda f: (float(shingled[f].sizes.mean()), -f))
    engine = settings.engine
    if engine == "auto":
        engine = "simhash" if len(survivors) <= settings.exhaustive_limit else "minhash_lsh"
    if engine == "simhash":
        i, j = exhaustive_candidates(
            shingled[search].fingerprints, shingled[search].sizes, settings.hamming, settings.jaccard
        )
    else:
        i, j = lsh_candidates(shingled[search], settings.lsh_bands, settings.lsh_rows, seed)
    pairs = confirm_pairs(i, j, shingled, label_codes, settings.hamming, settings.jaccard, settings.label_aware)
    root = clusters(len(survivors), pairs.dup_i, pairs.dup_j)
    # Evidence for each merged record: its confirmed pair with the smallest partner (either side).
    best: dict[int, tuple[int, int, float]] = {}
    edges = zip(pairs.dup_i.tolist(), pairs.dup_j.tolist(), pairs.hamming.tolist(), pairs.jaccard.tolist(), strict=True)
    for a, b, ham, jac in edges:
        for record, partner in ((a, b), (b, a)):
            if record not in best or partner < best[record][0]:
                best[record] = (partner, ham, jac)
    for local, record in enumerate(survivors.tolist()):
        if root[local] != local:
            reasons[record] = Reason.NEAR_DUPLICATE
            representative[record] = int(survivors[root[local]])
            partner, ham, jac = best[local]  # every non-root record has at least one confirmed pair
            evidence[record] = {"near_match": int(survivors[partner]), "hamming": ham, "jaccard": round(jac, 4)}
    for a, b in zip(pairs.minimal_i.tolist(), pairs.minimal_j.tolist(), strict=True):
        flags[int(survivors[a])].add(Flag.NEAR_PAIR_LABEL_DIFFERS)
        flags[int(survivors[b])].add(Flag.NEAR_PAIR_LABEL_DIFFERS)
    sizes = np.bincount(root)
    stats.update(
        engine=engine, candidates=pairs.candidates, confirmed_pairs=len(pairs.dup_i),
        label_differing_pairs=len(pairs.minimal_i), clusters=int((sizes > 1).sum()),
        largest_cluster=int(sizes.max()) if len(sizes) else 0,
    )
