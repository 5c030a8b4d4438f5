"""Classification scores for both model kinds, as a probability distribution per example (for ECE).

* Encoder (``...ForSequenceClassification``): the head's logits; class i = ``task.labels[i]``.
* Decoder (any causal LM): the log-likelihood of each label's verbaliser after the prompt. Rows are
  left-padded with explicit ``position_ids`` (so absolute-position models see the same positions as
  unpadded) and only the last positions' logits are computed (``logits_to_keep``) when the model
  supports it, which keeps memory at ``[batch, longest verbaliser, vocab]`` instead of the whole prompt.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from hyft.distributed import map_batches
from hyft.tasks.base import Example, Task
from hyft.tasks.causal_lm import encode_context_continuation, leading_special_ids, truncate_left

Normalization = Literal["sum", "mean"]


@dataclass
class ClassificationScores:
    """``scores``: [N, C] float32 logits (encoder) or verbaliser log-likelihoods (decoder);
    ``probs``: [N, C] softmax of ``scores``, rows sum to 1; ``predictions``: argmax class ids [N]."""

    scores: torch.Tensor
    probs: torch.Tensor
    predictions: list[int]

    @classmethod
    def from_scores(cls, scores: torch.Tensor) -> ClassificationScores:
        scores = scores.float()
        probs = torch.softmax(scores, dim=-1)
        return cls(scores, probs, probs.argmax(dim=-1).tolist())


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _accepts(model: torch.nn.Module, argument: str) -> bool:
    base = (
        model.get_base_model() if hasattr(model, "get_base_model") else model
    )  # PEFT wrappers take **kwargs
    return argument in inspect.signature(base.forward).parameters


@torch.no_grad()
def encoder_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    task: Task,
    examples: Sequence[Example],
    batch_size: int = 16,
    max_length: int = 256,
    progress: bool = True,
) -> ClassificationScores:
    """Logits of a sequence-classification model over ``examples`` (text fields as a segment pair)."""
    device = model_device(model)

    def score(start: int) -> torch.Tensor:
        batch = examples[start : start + batch_size]
        texts = [[example[field] for example in batch] for field in task.text_fields]
        inputs = tokenizer(*texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return model(**inputs.to(device)).logits.float().cpu()

    rows = map_batches(
        score,
        range(0, len(examples), batch_size),
        lambda items: tqdm(items, desc=f"{task.name} encoder", disable=not progress),
    )
    logits = torch.cat(rows) if rows else torch.empty(0, len(task.labels))
    if logits.shape[-1] != len(task.labels):
        raise ValueError(
            f"the model head has {logits.shape[-1]} outputs but {task.name!r} has {len(task.labels)} labels"
        )
    return ClassificationScores.from_scores(logits)


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0


def _max_length(model: torch.nn.Module, tokenizer: Any) -> int | None:
    limits = [
        getattr(model.config, "max_position_embeddings", None),
        getattr(tokenizer, "model_max_length", None),
    ]
    limits = [limit for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000]
    return min(limits) if limits else None


@torch.no_grad()
def continuation_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 8,
    normalization: Normalization = "sum",
    progress: bool = True,
) -> torch.Tensor:
    """log p(continuation | context) for each ``(context, continuation)`` pair → [len(pairs)] float32.

    ``normalization="mean"`` divides by the continuation's token count (per-token log-likelihood).
    Contexts longer than the model's limit lose tokens on the left (after BOS).
    """
    limit = _max_length(model, tokenizer)
    keep = len(leading_special_ids(tokenizer))
    encoded = [truncate_left(*encode_context_continuation(tokenizer, c, x), limit, keep) for c, x in pairs]
    # Longest first: similar lengths share a batch, and an out-of-memory error shows up at once.
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    device, pad = model_device(model), _pad_id(tokenizer)
    use_positions, use_keep = _accepts(model, "position_ids"), _accepts(model, "logits_to_keep")
    result = torch.empty(len(encoded), dtype=torch.float32)

    def score(start: int) -> tuple[list[int], torch.Tensor]:
        indices = order[start : start + batch_size]
        sequences = [encoded[i][0] + encoded[i][1] for i in indices]
        width = max(len(sequence) for sequence in sequences)
        input_ids = torch.full((len(indices), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):  # left padding: every continuation ends at `width`
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
            attention_mask[row, width - len(sequence) :] = 1
        longest_continuation = max(len(encoded[i][1]) for i in indices)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
        }
        if use_positions:
            kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0).to(device)
        kept = longest_continuation + 1 if use_keep else width
        if use_keep:
            kwargs["logits_to_keep"] = kept
        logits = model(**kwargs, use_cache=False).logits[:, -kept:].float()
        logprobs = torch.log_softmax(logits, dim=-1).cpu()
        values = torch.empty(len(indices), dtype=torch.float32)
        for row, i in enumerate(indices):
            continuation = torch.tensor(encoded[i][1])
            n = len(continuation)
            # logits at kept position p predict the token at p + 1; the continuation fills the last n slots
            predicting = logprobs[row, kept - n - 1 : kept - 1]
            total = predicting.gather(-1, continuation.unsqueeze(-1)).sum()
            values[row] = total / n if normalization == "mean" else total
        return indices, values

    # Inside hyft.distributed.sharded_evaluation the batches (formed as one process forms them) are split
    # over the ranks and gathered back: the same numbers as one process.
    batches = map_batches(
        score,
        range(0, len(order), batch_size),
        lambda items: tqdm(items, desc="scoring", disable=not progress),
    )
    for indices, values in batches:
        result[indices] = values
    return result


def decoder_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    verbalizers: Sequence[str],
    batch_size: int = 8,
    normalization: Normalization = "sum",
    progress: bool = True,
) -> ClassificationScores:
    """Verbaliser log-likelihoods [N, C] under each prompt, and their softmax over the C labels.

    ``verbalizers[i]`` is the continuation of class i (see ``verbalizers_in_label_order``).
    """
    pairs = [(prompt, verbalizer) for prompt in prompts for verbalizer in verbalizers]
    flat = continuation_logprobs(model, tokenizer, pairs, batch_size, normalization, progress)
    return ClassificationScores.from_scores(flat.view(len(prompts), len(verbalizers)))
