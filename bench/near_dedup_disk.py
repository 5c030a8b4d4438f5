"""Memory of disk near-dedup (near_dedup_disk.py): peak RSS per pool size, to show it does not grow with n.

Each size runs in a fresh child process, so its peak resident set (``resource.getrusage``
``ru_maxrss``) is its own. Records are synthetic XNLI-like pairs (premise ~20 words, hypothesis
~7 words over a 20,000-word vocabulary), generated as a stream with 5% planted one-word edits of
a recent record (half with the label changed). Engine minhash_lsh (what ``auto`` picks above
``exhaustive_limit``), default chunk, bucket and partition sizes, one task. For contrast the
in-memory path (near_dedup.memory_near) is measured at the sizes given to --memory-sizes.

    nice -n 15 python bench/near_dedup_disk.py --sizes 100000 1000000 --out bench/results/near-dedup-disk.md

This measures memory, not speed (the times are only there to size the runs).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def records(n: int, seed: int = 0) -> Iterator[tuple[tuple[str, str], int]]:
    """n synthetic (feature texts, label code) records; memory: a 1000-record ring of recent ones."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(20_000)
    ]
    recent: list[tuple[tuple[str, str], int]] = []
    for k in range(n):
        if recent and rng.random() < 0.05:
            (premise, hypothesis), label = recent[rng.randrange(len(recent))]
            tokens = premise.split()
            tokens[rng.randrange(len(tokens))] = rng.choice(words)
            record = ((" ".join(tokens), hypothesis), label if rng.random() < 0.5 else (label + 1) % 3)
        else:
            record = (
                (
                    " ".join(rng.choices(words, k=rng.randint(12, 28))),
                    " ".join(rng.choices(words, k=rng.randint(4, 10))),
                ),
                rng.randrange(3),
            )
        if len(recent) < 1000:
            recent.append(record)
        else:
            recent[k % 1000] = record
        yield record


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def child(n: int, mode: str) -> dict:
    """One measurement in this process; returns a JSON-ready row."""
    import numpy as np

    from hyft.governance.config import DedupSettings, NearDedupScale
    from hyft.governance.near_dedup import memory_near
    from hyft.governance.near_dedup_disk import collect, plan, run_stage, write_signatures

    settings, scale = DedupSettings(engine="minhash_lsh"), NearDedupScale(mode="disk")
    baseline = _rss_mib()
    start = time.perf_counter()
    if mode == "memory":
        rows = list(records(n))
        texts = [[r[0][f] for r in rows] for f in range(2)]
        codes = np.array([r[1] for r in rows], dtype=np.int64)
        del rows
        result = memory_near(
            texts,
            codes,
            settings.engine,
            settings.hamming,
            settings.jaccard,
            True,
            settings.exhaustive_limit,
            settings.lsh_bands,
            settings.lsh_rows,
            0,
        )
        disk_mib = 0.0
        buckets = partitions = 0
    else:
        work = Path(tempfile.mkdtemp(prefix="near-bench-"))
        try:
            write_signatures(work, 0, 0, records(n), scale.chunk_records)
            for stage in ("bands", "candidates", "confirm"):
                run_stage(work, stage, 0, 1, settings, 0, scale)
            the_plan = plan(work, settings, scale)
            result = collect(work, the_plan)
            disk_mib = _folder_mib(work)
            buckets, partitions = the_plan.buckets, the_plan.partitions
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "n": n,
        "mode": mode,
        "peak_rss_mib": round(_rss_mib(), 1),
        "baseline_rss_mib": round(baseline, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "work_folder_mib": round(disk_mib, 1),
        "buckets": buckets,
        "partitions": partitions,
        "candidates": result.pairs.candidates,
        "confirmed_pairs": len(result.pairs.dup_i),
        "label_differing_pairs": len(result.pairs.minimal_i),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--out", type=Path, default=None, help="markdown file for the table")
    parser.add_argument("--child", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return
    rows = []
    for mode, sizes in (("memory", args.memory_sizes), ("disk", args.sizes)):
        for n in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), mode],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    table = [
        "| mode | records | peak RSS (MiB) | RSS after imports (MiB) | work folder (MiB) | buckets "
        "| partitions | candidates | confirmed pairs | label-differing pairs | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {r['mode']} | {r['n']:,} | {r['peak_rss_mib']} | {r['baseline_rss_mib']} "
        f"| {r['work_folder_mib']} | {r['buckets']} | {r['partitions']} | {r['candidates']:,} "
        f"| {r['confirmed_pairs']:,} | {r['label_differing_pairs']:,} | {r['seconds']} |"
        for r in rows
    ]
    print("\n".join(table))
    if args.out:
        args.out.write_text("\n".join(table) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
