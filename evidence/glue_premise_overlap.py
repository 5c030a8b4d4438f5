"""How much the GLUE cells of the evidence study were scored on rows that share a premise with their shots.

GLUE ships dev only, so a cell's shots and scored rows come from one split. Before the fix in
``hyft.tasks.kshot.pair_group`` a scored MNLI row could share its premise with a shot (MNLI pairs each
premise with one hypothesis per label) and a QNLI row its question. This script reads the committed cells
of ``evidence/runs/evidence-minilm-glue`` (no retraining) and prints, per task, k and method, the mean over
seeds of: scored rows sharing a premise (question) with the cell's shots, accuracy on all scored rows, on
the rows that share none, and on the rows that do.

    python evidence/glue_premise_overlap.py [RUN_DIR] [DATA_DIR]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from hyft.experiments.aggregate import example_correctness
from hyft.tasks import get_task
from hyft.tasks.kshot import pair_group
from hyft.tasks.loading import DataSource


def _accuracy(scores: list[float]) -> float:
    return 100 * statistics.fmean(scores) if scores else float("nan")


def main() -> None:
    run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "evidence/runs/evidence-minilm-glue")
    data = DataSource(Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data"), "local")
    group_of: dict[str, dict[str, str | None]] = {}
    for name in ("mnli", "qnli"):
        task = get_task(name)
        group_of[name] = {row["id"]: pair_group(task, row) for row in task.load("dev", "en", data)}

    per_arm: dict[tuple[str, int, str], list[tuple[int, int, float, float, float]]] = defaultdict(list)
    for path in sorted(run_dir.glob("cells/*/result.json")):
        cell = json.loads(path.read_text(encoding="utf-8"))
        if cell["task"] not in group_of or cell["k_shot"] == 0 or cell["status"] != "done":
            continue
        groups = group_of[cell["task"]]
        shot_groups = {groups[shot_id] for shot_id in cell["shots"]["en"]}
        correct = example_correctness(run_dir / cell["samples_path"])  # hyft's own per-row scoring
        shared = [score for row_id, score in correct.items() if groups[row_id] in shot_groups]
        clean = [score for row_id, score in correct.items() if groups[row_id] not in shot_groups]
        every = list(correct.values())
        key = (cell["task"], cell["k_shot"], cell["method"])
        per_arm[key].append((len(shared), len(every), _accuracy(every), _accuracy(clean), _accuracy(shared)))

    print("| task | k | method | rows sharing a premise | all rows | rows sharing none | rows sharing one |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for (task, k, method), cells in sorted(per_arm.items()):
        shared, total, every, clean, overlapping = (statistics.fmean(v[i] for v in cells) for i in range(5))
        print(
            f"| {task} | {k} | {method} | {shared:.0f} / {total:.0f} | {every:.1f} | {clean:.1f} "
            f"| {overlapping:.1f} |"
        )


if __name__ == "__main__":
    main()
