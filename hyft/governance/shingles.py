"""Script-aware character shingles, SimHash fingerprints, MinHash signatures and exact keys.

Shingles (governance.md §4): the feature text is cut into script runs. Han/Kana/Thai/Lao/Khmer/
Myanmar runs give character 2-grams with the spaces between them removed; every other run gives
character 3-grams, single spaces included (so 3-grams span word boundaries and keep the run's edge
spaces). A run shorter than n is one shingle. Sets, unweighted.

Each shingle (at most three code points, each < 2**21) is packed into one 64-bit integer with a
kind tag, passed through the splitmix64 finaliser (a bijection) and cut to a 40-bit id: the
Jaccard computed on ids is the Jaccard of the shingle sets unless two of ~100 shingles collide
(odds ~1e-8 per pair of texts). Everything is vectorised over a batch of texts with numpy, and
fixed: no Python ``hash()``, no seed.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import regex

_DENSE_RUN = regex.compile(
    r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\u30fc\uff70]+"
)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_DENSE_TAG = np.uint64(1 << 63)
_ID_BITS = 40
_ID_SHIFT = 64 - _ID_BITS  # texts per batch < 2**24
_ID_DROP = np.uint64(64 - _ID_BITS)
_ID_MASK = np.uint64((1 << _ID_BITS) - 1)


@lru_cache(maxsize=1)
def dense_table() -> np.ndarray:
    """Bool array over all code points: True for characters shingled as 2-grams (no word spaces)."""
    table = np.zeros(0x110000, dtype=bool)
    everything = "".join(map(chr, range(0x110000)))
    for match in _DENSE_RUN.finditer(everything):
        table[match.start() : match.end()] = True
    return table


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fixed bijection of uint64 that mixes every input bit."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def shingle_sets(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Shingle ids of each (already feature-normalised) text, as CSR arrays.

    Returns ``offsets`` (n+1,) int64 and ``ids`` (M,) uint64: text t owns
    ``ids[offsets[t]:offsets[t+1]]``, sorted and unique. An id is the top 40 bits of the mixed
    packed shingle, so two different shingles share an id with odds ~1e-12 (one sort of a single
    64-bit key per batch instead of a two-key lexsort; ~2x faster).
    """
    n = len(texts)
    if n == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    if n >= 1 << _ID_SHIFT:
        raise ValueError(f"at most {1 << _ID_SHIFT} texts per batch, got {n}")
    joined = "\x00".join(texts) + "\x00"
    cp32 = np.frombuffer(joined.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    dense = dense_table()[cp32]
    # Spaces between two dense characters do not count: "我 爱 你" shingles like "我爱你".
    between = np.zeros(len(cp32), dtype=bool)
    between[1:-1] = (cp32[1:-1] == 32) & dense[:-2] & dense[2:]
    if between.any():
        cp32, dense = cp32[~between], dense[~between]
    sep = cp32 == 0
    kind = dense.astype(np.int8) + np.int8(2)  # 2: spaced run, 3: dense run, 0: text separator
    kind[sep] = 0
    starts = np.ones(len(kind), dtype=bool)
    starts[1:] = kind[1:] != kind[:-1]
    cp = cp32.astype(np.uint64)
    tail1 = np.zeros(len(kind), dtype=bool)  # position i+1 continues the run of i
    tail1[:-1] = ~starts[1:]
    tail2 = np.zeros(len(kind), dtype=bool)
    tail2[:-1] = tail1[1:]

    positions, packed = [], []
    pairs = np.flatnonzero((kind == 3) & tail1)
    positions.append(pairs)
    packed.append(cp[pairs] | (cp[pairs + 1] << np.uint64(21)) | _DENSE_TAG)
    triple_ok = (kind == 2) & tail1 & tail2
    triples = np.flatnonzero(triple_ok)
    positions.append(triples)
    all_triples = cp[:-2] | (cp[1:-1] << np.uint64(21)) | (cp[2:] << np.uint64(42))
    packed.append(all_triples[triple_ok[:-2]])
    # Runs shorter than n are one shingle (a lone space between runs is not a shingle).
    run_start = np.flatnonzero(starts)
    run_len = np.diff(np.append(run_start, len(kind)))
    run_kind = kind[run_start]
    short_dense = run_start[(run_kind == 3) & (run_len == 1)]
    s1 = run_start[(run_kind == 2) & (run_len == 1)]
    s1 = s1[cp32[s1] != 32]
    s2 = run_start[(run_kind == 2) & (run_len == 2)]
    positions += [short_dense, s1, s2]
    packed += [cp[short_dense] | _DENSE_TAG, cp[s1], cp[s2] | (cp[s2 + 1] << np.uint64(21))]

    owner = np.cumsum(sep, dtype=np.int64)[np.concatenate(positions)]
    keys = (owner.astype(np.uint64) << np.uint64(_ID_BITS)) | (splitmix64(np.concatenate(packed)) >> _ID_DROP)
    keys.sort()
    unique = np.ones(len(keys), dtype=bool)
    unique[1:] = keys[1:] != keys[:-1]
    keys = keys[unique]
    owner = (keys >> np.uint64(_ID_BITS)).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(owner, minlength=n))
    return offsets, keys & _ID_MASK


def simhash(offsets: np.ndarray, hashes: np.ndarray, chunk_ids: int = 1 << 18) -> np.ndarray:
    """64-bit SimHash per text (Charikar 2002): bit b is set when at least half the shingles set it.

    The 40-bit shingle ids are re-mixed to 64 bits first (splitmix64, a bijection).

    Ties go to 1, so a text with one or two shingles never gets an all-zero fingerprint.
    Returns (n,) uint64.
    """
    n = len(offsets) - 1
    sizes = np.diff(offsets)
    out = np.zeros(n, dtype=np.uint64)
    mixed = splitmix64(hashes)
    lo = 0
    while lo < n:  # chunks of whole records holding about chunk_ids ids
        hi = min(max(int(np.searchsorted(offsets, offsets[lo] + chunk_ids, side="right")) - 1, lo + 1), n)
        if hi - lo == 1 and sizes[lo] > chunk_ids:
            ones = _exact_bit_counts(mixed[offsets[lo] : offsets[hi]], chunk_ids)[None, :]
        else:
            ones = _lane_bit_counts(mixed, offsets[lo : hi + 1])
            for row in np.flatnonzero(sizes[lo:hi] >= _LANE_CAPACITY):  # a 16-bit lane would wrap
                ones[row] = _exact_bit_counts(mixed[offsets[lo + row] : offsets[lo + row + 1]], chunk_ids)
        local_sizes = sizes[lo:hi, None]
        bits = (2 * ones >= local_sizes) & (local_sizes > 0)
        out[lo:hi] = np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel()
        lo = hi
    return out


# Bit counting without BLAS: a matmul here left OpenBLAS worker threads spinning after each call, which
# billed a second core to whatever ran next (its CPU time up to 2x, measured on the script gate). Word k of an
# id holds its bits k, 16+k, 32+k, 48+k in four 16-bit lanes, so one uint64 prefix sum counts four bits at
# once. A range sum of the prefix is exact modulo 2**64,
# so the lanes are exact while a set has fewer than 2**16 ids.
_LANE_CAPACITY = 1 << 16
_LANE_LOW_BITS = np.uint64(0x0001_0001_0001_0001)
_LANE_SHIFTS = np.arange(16, dtype=np.uint64)[:, None]


def _lane_bit_counts(mixed: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per set ``[bounds[r], bounds[r+1])`` of ``mixed`` (uint64), how many ids set each bit:
    (r, 64) int64."""
    first, last = int(bounds[0]), int(bounds[-1])
    words = (mixed[None, first:last] >> _LANE_SHIFTS) & _LANE_LOW_BITS  # (16, m)
    prefix = np.zeros((16, last - first + 1), dtype=np.uint64)
    np.cumsum(words, axis=1, out=prefix[:, 1:])
    local = bounds - first
    sums = np.take(prefix, local[1:], axis=1) - np.take(prefix, local[:-1], axis=1)  # (16, r)
    lanes = (
        sums.astype("<u8", copy=False).view("<u2").reshape(16, len(local) - 1, 4)
    )  # [k, r, j]: bit 16j + k
    return lanes.transpose(1, 2, 0).reshape(len(local) - 1, 64).astype(np.int64)


def _exact_bit_counts(mixed: np.ndarray, slice_ids: int) -> np.ndarray:
    """How many of ``mixed`` (uint64) set each bit, for one large set: (64,) int64."""
    counts = np.zeros(64, dtype=np.int64)
    for lo in range(0, len(mixed), slice_ids):
        as_bytes = mixed[lo : lo + slice_ids].astype("<u8").view(np.uint8).reshape(-1, 8)
        counts += np.unpackbits(as_bytes, axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
    return counts


def minhash(offsets: np.ndarray, hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (n, num_perm) uint64 with permutations x -> a*x + b mod 2**64 (a odd).

    Shingle ids are re-mixed to 64 bits first, so this cheap affine family suffices. Empty
    sets get the maximum value everywhere.
    """
    n = len(offsets) - 1
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    signature = np.full((n, num_perm), _M64, dtype=np.uint64)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if len(nonempty) == 0:
        return signature
    starts = offsets[nonempty]
    mixed = splitmix64(hashes)
    for k in range(num_perm):
        signature[nonempty, k] = np.minimum.reduceat(mixed * a[k] + b[k], starts)
    return signature


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) for each (s, l), vectorised."""
    total = int(lengths.sum()) if len(lengths) else 0
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + shift


def record_key(fields: list[str]) -> bytes:
    """128-bit BLAKE2b of the fields joined with U+001F (the unit separator never occurs in text)."""
    return hashlib.blake2b("\x1f".join(fields).encode("utf-8"), digest_size=16).digest()
