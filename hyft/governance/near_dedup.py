"""Near-duplicate search within one language: candidates, confirmation, clusters.

Decision rule (governance.md §4), the same for every engine: records a and b are near-duplicates
when, for *every* text field, the SimHash Hamming distance is <= k and the shingle Jaccard is >= J,
and their labels are equal. Pairs that pass on text but differ in label are minimal pairs (XNLI's
"有投票权" vs "没有投票权"): reported, never merged.

Engines only decide which pairs get examined:
- ``simhash``: exact blockwise Hamming over all pairs whose set sizes allow Jaccard >= J (records
  sorted by size; a row only meets rows up to size/J). Quadratic, ~10^8 pairs/s with numpy.
- ``minhash_lsh``: banded MinHash on the same shingles (20 bands x 5 rows: P(candidate) = 0.80 at
  J = 0.6, 0.97 at J = 0.7). Sub-quadratic; can only miss pairs, never add a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyft.governance.shingles import concat_ranges, minhash, shingle_sets, simhash, splitmix64


@dataclass
class FieldShingles:
    """One text field of n records: CSR shingle ids, set sizes (n,) and fingerprints (n,) uint64."""

    offsets: np.ndarray
    ids: np.ndarray
    sizes: np.ndarray
    fingerprints: np.ndarray

    @classmethod
    def build(cls, feature_texts: list[str], batch: int = 200_000) -> FieldShingles:
        parts = [shingle_sets(feature_texts[lo : lo + batch]) for lo in range(0, len(feature_texts), batch)]
        if not parts:
            parts = [shingle_sets([])]
        ids = np.concatenate([p[1] for p in parts])
        sizes = np.concatenate([np.diff(p[0]) for p in parts])
        offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(sizes)
        return cls(offsets, ids, sizes, simhash(offsets, ids))


def pair_jaccard(field: FieldShingles, i: np.ndarray, j: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """Exact Jaccard of the shingle sets of records i[p] and j[p]; float64 (P,). Two empty sets: 1."""
    n = len(field.sizes)
    composite = (np.repeat(np.arange(n, dtype=np.uint64), field.sizes) << np.uint64(40)) | field.ids
    out = np.ones(len(i), dtype=np.float64)
    for lo in range(0, len(i), chunk):
        a, b = i[lo : lo + chunk], j[lo : lo + chunk]
        small = np.where(field.sizes[a] <= field.sizes[b], a, b)  # query the smaller set's members
        large = np.where(small == a, b, a)
        lengths = field.sizes[small]
        members = field.ids[concat_ranges(field.offsets[small], lengths)]
        queries = (np.repeat(large.astype(np.uint64), lengths) << np.uint64(40)) | members
        found = np.searchsorted(composite, queries)
        hit = composite[np.minimum(found, len(composite) - 1)] == queries
        pair_of_query = np.repeat(np.arange(len(a)), lengths)
        inter = np.bincount(pair_of_query, weights=hit, minlength=len(a))
        union = field.sizes[a] + field.sizes[b] - inter
        out[lo : lo + chunk] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def size_order(fingerprints: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records sorted by (set size, index): the order, and fingerprints and sizes (float) in that order."""
    order = np.lexsort((np.arange(len(sizes)), sizes))
    return order, fingerprints[order], sizes[order].astype(np.float64)


def exhaustive_block(
    order: np.ndarray,
    fps: np.ndarray,
    ss: np.ndarray,
    lo: int,
    hi: int,
    max_hamming: int,
    min_jaccard: float,
    tile: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose smaller-sized member is at sorted rows [lo, hi): Hamming <= k, sizes allow Jaccard >= J.

    The inputs come from ``size_order``. Row blocks are disjoint, so the blocks of any partition of
    the rows together give each pair exactly once (the disk path splits them across tasks).
    """
    end = int(np.searchsorted(ss, ss[hi - 1] / min_jaccard + 1e-9, side="right"))
    found_i, found_j = [], []
    for t0 in range(lo, end, tile):
        t1 = min(t0 + tile, end)
        dist = np.bitwise_count(fps[lo:hi, None] ^ fps[None, t0:t1])
        rows, cols = np.nonzero(dist <= max_hamming)
        gi, gj = rows + lo, cols + t0
        keep = (gj > gi) & (ss[gi] >= min_jaccard * ss[gj] - 1e-9)
        found_i.append(order[gi[keep]])
        found_j.append(order[gj[keep]])
    if not found_i:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a, b = np.concatenate(found_i), np.concatenate(found_j)
    return np.minimum(a, b), np.maximum(a, b)


def exhaustive_candidates(
    fingerprints: np.ndarray,
    sizes: np.ndarray,
    max_hamming: int,
    min_jaccard: float,
    block: int = 1024,
    tile: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) within Hamming <= k whose set sizes allow Jaccard >= J."""
    order, fps, ss = size_order(fingerprints, sizes)
    parts = [
        exhaustive_block(order, fps, ss, lo, min(lo + block, len(ss)), max_hamming, min_jaccard, tile)
        for lo in range(0, len(ss), block)
    ]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def band_keys(offsets: np.ndarray, ids: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """(n, bands) uint64: one key per LSH band of each record's MinHash signature (rows values mixed)."""
    signature = minhash(offsets, ids, bands * rows, seed)
    keys = np.empty((len(signature), bands), dtype=np.uint64)
    for band in range(bands):
        key = splitmix64(signature[:, band * rows])
        for r in range(1, rows):
            key = splitmix64(key ^ signature[:, band * rows + r])
        keys[:, band] = key
    return keys


def group_pairs(order: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (min, max) of ``order`` members that share a ``group`` value (``group`` sorted)."""
    size = np.bincount(group)[group] if len(group) else group
    order, group = order[size > 1], group[size > 1]  # singletons give no pairs
    found_i, found_j = [], []
    shift = 1
    while shift < len(order):  # pair each member with the one `shift` places later in its group
        same = group[:-shift] == group[shift:]
        if not same.any():
            break
        a, b = order[:-shift][same], order[shift:][same]
        found_i.append(np.minimum(a, b))
        found_j.append(np.maximum(a, b))
        shift += 1
    if not found_i:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)


def lsh_candidates(field: FieldShingles, bands: int, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) sharing at least one band of their MinHash signatures."""
    n = len(field.sizes)
    keys = band_keys(field.offsets, field.ids, bands, rows, seed)
    codes = []
    for band in range(bands):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_key = keys[order, band]
        group_start = np.ones(n, dtype=bool)
        group_start[1:] = sorted_key[1:] != sorted_key[:-1]
        a, b = group_pairs(order, np.cumsum(group_start))
        codes.append(a * n + b)
    if not codes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    unique = np.unique(np.concatenate(codes))
    return unique // n, unique % n


@dataclass
class NearPairs:
    """Confirmed pairs: ``dup_*`` (same label, merged) and ``minimal_*`` (different label, kept)."""

    dup_i: np.ndarray
    dup_j: np.ndarray
    hamming: np.ndarray  # worst field, per dup pair
    jaccard: np.ndarray  # worst field, per dup pair
    minimal_i: np.ndarray
    minimal_j: np.ndarray
    candidates: int

    @classmethod
    def concat(cls, parts: list[NearPairs]) -> NearPairs:
        """The pairs of several disjoint candidate sets (the disk path's partitions), in order."""
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty, np.zeros(0, dtype=np.float64), empty, empty, 0)
        join = [
            np.concatenate([getattr(p, name) for p in parts])
            for name in ("dup_i", "dup_j", "hamming", "jaccard", "minimal_i", "minimal_j")
        ]
        return cls(*join, sum(p.candidates for p in parts))


@dataclass
class NearResult:
    """What the near step hands to dedup: the engine that proposed candidates and the confirmed pairs.

    Indices are positions among the language's exact-dedup survivors (sorted by record key).
    """

    engine: str
    pairs: NearPairs


def resolve_engine(engine: str, n: int, exhaustive_limit: int) -> str:
    """``auto`` -> simhash up to ``exhaustive_limit`` records, else minhash_lsh."""
    if engine == "auto":
        return "simhash" if n <= exhaustive_limit else "minhash_lsh"
    return engine


def search_field(size_totals: list[int]) -> int:
    """The field with the largest shingle sets (total over records; ties: the first field).

    It separates unrelated records best. Integer totals, so every executor picks the same field.
    """
    return max(range(len(size_totals)), key=lambda f: (size_totals[f], -f))


def memory_near(
    feature_fields: list[list[str]],
    label_codes: np.ndarray,
    engine: str,
    hamming: int,
    jaccard: float,
    label_aware: bool,
    exhaustive_limit: int,
    bands: int,
    rows: int,
    seed: int,
) -> NearResult:
    """The in-memory near step: ``feature_fields[f][r]`` is field f of survivor r as feature text."""
    shingled = [FieldShingles.build(texts) for texts in feature_fields]
    search = search_field([int(field.sizes.sum()) for field in shingled])
    engine = resolve_engine(engine, len(label_codes), exhaustive_limit)
    if engine == "simhash":
        i, j = exhaustive_candidates(shingled[search].fingerprints, shingled[search].sizes, hamming, jaccard)
    else:
        i, j = lsh_candidates(shingled[search], bands, rows, seed)
    return NearResult(engine, confirm_pairs(i, j, shingled, label_codes, hamming, jaccard, label_aware))


def confirm_pairs(
    i: np.ndarray,
    j: np.ndarray,
    fields: list[FieldShingles],
    labels: np.ndarray,
    max_hamming: int,
    min_jaccard: float,
    label_aware: bool,
) -> NearPairs:
    """Apply the decision rule to candidate pairs (every field near-equal, then labels)."""
    candidates = len(i)
    hamming = np.zeros(len(i), dtype=np.int64)
    for field in fields:
        distance = np.bitwise_count(field.fingerprints[i] ^ field.fingerprints[j]).astype(np.int64)
        hamming = np.maximum(hamming, distance)
    keep = hamming <= max_hamming
    i, j, hamming = i[keep], j[keep], hamming[keep]
    jaccard = np.ones(len(i), dtype=np.float64)
    for field in fields:
        jaccard = np.minimum(jaccard, pair_jaccard(field, i, j))
        keep = jaccard >= min_jaccard
        i, j, hamming, jaccard = i[keep], j[keep], hamming[keep], jaccard[keep]
    same_label = labels[i] == labels[j] if label_aware else np.ones(len(i), dtype=bool)
    return NearPairs(
        i[same_label],
        j[same_label],
        hamming[same_label],
        jaccard[same_label],
        i[~same_label],
        j[~same_label],
        candidates,
    )


def sparse_clusters(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over pairs, holding only the records that are in a pair (memory: O(pairs), not O(n)).

    Returns (nodes, roots): the sorted records met in a pair and each one's root, its cluster's
    smallest index. Records in no pair are their own root.
    """
    nodes = np.unique(np.concatenate([i, j])) if len(i) else np.zeros(0, dtype=np.int64)
    parent = list(range(len(nodes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(np.searchsorted(nodes, i).tolist(), np.searchsorted(nodes, j).tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # nodes are sorted: the smaller local id is the smaller index
    roots = nodes[np.array([find(x) for x in range(len(nodes))], dtype=np.int64)] if len(nodes) else nodes
    return nodes.astype(np.int64), roots.astype(np.int64)


def clusters(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Union-find over pairs; returns root (n,) where each root is its cluster's smallest index."""
    root = np.arange(n, dtype=np.int64)
    nodes, roots = sparse_clusters(i, j)
    root[nodes] = roots
    return root
