"""Dedup stage for one language (C1, part 2): exact, then normalised, then near duplicates.

Two exact keys per record, both BLAKE2b-128 over the text fields joined with U+001F in config
order (governance.md §4): ``raw`` (the NFC text) gives `exact_duplicate`, ``canonical`` (NFKC,
casefold, punctuation map, spaces) gives `normalized_duplicate`. Then near duplicates
(near_dedup.py, or near_dedup_disk.py for pools that do not fit in memory) among the survivors. The kept
member of every group is the record with the smallest sort key, and every ``dup_of`` points at a record that
survives all three steps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyft.governance.config import DedupSettings, NearDedupScale
from hyft.governance.near_dedup import NearResult, memory_near, sparse_clusters
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
    survivors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # after exact dedup


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


def exact_dedup(fields: list[list[str]], labels: list[str | None], settings: DedupSettings) -> DedupOutcome:
    """Exact and normalised duplicates; ``outcome.survivors`` are the indices near-dedup then examines.

    Records must already be sorted by record key: index order decides which copy is kept.
    """
    n = len(fields)
    outcome = DedupOutcome([None] * n, list(range(n)), [{} for _ in range(n)], [set() for _ in range(n)])
    alive = [True] * n
    steps = []
    if settings.exact:
        steps.append((Reason.EXACT_DUPLICATE, [record_key(f) for f in fields]))
    if settings.normalized:
        steps.append(
            (Reason.NORMALIZED_DUPLICATE, [record_key([canonical_text(t) for t in f]) for f in fields])
        )
    for reason, keys in steps:
        for index, first in _exact_groups(keys, alive).items():
            outcome.reasons[index], outcome.representative[index], alive[index] = reason, first, False
            if labels[index] != labels[first]:
                outcome.flags[first].add(Flag.DUPLICATE_LABEL_CONFLICT)
                outcome.flags[index].add(Flag.DUPLICATE_LABEL_CONFLICT)
    outcome.survivors = np.flatnonzero(alive)
    outcome.stats["engine"] = None
    return outcome


def wants_near(outcome: DedupOutcome, settings: DedupSettings) -> bool:
    """Whether the near step runs: it is on and at least two records survived exact dedup."""
    return settings.near and len(outcome.survivors) > 1


def label_code(label: object) -> int:
    """A label as a 63-bit integer (BLAKE2b of its text): only equality matters, in every executor."""
    return int.from_bytes(hashlib.blake2b(str(label).encode("utf-8"), digest_size=8).digest(), "little") >> 1


def near_inputs(
    fields: list[list[str]], labels: list[str | None], outcome: DedupOutcome
) -> tuple[list[list[str]], np.ndarray]:
    """The near step's input: feature texts per field (``[f][r]``) and label codes of the survivors."""
    survivors = outcome.survivors.tolist()
    width = len(fields[0]) if fields else 0
    texts = [[feature_text(fields[r][f]) for r in survivors] for f in range(width)]
    return texts, np.array([label_code(labels[r]) for r in survivors], dtype=np.int64)


def near_mode(n: int, scale: NearDedupScale | None) -> str:
    """memory or disk for a language with ``n`` exact-dedup survivors."""
    if scale is None or scale.mode == "memory":
        return "memory"
    if scale.mode == "disk":
        return "disk"
    return "disk" if n > scale.disk_above else "memory"


def dedup_language(
    fields: list[list[str]],
    labels: list[str | None],
    settings: DedupSettings,
    seed: int,
    scale: NearDedupScale | None = None,
    near: NearResult | None = None,
) -> DedupOutcome:
    """Dedup the records of one language; ``fields[r]`` holds record r's cleaned text fields.

    Records must already be sorted by record key: index order decides which copy is kept. The near
    step runs in memory or on disk as ``scale`` says (same decisions); ``near`` passes a result
    computed elsewhere (the datatrove executors' distributed disk stages).
    """
    outcome = exact_dedup(fields, labels, settings)
    if wants_near(outcome, settings):
        if near is None:
            texts, codes = near_inputs(fields, labels, outcome)
            if near_mode(len(codes), scale) == "disk":
                from hyft.governance.near_dedup_disk import near_in_process

                near = near_in_process(
                    zip(zip(*texts, strict=True), codes.tolist(), strict=True),
                    len(codes),
                    settings,
                    seed,
                    scale or NearDedupScale(mode="disk"),
                )
            else:
                near = memory_near(
                    texts,
                    codes,
                    settings.engine,
                    settings.hamming,
                    settings.jaccard,
                    settings.label_aware,
                    settings.exhaustive_limit,
                    settings.lsh_bands,
                    settings.lsh_rows,
                    seed,
                )
        apply_near(outcome, near)
    resolve_representatives(outcome)
    return outcome


def resolve_representatives(outcome: DedupOutcome) -> None:
    """Resolve chains (an exact copy of a record that is itself a near duplicate) to the final root."""
    representative = outcome.representative
    for index in range(len(representative)):
        root = representative[index]
        while representative[root] != root:
            root = representative[root]
        representative[index] = root


def apply_near(outcome: DedupOutcome, near: NearResult) -> None:
    """Turn confirmed near pairs into reasons, representatives, evidence, flags and stats (in place)."""
    survivors, pairs = outcome.survivors, near.pairs
    nodes, roots = sparse_clusters(pairs.dup_i, pairs.dup_j)
    # Evidence for each merged record: its confirmed pair with the smallest partner (either side).
    best: dict[int, tuple[int, int, float]] = {}
    edges = zip(
        pairs.dup_i.tolist(),
        pairs.dup_j.tolist(),
        pairs.hamming.tolist(),
        pairs.jaccard.tolist(),
        strict=True,
    )
    for a, b, ham, jac in edges:
        for record, partner in ((a, b), (b, a)):
            if record not in best or partner < best[record][0]:
                best[record] = (partner, ham, jac)
    for local, root in zip(nodes.tolist(), roots.tolist(), strict=True):
        if root != local:
            record = int(survivors[local])
            outcome.reasons[record] = Reason.NEAR_DUPLICATE
            outcome.representative[record] = int(survivors[root])
            partner, ham, jac = best[local]  # every non-root record has at least one confirmed pair
            outcome.evidence[record] = {
                "near_match": int(survivors[partner]),
                "hamming": ham,
                "jaccard": round(jac, 4),
            }
    for a, b in zip(pairs.minimal_i.tolist(), pairs.minimal_j.tolist(), strict=True):
        outcome.flags[int(survivors[a])].add(Flag.NEAR_PAIR_LABEL_DIFFERS)
        outcome.flags[int(survivors[b])].add(Flag.NEAR_PAIR_LABEL_DIFFERS)
    cluster_sizes = np.unique(roots, return_counts=True)[1] if len(roots) else np.zeros(0, dtype=np.int64)
    outcome.stats.update(
        engine=near.engine,
        candidates=pairs.candidates,
        confirmed_pairs=len(pairs.dup_i),
        label_differing_pairs=len(pairs.minimal_i),
        clusters=len(cluster_sizes),
        largest_cluster=int(cluster_sizes.max()) if len(cluster_sizes) else 1,
    )
