"""Near-dedup for language pools that do not fit in memory: signatures per task on disk, then buckets.

The in-memory step (near_dedup.py) holds every survivor's shingle set at once (~5 KB per record with
two fields). Here each stage holds one chunk, one bucket or one batch of pairs, and exchanges files
under a work folder, so several tasks (datatrove workers, Slurm array tasks, Ray actors) can share it:

1. ``write_signatures`` (per task; task t owns survivors [start, start + count)): shingle ids,
   SimHash fingerprints and label codes per chunk of ``chunk_records``, plus per-field size totals.
2. ``plan`` (anyone, cheap): record count, engine (``auto`` as in memory), search field, bucket and
   partition counts, all from the tasks' meta files.
3. ``write_bands`` (per task, minhash_lsh only): MinHash band keys of the search field, routed to
   ``buckets`` files by key.
4. ``bucket_pairs`` (per bucket): records sharing a (band, key) -> candidate pairs; simhash instead
   runs exact Hamming over one slice of the size-sorted rows. Pairs are routed to ``partitions`` by
   their smaller index.
5. ``confirm_partition`` (per partition): unique candidates, then the in-memory rule
   (``confirm_pairs``) on a batch of pairs at a time, reading just the records the batch needs.
6. ``collect`` (one process): the confirmed pairs of all partitions -> a NearResult, clustered by
   dedup.apply_near with a union-find over paired records only.

Same decisions as in memory: a record's shingles, fingerprint and MinHash do not depend on which
chunk computed them, every stage's output is sorted or de-duplicated by global index, and the
confirmation is the same function. So the result does not depend on the number of tasks either.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from hyft.governance.config import DedupSettings, NearDedupScale
from hyft.governance.near_dedup import (
    FieldShingles,
    NearPairs,
    NearResult,
    band_keys,
    confirm_pairs,
    exhaustive_block,
    group_pairs,
    resolve_engine,
    search_field,
    size_order,
)

EXHAUSTIVE_ROWS = 16_384  # size-sorted rows per simhash "bucket" (16 blocks of 1024)

# One record of the near step's input: its feature texts (one per text field) and its label code.
NearRecord = tuple[tuple[str, ...], int]


def _task_dir(work: Path, task: int) -> Path:
    return work / "sig" / f"{task:05d}"


def write_signatures(
    work: Path, task: int, start: int, records: Iterable[NearRecord], chunk_records: int
) -> None:
    """Stage 1: shingle, fingerprint and store the survivors [start, ...) of one task, a chunk at a time.

    ``meta.json`` is written last: a task without it has not finished.
    """
    folder = _task_dir(work, task)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    chunks: list[list[int]] = []
    totals: list[int] | None = None
    iterator = iter(records)
    while batch := list(islice(iterator, chunk_records)):
        chunk_start = start + sum(count for _, count in chunks)
        out = folder / f"{chunk_start:012d}"
        out.mkdir()
        width = len(batch[0][0])
        np.array([code for _, code in batch], dtype=np.int64).tofile(out / "labels.i64")
        sums = []
        for f in range(width):
            field = FieldShingles.build([texts[f] for texts, _ in batch])
            field.offsets.astype(np.int64).tofile(out / f"f{f}.off.i64")
            field.ids.astype(np.uint64).tofile(out / f"f{f}.ids.u64")
            field.fingerprints.astype(np.uint64).tofile(out / f"f{f}.fp.u64")
            sums.append(int(field.sizes.sum()))
        totals = sums if totals is None else [a + b for a, b in zip(totals, sums, strict=True)]
        chunks.append([chunk_start, len(batch)])
    meta = {
        "start": start,
        "count": sum(count for _, count in chunks),
        "chunks": chunks,
        "size_totals": totals,
    }
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


@dataclass(frozen=True)
class Plan:
    """What every later stage needs to agree on, derived from the tasks' meta files alone."""

    n: int
    width: int
    engine: str
    search: int
    buckets: int
    partitions: int
    chunk_starts: tuple[int, ...]
    chunk_dirs: tuple[str, ...]

    def partition_of(self, i: np.ndarray) -> np.ndarray:
        """Pair partition of each smaller index: contiguous index ranges, so confirmation reads locally."""
        return (i.astype(np.int64) * self.partitions) // max(self.n, 1)


def plan(work: Path, settings: DedupSettings, scale: NearDedupScale) -> Plan:
    """Stage 2: read the meta files; check the tasks together cover survivors 0..n-1 exactly once."""
    metas, chunks = [], []
    for path in sorted((work / "sig").glob("*/meta.json")):
        meta = json.loads(path.read_text(encoding="utf-8"))
        metas.append(meta)
        chunks += [(start, count, str(path.parent / f"{start:012d}")) for start, count in meta["chunks"]]
    chunks.sort()
    expected = 0
    for chunk_start, count, _ in chunks:
        if chunk_start != expected:
            raise RuntimeError(
                f"near-dedup work folder {work}: signatures missing or repeated at record {expected}"
            )
        expected += count
    n = expected
    totals_list = [m["size_totals"] for m in metas if m["size_totals"] is not None]
    width = len(totals_list[0]) if totals_list else 0
    totals = [sum(t[f] for t in totals_list) for f in range(width)]
    engine = resolve_engine(settings.engine, n, settings.exhaustive_limit)
    if engine == "simhash":
        buckets = max(1, math.ceil(n / EXHAUSTIVE_ROWS))
    else:
        buckets = max(1, math.ceil(n * settings.lsh_bands / scale.bucket_rows))
    return Plan(
        n=n,
        width=width,
        engine=engine,
        search=search_field(totals) if totals else 0,
        buckets=buckets,
        partitions=max(1, math.ceil(n / scale.partition_records)),
        chunk_starts=tuple(c[0] for c in chunks),
        chunk_dirs=tuple(c[2] for c in chunks),
    )


def _task_chunks(work: Path, task: int) -> list[tuple[int, int]]:
    meta = json.loads((_task_dir(work, task) / "meta.json").read_text(encoding="utf-8"))
    return [(start, count) for start, count in meta["chunks"]]


def _read(path: Path, dtype: type, offset: int = 0, count: int = -1) -> np.ndarray:
    return np.fromfile(path, dtype=dtype, offset=offset * np.dtype(dtype).itemsize, count=count)


def write_bands(work: Path, task: int, the_plan: Plan, settings: DedupSettings, seed: int) -> None:
    """Stage 3 (minhash_lsh): band keys of this task's records, one file per (bucket, chunk).

    A row is (key, band, index); the bucket is key mod buckets, so equal (band, key) rows meet.
    """
    for chunk_start, count in _task_chunks(work, task):
        folder = _task_dir(work, task) / f"{chunk_start:012d}"
        offsets = _read(folder / f"f{the_plan.search}.off.i64", np.int64)
        ids = _read(folder / f"f{the_plan.search}.ids.u64", np.uint64)
        keys = band_keys(offsets, ids, settings.lsh_bands, settings.lsh_rows, seed)
        rows = np.empty((keys.size, 3), dtype=np.uint64)
        rows[:, 0] = keys.ravel()
        rows[:, 1] = np.tile(np.arange(settings.lsh_bands, dtype=np.uint64), count)
        rows[:, 2] = np.repeat(
            np.arange(chunk_start, chunk_start + count, dtype=np.uint64), settings.lsh_bands
        )
        bucket = rows[:, 0] % np.uint64(the_plan.buckets)
        order = np.argsort(bucket, kind="stable")
        rows, bucket = rows[order], bucket[order]
        bounds = np.searchsorted(bucket, np.arange(the_plan.buckets + 1, dtype=np.uint64))
        for b in range(the_plan.buckets):
            if bounds[b + 1] > bounds[b]:
                out = work / "bands" / f"{b:05d}"
                out.mkdir(parents=True, exist_ok=True)
                rows[bounds[b] : bounds[b + 1]].tofile(out / f"{chunk_start:012d}.u64")


def _search_arrays(the_plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints and set sizes of the search field for all records (simhash: n <= exhaustive_limit)."""
    fps, sizes = [], []
    for folder in the_plan.chunk_dirs:
        fps.append(_read(Path(folder) / f"f{the_plan.search}.fp.u64", np.uint64))
        sizes.append(np.diff(_read(Path(folder) / f"f{the_plan.search}.off.i64", np.int64)))
    if not fps:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(fps), np.concatenate(sizes)


def bucket_pairs(work: Path, bucket: int, the_plan: Plan, settings: DedupSettings) -> None:
    """Stage 4: candidate pairs of one bucket, written to ``pairs/<partition>/<bucket>.i64`` as
    (i, j) rows."""
    if the_plan.engine == "simhash":
        order, fps, ss = size_order(*_search_arrays(the_plan))
        lo, hi = bucket * EXHAUSTIVE_ROWS, min((bucket + 1) * EXHAUSTIVE_ROWS, the_plan.n)
        parts = [
            exhaustive_block(order, fps, ss, b0, min(b0 + 1024, hi), settings.hamming, settings.jaccard)
            for b0 in range(lo, hi, 1024)
        ]
        i = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        j = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    else:
        files = sorted((work / "bands" / f"{bucket:05d}").glob("*.u64"))
        rows = (
            np.concatenate([_read(p, np.uint64).reshape(-1, 3) for p in files])
            if files
            else np.zeros((0, 3), np.uint64)
        )
        order = np.lexsort((rows[:, 2], rows[:, 0], rows[:, 1]))  # by band, then key, then index
        rows = rows[order]
        start = np.ones(len(rows), dtype=bool)
        start[1:] = (rows[1:, 0] != rows[:-1, 0]) | (rows[1:, 1] != rows[:-1, 1])
        i, j = group_pairs(rows[:, 2].astype(np.int64), np.cumsum(start))
    part = the_plan.partition_of(i)
    for p in np.unique(part).tolist():
        mine = part == p
        out = work / "pairs" / f"{p:05d}"
        out.mkdir(parents=True, exist_ok=True)
        np.stack([i[mine], j[mine]], axis=1).astype(np.int64).tofile(out / f"{bucket:05d}.i64")


class RecordReader:
    """Reads chosen records' labels, fingerprints and shingle sets back from the signature files.

    Per chunk it keeps the small arrays (offsets, fingerprints, labels) of the last few chunks and
    reads shingle ids record by record with ``pread``, so memory stays at a few chunks' index arrays.
    """

    def __init__(self, the_plan: Plan, cached_chunks: int = 8):
        self.plan, self.cached_chunks = the_plan, cached_chunks
        self.starts = np.array(the_plan.chunk_starts, dtype=np.int64)
        self._small: dict[int, tuple[list[np.ndarray], list[np.ndarray], np.ndarray]] = {}
        self._files: dict[tuple[int, int], int] = {}

    def _chunk(self, c: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        if c not in self._small:
            if len(self._small) >= self.cached_chunks:
                self._small.pop(next(iter(self._small)))
            folder = Path(self.plan.chunk_dirs[c])
            self._small[c] = (
                [_read(folder / f"f{f}.off.i64", np.int64) for f in range(self.plan.width)],
                [_read(folder / f"f{f}.fp.u64", np.uint64) for f in range(self.plan.width)],
                _read(folder / "labels.i64", np.int64),
            )
        return self._small[c]

    def _fd(self, c: int, f: int) -> int:
        if (c, f) not in self._files:
            if len(self._files) >= 64:
                os.close(self._files.pop(next(iter(self._files))))
            self._files[(c, f)] = os.open(Path(self.plan.chunk_dirs[c]) / f"f{f}.ids.u64", os.O_RDONLY)
        return self._files[(c, f)]

    def load(self, records: np.ndarray) -> tuple[list[FieldShingles], np.ndarray]:
        """FieldShingles (one per field) and label codes of ``records`` (sorted global indices), in order."""
        chunk_of = np.searchsorted(self.starts, records, side="right") - 1
        labels = np.empty(len(records), dtype=np.int64)
        fps = [np.empty(len(records), dtype=np.uint64) for _ in range(self.plan.width)]
        ids: list[list[np.ndarray]] = [[] for _ in range(self.plan.width)]
        sizes = [np.empty(len(records), dtype=np.int64) for _ in range(self.plan.width)]
        for position, (record, c) in enumerate(zip(records.tolist(), chunk_of.tolist(), strict=True)):
            offsets, fingerprints, chunk_labels = self._chunk(c)
            local = record - int(self.starts[c])
            labels[position] = chunk_labels[local]
            for f in range(self.plan.width):
                lo, hi = int(offsets[f][local]), int(offsets[f][local + 1])
                fps[f][position] = fingerprints[f][local]
                sizes[f][position] = hi - lo
                raw = os.pread(self._fd(c, f), (hi - lo) * 8, lo * 8)
                ids[f].append(np.frombuffer(raw, dtype=np.uint64))
        fields = []
        for f in range(self.plan.width):
            offsets = np.zeros(len(records) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum(sizes[f])
            joined = np.concatenate(ids[f]) if ids[f] else np.zeros(0, dtype=np.uint64)
            fields.append(FieldShingles(offsets, joined, sizes[f], fps[f]))
        return fields, labels

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()


def confirm_partition(
    work: Path, partition: int, the_plan: Plan, settings: DedupSettings, batch: int
) -> None:
    """Stage 5: the unique candidates of one partition through ``confirm_pairs``,
    ``batch`` pairs at a time."""
    files = sorted((work / "pairs" / f"{partition:05d}").glob("*.i64"))
    pairs = (
        np.concatenate([_read(p, np.int64).reshape(-1, 2) for p in files])
        if files
        else np.zeros((0, 2), np.int64)
    )
    codes = np.unique(pairs[:, 0] * max(the_plan.n, 1) + pairs[:, 1])  # a pair can share several bands
    del pairs
    reader = RecordReader(the_plan)
    results = []
    try:
        for lo in range(0, len(codes), batch):
            part = codes[lo : lo + batch]
            i, j = part // max(the_plan.n, 1), part % max(the_plan.n, 1)
            needed = np.unique(np.concatenate([i, j]))
            fields, labels = reader.load(needed)
            local = confirm_pairs(
                np.searchsorted(needed, i),
                np.searchsorted(needed, j),
                fields,
                labels,
                settings.hamming,
                settings.jaccard,
                settings.label_aware,
            )
            results.append(
                NearPairs(
                    needed[local.dup_i],
                    needed[local.dup_j],
                    local.hamming,
                    local.jaccard,
                    needed[local.minimal_i],
                    needed[local.minimal_j],
                    local.candidates,
                )
            )
    finally:
        reader.close()
    merged = NearPairs.concat(results)
    out = work / "confirmed"
    out.mkdir(parents=True, exist_ok=True)
    np.savez(
        out / f"{partition:05d}.npz",
        dup_i=merged.dup_i,
        dup_j=merged.dup_j,
        hamming=merged.hamming,
        jaccard=merged.jaccard,
        minimal_i=merged.minimal_i,
        minimal_j=merged.minimal_j,
        candidates=np.array(merged.candidates),
    )


def collect(work: Path, the_plan: Plan) -> NearResult:
    """Stage 6: every partition's confirmed pairs (partitions in index order) as one NearResult."""
    parts = []
    for p in range(the_plan.partitions):
        path = work / "confirmed" / f"{p:05d}.npz"
        if not path.is_file():
            raise RuntimeError(f"near-dedup work folder {work}: partition {p} was not confirmed")
        with np.load(path) as data:
            parts.append(
                NearPairs(
                    data["dup_i"],
                    data["dup_j"],
                    data["hamming"],
                    data["jaccard"],
                    data["minimal_i"],
                    data["minimal_j"],
                    int(data["candidates"]),
                )
            )
    return NearResult(the_plan.engine, NearPairs.concat(parts))


def task_range(n: int, task: int, tasks: int) -> tuple[int, int]:
    """The contiguous survivors [lo, hi) of one task out of ``tasks``."""
    return n * task // tasks, n * (task + 1) // tasks


def run_stage(
    work: Path,
    stage: str,
    rank: int,
    world_size: int,
    settings: DedupSettings,
    seed: int,
    scale: NearDedupScale,
) -> None:
    """Stages 3-5 for one rank: bands of its task, or its share (round robin) of buckets or partitions."""
    the_plan = plan(work, settings, scale)
    if stage == "bands":
        if the_plan.engine == "minhash_lsh" and (_task_dir(work, rank) / "meta.json").is_file():
            write_bands(work, rank, the_plan, settings, seed)
    elif stage == "candidates":
        for bucket in range(rank, the_plan.buckets, world_size):
            bucket_pairs(work, bucket, the_plan, settings)
    elif stage == "confirm":
        for partition in range(rank, the_plan.partitions, world_size):
            confirm_partition(work, partition, the_plan, settings, scale.confirm_batch)
    else:
        raise ValueError(f"unknown near-dedup stage {stage!r}: expected bands, candidates or confirm")


def near_in_process(
    records: Iterable[NearRecord],
    n: int,
    settings: DedupSettings,
    seed: int,
    scale: NearDedupScale,
    tasks: int = 1,
) -> NearResult:
    """All six stages in this process over ``tasks`` shards (the inline executor's disk mode).

    ``records`` is consumed once, in order; the work folder is removed afterwards.
    """
    base = scale.work_dir
    if base is not None:
        Path(base).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hyft-near-", dir=base))
    try:
        iterator: Iterator[Any] = iter(records)
        for task in range(tasks):
            lo, hi = task_range(n, task, tasks)
            write_signatures(work, task, lo, islice(iterator, hi - lo), scale.chunk_records)
        for stage in ("bands", "candidates", "confirm"):
            for rank in range(tasks):
                run_stage(work, stage, rank, tasks, settings, seed, scale)
        return collect(work, plan(work, settings, scale))
    finally:
        shutil.rmtree(work, ignore_errors=True)
