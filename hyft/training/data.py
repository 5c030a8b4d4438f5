"""Batching for training: a seeded, resumable, rank-sharded order and a padding collator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch: a permutation seeded by (seed, epoch), identical on every rank."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n_examples, generator=generator).tolist()


def micro_batches(order: list[int], batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Split an epoch's order into this rank's micro-batches.

    Global batch g holds ``order[g·B·W : (g+1)·B·W]``; rank r takes its r-th slice of size B, so N ranks
    with batch B see exactly the examples one process sees with batch B·N.
    """
    global_size = batch_size * world_size
    batches = []
    for start in range(0, len(order), global_size):
        chunk = order[start : start + global_size]
        mine = chunk[rank * batch_size : (rank + 1) * batch_size]
        if mine:
            batches.append(mine)
    return batches


def collate(examples: Sequence[dict[str, Any]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of tokenised examples on the right into tensors.

    Each example has ``input_ids`` (list[int]), optional ``attention_mask`` and ``labels`` (an int for
    classification, or a list[int] per token for causal LM, padded with -100).
    """
    length = max(len(e["input_ids"]) for e in examples)
    batch: dict[str, torch.Tensor] = {}
    ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, example in enumerate(examples):
        n = len(example["input_ids"])
        ids[i, :n] = torch.as_tensor(example["input_ids"])
        mask[i, :n] = torch.as_tensor(example.get("attention_mask", [1] * n))
    batch["input_ids"], batch["attention_mask"] = ids, mask
    if "token_type_ids" in examples[0]:
        types = torch.zeros((len(examples), length), dtype=torch.long)
        for i, example in enumerate(examples):
            types[i, : len(example["token_type_ids"])] = torch.as_tensor(example["token_type_ids"])
        batch["token_type_ids"] = types
    if "labels" in examples[0]:
        first = examples[0]["labels"]
        if isinstance(first, (list, tuple)) or (torch.is_tensor(first) and first.dim() > 0):
            labels = torch.full((len(examples), length), -100, dtype=torch.long)
            for i, example in enumerate(examples):
                labels[i, : len(example["labels"])] = torch.as_tensor(example["labels"])
        else:
            labels = torch.as_tensor([int(e["labels"]) for e in examples], dtype=torch.long)
        batch["labels"] = labels
    return batch
