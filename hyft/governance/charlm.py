"""Interpolated Witten-Bell character n-gram LM, cross-fitted so that no text scores itself.

Why this model (governance.md §5): no hyperparameters, deterministic, offline, and it can be fitted
on the pool being curated ("label-free"). KenLM would need a C++ build with Boost for estimation.

Witten-Bell, for context h of length m-1 and next symbol w:
    P_m(w | h) = (c(h, w) + T(h) * P_{m-1}(w | h')) / (c(h) + T(h))   if c(h) > 0
    P_m(w | h) = P_{m-1}(w | h')                                       otherwise
where T(h) is the number of distinct symbols seen after h and h' drops h's oldest symbol; the
recursion ends in the uniform distribution over the alphabet. Counting and lookup are vectorised:
each n-gram is one packed integer, counts come from ``np.unique`` and lookups from
``np.searchsorted``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from hyft.governance.shingles import concat_ranges

_BOS, _EOS = 0, 1  # padding before each text, end symbol after it


def fold_of(text: str, folds: int) -> int:
    """Deterministic fold of a string (BLAKE2b; equal strings always share a fold)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") % folds


class _Encoded:
    """Texts as symbol ids in one padded array, with the packed n-gram key of every target position."""

    def __init__(self, texts: list[str], order: int):
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        alphabet = np.unique(cps)
        self.vocab = len(alphabet) + 2
        self.bits = max(1, int(self.vocab - 1).bit_length())
        if self.bits * order > 63:
            raise ValueError(f"alphabet of {self.vocab} symbols is too large for order {order}")
        # Layout per text: (order - 1) BOS pads, its symbols, one EOS; every non-pad slot is a target.
        block = lengths + order
        start = np.concatenate(([0], np.cumsum(block)[:-1])) + (order - 1)
        self.sequence = np.zeros(int(block.sum()), dtype=np.uint64)
        self.sequence[concat_ranges(start, lengths)] = np.searchsorted(alphabet, cps).astype(
            np.uint64
        ) + np.uint64(2)
        self.sequence[start + lengths] = np.uint64(_EOS)
        self.targets = concat_ranges(start, lengths + 1)
        self.owner = np.repeat(np.arange(len(texts)), lengths + 1)
        self.order = order

    def keys(self, m: int, positions: np.ndarray) -> np.ndarray:
        """Packed (context of m-1 symbols, target) for each target position."""
        key = np.zeros(len(positions), dtype=np.uint64)
        for back in range(m - 1, -1, -1):
            key = (key << np.uint64(self.bits)) | self.sequence[positions - back]
        return key


class _Counts:
    """Counts of one order: sorted n-gram keys with counts, and per-context totals and type counts."""

    def __init__(self, keys: np.ndarray, bits: int):
        self.keys, self.counts = np.unique(keys, return_counts=True)
        contexts = self.keys >> np.uint64(bits)  # sorted already: the context is the key's high part
        first = np.flatnonzero(np.concatenate(([True], contexts[1:] != contexts[:-1])))[: len(contexts)]
        self.contexts = contexts[first]
        self.context_total = np.add.reduceat(self.counts, first) if len(first) else np.zeros(0, np.int64)
        self.context_types = np.diff(np.append(first, len(self.keys)))

    @staticmethod
    def _lookup(table: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if len(table) == 0:
            return np.zeros(len(query), dtype=np.float64)
        where = np.minimum(np.searchsorted(table, query), len(table) - 1)
        return np.where(table[where] == query, values[where], 0).astype(np.float64)

    def ngram(self, key: np.ndarray) -> np.ndarray:
        return self._lookup(self.keys, self.counts, key)

    def context(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            self._lookup(self.contexts, self.context_total, context),
            self._lookup(self.contexts, self.context_types, context),
        )


def _log_probs(encoded: _Encoded, train: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Natural-log probability of each scored target position under a model fit on ``train``."""
    prob = np.full(len(score), 1.0 / encoded.vocab)
    for m in range(1, encoded.order + 1):
        counts = _Counts(encoded.keys(m, train), encoded.bits)
        key = encoded.keys(m, score)
        seen = counts.ngram(key)
        total, types = counts.context(key >> np.uint64(encoded.bits))
        has_context = total > 0
        prob = np.where(has_context, (seen + types * prob) / np.maximum(total + types, 1), prob)
    return np.log(prob)


def cross_fitted_nll(
    texts: list[str],
    order: int,
    folds: int,
    train: np.ndarray | None = None,
    fold_keys: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score unique texts with k-fold cross-fitting: fold f is scored by a model fit on the others.

    Returns (total negative log-likelihood (n,), number of predicted symbols (n,), len + 1 each).
    A string is never scored by a model that saw it, since equal strings share a fold. ``train``
    (boolean, one per text) restricts the texts the models are fit on; every text is still scored.
    ``fold_keys`` (one per text; default the text) decides the fold: a variant of a text (e.g. its
    characters shuffled) keyed by the text is scored by the same model as the text.
    """
    encoded = _Encoded(texts, order)
    keys = texts if fold_keys is None else fold_keys
    fold = np.array([fold_of(t, folds) for t in keys], dtype=np.int64)
    target_fold = fold[encoded.owner] if len(texts) else np.zeros(0, dtype=np.int64)
    fit = (
        np.ones(len(encoded.targets), dtype=bool) if train is None else np.asarray(train, bool)[encoded.owner]
    )
    nll = np.zeros(len(texts), dtype=np.float64)
    for f in range(folds):
        held = target_fold == f
        if not held.any():
            continue
        logp = _log_probs(encoded, encoded.targets[~held & fit], encoded.targets[held])
        nll += np.bincount(encoded.owner[held], weights=-logp, minlength=len(texts))
    symbols = np.bincount(encoded.owner, minlength=len(texts)).astype(np.float64)
    return nll, symbols
