"""Compare methods across the evidence study's run folders (docs/evidence/minilm.md).

A run's own report compares the methods inside it. The study's learning-rate checks have their own runs
(``evidence-minilm-hybrid-lr``, ``-lora-lr``, ``-lora-ga-lr``), so the comparisons that matter — the
hybrid at lr 2e-4 against full fine-tuning in the main run, say — cross run folders. This script pairs
them the way ``hyft report`` pairs methods within a run: cells at the same seed (checked to have drawn
the same shots) scored on the same test rows, then hyft's hierarchical bootstrap (seeds, then rows).

    python evidence/compare_runs.py --task xnli --k 512 --reference "hybrid lr 2e-4" \\
        "hybrid lr 2e-4=evidence/runs/evidence-minilm-hybrid-lr:hybrid" \\
        "full=evidence/runs/evidence-minilm:full" ...

Each ARM is ``LABEL=RUN_DIR:METHOD`` or ``LABEL=RUN_DIR:METHOD@STAGE`` for one curation stage (C0, C2) of a
run that trains at several (Table V); C0 and C2 draw their shots from different pools, so such a comparison
needs ``--different-shots``. Prints a Markdown table: per arm the seeds, macro accuracy with
its 95 % CI and per-seed values, the parity gap Δ and the ECE before and after temperature scaling (means
over seeds of the cells' own values); then the reference minus every other arm over the seeds both have.
Macro accuracy is the mean over examples, which equals the mean over languages because every language
scores the same number of rows (checked).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

from hyft.evaluation.bootstrap import hierarchical_bootstrap_ci
from hyft.experiments.aggregate import example_scores, paired_matrices


def _cells(run_dir: Path, method: str, task: str, k_shot: int, curation: str | None) -> dict[int, dict]:
    """{seed: result.json} of the finished cells of one method, task, k (and curation stage) in a run."""
    found = {}
    for path in sorted(run_dir.glob("cells/*/result.json")):
        cell = json.loads(path.read_text(encoding="utf-8"))
        if (cell["method"], cell["task"], int(cell["k_shot"]), cell["status"]) == (
            method,
            task,
            k_shot,
            "done",
        ) and curation in (None, cell["curation"]):
            if int(cell["seed"]) in found:
                raise SystemExit(f"{run_dir}: {method} has cells at several curation stages; name one: @C2")
            found[int(cell["seed"])] = cell
    if not found:
        stage = f" at curation {curation}" if curation else ""
        raise SystemExit(f"{run_dir}: no finished {method} cell for {task} at k = {k_shot}{stage}")
    return found


def _scores(run_dir: Path, cell: dict) -> dict[str, float]:
    scores = example_scores(run_dir / cell["samples_path"])
    per_language = Counter(lang for lang, _ in scores.values())
    if len(set(per_language.values())) != 1:
        raise SystemExit(f"{cell['cell_id']}: languages score different row counts {dict(per_language)}")
    return {example_id: score for example_id, (_, score) in scores.items()}


def _interval(low: float, high: float) -> str:
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arms", nargs="+", help="LABEL=RUN_DIR:METHOD or LABEL=RUN_DIR:METHOD@STAGE")
    parser.add_argument("--task", required=True)
    parser.add_argument("--k", type=int, required=True, help="shots per language")
    parser.add_argument("--reference", required=True, help="the LABEL every other arm is compared with")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument(
        "--different-shots",
        action="store_true",
        help="pair seeds whose shots differ (curation stages: C0 and C2 sample different pools)",
    )
    args = parser.parse_args()

    arms: dict[str, tuple[Path, dict[int, dict]]] = {}
    for spec in args.arms:
        label, _, where = spec.partition("=")
        run_dir, _, method_and_stage = where.rpartition(":")
        method, _, curation = method_and_stage.partition("@")
        if not (label and run_dir and method):
            raise SystemExit(f"arm {spec!r}: expected LABEL=RUN_DIR:METHOD or LABEL=RUN_DIR:METHOD@STAGE")
        cells = _cells(Path(run_dir), method, args.task, args.k, curation or None)
        arms[label] = (Path(run_dir), cells)
    if args.reference not in arms:
        raise SystemExit(f"--reference {args.reference!r} is none of the arms {list(arms)}")

    languages = next(iter(next(iter(arms.values()))[1].values()))["eval"]["languages"]
    print(f"{args.task}, k = {args.k}: accuracy (%, mean over seeds); macro with its 95 % CI over seeds then")
    print(
        "test rows; Δ, ECE and the orthographic drop (clean − variant, macro) are means of the cells' own\n"
    )
    columns = ["arm", "seeds", *languages, "macro [95 % CI]", "per seed", "Δ", "ECE → T-scaled", "ortho drop"]
    print(f"| {' | '.join(columns)} |")
    print(f"|---|---|{'---:|' * len(languages)}---|---|---:|---|---:|")
    # each cell's samples file is read once; both tables below use these per-seed scores
    scores = {
        label: {seed: _scores(run_dir, cell) for seed, cell in cells.items()}
        for label, (run_dir, cells) in arms.items()
    }
    for label, (_, cells) in arms.items():
        rows = [scores[label][seed] for seed in sorted(cells)]
        matrix, _, _ = paired_matrices(rows, rows)
        mean, low, high = hierarchical_bootstrap_ci(matrix, n_resamples=args.resamples)
        per_seed = ", ".join(f"{100 * value:.1f}" for value in matrix.mean(axis=1))
        seeds = ", ".join(str(seed) for seed in sorted(cells))
        delta, ece, ece_scaled = (
            100 * statistics.fmean(cell["eval"][key] for cell in cells.values())
            for key in ("delta", "avg_ece", "avg_ece_temperature_scaled")
        )
        per_language = " | ".join(
            f"{100 * statistics.fmean(cell['eval']['accuracy'][lang] for cell in cells.values()):.1f}"
            for lang in languages
        )
        ortho_drop = 100 * statistics.fmean(
            cell["eval"]["orthographic"]["macro"]["drop"] for cell in cells.values()
        )
        print(
            f"| {label} | {seeds} | {per_language} | {100 * mean:.1f} {_interval(low, high)} | {per_seed} "
            f"| {delta:.1f} | {ece:.1f} → {ece_scaled:.1f} | {ortho_drop:.1f} |"
        )

    reference_cells = arms[args.reference][1]
    print(f"\n| {args.reference} minus | paired seeds | difference [95 % CI] | significant |")
    print("|---|---|---|---|")
    for label, (_, cells) in arms.items():
        if label == args.reference:
            continue
        seeds = sorted(set(cells) & set(reference_cells))
        if not seeds:
            print(f"| {label} | none | | |")
            continue
        for seed in seeds:
            if not args.different_shots and cells[seed]["shots"] != reference_cells[seed]["shots"]:
                raise SystemExit(f"seed {seed}: {label} and {args.reference} drew different shots")
        reference_rows = [scores[args.reference][seed] for seed in seeds]
        other_rows = [scores[label][seed] for seed in seeds]
        a, b, left_out = paired_matrices(reference_rows, other_rows)
        if left_out:
            raise SystemExit(f"{label}: {left_out} test rows not scored by both arms in every seed")
        mean, low, high = hierarchical_bootstrap_ci(a, b, n_resamples=args.resamples)
        significant = "yes" if low > 0 or high < 0 else "no"
        print(
            f"| {label} | {', '.join(map(str, seeds))} | {100 * mean:+.1f} {_interval(low, high)} "
            f"| {significant} (N = {a.shape[1]} rows) |"
        )


if __name__ == "__main__":
    main()
