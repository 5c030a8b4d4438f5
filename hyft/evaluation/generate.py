"""Batched greedy generation with stop strings (translation, GSM8K, HumanEval, MT-Bench).

Prompts are left-padded so every row's first new token sits at the same column; ``generate`` derives
position ids from the attention mask. A row stops at EOS, at ``max_new_tokens``, or as soon as its
decoded new text contains a stop string; the returned text is cut before the stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from hyft.distributed import map_batches
from hyft.evaluation.classify import _max_length, _pad_id, model_device
from hyft.tasks.causal_lm import leading_special_ids

StopReason = Literal["stop_string", "eos", "max_new_tokens"]


@dataclass
class Generation:
    """``text``: decoded new text cut before the first stop string; ``new_tokens``: tokens generated up
    to and including the one that completed the stop string or EOS; ``stop_reason``: why it ended."""

    text: str
    new_tokens: int
    stop_reason: StopReason


class _StopOnStrings(StoppingCriteria):
    """Marks a row done once its decoded new tokens contain any stop string; records the step."""

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str], prompt_width: int):
        self.tokenizer, self.stop_strings, self.prompt_width = tokenizer, list(stop_strings), prompt_width
        self.stopped_after: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        new = input_ids[:, self.prompt_width :]
        for row in range(input_ids.shape[0]):
            if row in self.stopped_after:
                done[row] = True
                continue
            text = self.tokenizer.decode(new[row], skip_special_tokens=True)
            if any(stop in text for stop in self.stop_strings):
                self.stopped_after[row] = new.shape[1]
                done[row] = True
        return done


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cuts = [text.find(stop) for stop in stop_strings if stop and stop in text]
    return text[: min(cuts)] if cuts else text


@torch.no_grad()
def greedy_generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    stop_strings: Sequence[str] = (),
    batch_size: int = 8,
    progress: bool = True,
) -> list[Generation]:
    """Greedy continuations of ``prompts`` (one :class:`Generation` each, in input order).

    Prompts longer than the model's limit minus ``max_new_tokens`` lose tokens on the left (after BOS).
    """
    device, pad = model_device(model), _pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    limit = _max_length(model, tokenizer)
    keep = len(leading_special_ids(tokenizer))
    encoded = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if limit is not None and len(ids) + max_new_tokens > limit:
            room = max(1, limit - max_new_tokens - keep)
            ids = ids[:keep] + ids[-room:]
        encoded.append(ids)
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=tokenizer.bos_token_id,
    )
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))

    def generate(start: int) -> list[tuple[int, Generation]]:
        indices = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in indices)
        input_ids = torch.full((len(indices), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, i in enumerate(indices):
            input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            attention_mask[row, width - len(encoded[i]) :] = 1
        stopper = _StopOnStrings(tokenizer, stop_strings, width)
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([stopper]) if stop_strings else None,
        )
        new_tokens = output[:, width:].cpu()
        return [
            (i, _finish(tokenizer, new_tokens[row], eos, stopper.stopped_after.get(row), stop_strings))
            for row, i in enumerate(indices)
        ]

    # Inside hyft.distributed.sharded_evaluation the batches are split over the ranks and gathered back
    # (a replicated model, DDP: FSDP would need every rank to decode the same number of tokens).
    results: list[Generation | None] = [None] * len(encoded)
    batches = map_batches(
        generate,
        range(0, len(order), batch_size),
        lambda items: tqdm(items, desc="generating", disable=not progress),
    )
    for pairs in batches:
        for i, generation in pairs:
            results[i] = generation
    return results  # type: ignore[return-value]


def _finish(
    tokenizer: Any, new: torch.Tensor, eos: int | None, stopped_after: int | None, stops
) -> Generation:
    # Tokens after a row finished are padding; count only up to what ended the row.
    eos_at = (new == eos).nonzero() if eos is not None else torch.empty(0, 1)
    n, reason = len(new), "max_new_tokens"
    if eos_at.numel():
        n, reason = int(eos_at[0, 0]) + 1, "eos"
    if stopped_after is not None and stopped_after <= n:
        n, reason = stopped_after, "stop_string"
    text = tokenizer.decode(new[:n], skip_special_tokens=True)
    return Generation(cut_at_stop(text, stops), n, reason)
