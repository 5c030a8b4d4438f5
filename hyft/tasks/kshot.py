"""k-shot demonstrations: per language, stratified by label, seeded, disjoint from what is evaluated.

Protocol (paper: "32-shot per language"): ``k`` is the number of shots **per language in total**,
split as evenly as possible across the labels present. With ``L`` labels each gets ``k // L``; the
``k % L`` remaining shots go to the labels at positions ``(seed + i) mod L`` (``i < k % L``) of the
label names sorted as strings, so which labels get the extra shot rotates with the seed instead of
always favouring one class. XNLI, k = 32, seed 0: contradiction 11, entailment 11, neutral 10.

The shots depend only on (pool, k, seed): every method run with seed index s sees the same shots.
Since XNLI dev files are row-aligned across languages, the same seed picks the same rows (parallel
shots) in every language.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Hashable, Sequence
from typing import Any

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataError, DataSource

PAPER_K_VALUES = (0, 8, 32, 128)


def k_shot_label_counts(labels: Sequence[Hashable], k: int, seed: int) -> dict[Hashable, int]:
    """How many shots each label gets (see the module docstring for the remainder rule)."""
    names = sorted(set(labels), key=str)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not names:
        return {}
    base, remainder = divmod(k, len(names))
    counts = dict.fromkeys(names, base)
    for i in range(remainder):
        counts[names[(seed + i) % len(names)]] += 1
    return counts


def sample_k_shot(examples: Sequence[Any], k: int, seed: int, label_key: str | None = "label") -> list[Any]:
    """Draw ``k`` examples stratified by ``label_key`` (``None``: plain seeded sample), in seeded order.

    Raises ValueError when ``k`` exceeds the pool or a label has fewer examples than its quota.
    The returned shots are shuffled (with the same seed) so demonstrations are not grouped by label.
    """
    if k == 0:
        return []
    if k > len(examples):
        raise ValueError(f"cannot draw {k} shots from a pool of {len(examples)} examples")
    rng = random.Random(f"hyft-kshot/{seed}/{k}")
    if label_key is None:
        return [examples[i] for i in rng.sample(range(len(examples)), k)]
    by_label: dict[Hashable, list[int]] = {}
    for index, example in enumerate(examples):
        by_label.setdefault(example[label_key], []).append(index)
    chosen: list[int] = []
    for label, count in k_shot_label_counts(list(by_label), k, seed).items():
        pool = by_label[label]
        if count > len(pool):
            raise ValueError(f"label {label!r} needs {count} shots but the pool has only {len(pool)}")
        chosen.extend(rng.sample(pool, count))
    rng.shuffle(chosen)
    return [examples[i] for i in chosen]


def pair_group(task: Task, example: Example) -> str | None:
    """The text that ties rows of a pair task together: its first text field (XNLI/MNLI: the premise, which
    the datasets pair with one hypothesis per label; QNLI: the question). ``None`` for single-text tasks.

    Rows of one group must sit on one side of a split: a model that learned a premise with two of its
    labels is pushed to the wrong answer on the third, so a validation or scored row that shares a premise
    with the shots reads below chance (XNLI dev at k = 512: 37 % of the validation rows did).
    """
    if len(task.text_fields) < 2:
        return None
    return example.get(task.text_fields[0])


def without_groups_of(task: Task, rows: list[Example], taken: list[Example]) -> list[Example]:
    """``rows`` minus every row that shares a :func:`pair_group` with a row of ``taken``."""
    groups = {pair_group(task, row) for row in taken} - {None}
    if not groups:
        return rows
    return [row for row in rows if pair_group(task, row) not in groups]


def draw_shots(
    task: Task,
    language: str,
    k: int,
    seed: int,
    eval_examples: list[Example],
    data: DataSource | None = None,
) -> tuple[list[Example], list[Example]]:
    """``(shots, examples_to_evaluate)`` for one language.

    Shots come from ``task.shot_split`` (e.g. XNLI dev) when the task has one, else from the eval split
    itself, and then the drawn examples and every row sharing their :func:`pair_group` are removed from
    ``eval_examples`` (pass the full split, before any ``max_examples`` cut, so shots and evaluated rows
    come from one fixed pool). Separate splits are
    disjoint by construction of the data (XNLI dev and test share no premise, shared/data/README.md).
    """
    if k == 0:
        return [], eval_examples
    if not task.supports_fewshot:
        raise DataError(f"task {task.name!r} is zero-shot only (num_fewshot must be 0, got {k})")
    label_key = "label" if task.kind == "classification" else None
    pool = task.load(task.shot_split, language, data) if task.shot_split else eval_examples
    try:
        shots = sample_k_shot(pool, k, seed, label_key=label_key)
    except ValueError as exc:
        raise DataError(f"{task.name} ({language}): {exc}") from None
    shot_ids = {shot["id"] for shot in shots}
    rest = [example for example in eval_examples if example["id"] not in shot_ids]
    return shots, without_groups_of(task, rest, shots)


def evaluation_rows(
    task: Task,
    language: str,
    k: int,
    seed: int,
    data: DataSource | None = None,
    exclude_ids: Collection[str] = (),
    max_examples: int | None = None,
) -> tuple[list[Example], list[Example]]:
    """``(shots, rows_to_score)`` for one language: the protocol every evaluation follows. Load the eval
    split, draw the k prompt shots (:func:`draw_shots`, removed from the rows when they come from the same
    split), drop ``exclude_ids`` (rows an adapter trained or calibrated on) and every row of the split that
    shares a :func:`pair_group` with them, then keep the first ``max_examples`` — cut last, so the scored
    rows are a fixed prefix whatever k is."""
    split = task.load(task.eval_split, language, data)
    shots, rows = draw_shots(task, language, k, seed, split, data)
    excluded = set(exclude_ids)
    rows = without_groups_of(
        task,
        [row for row in rows if row["id"] not in excluded],
        [row for row in split if row["id"] in excluded],
    )
    return shots, rows[:max_examples] if max_examples else rows
