"""Token-level building blocks shared by decoder scoring and training on the same templates.

``build_causal_lm_example`` gives the training engineer ``input_ids/attention_mask/labels`` with the
prompt masked to -100, tokenised exactly as :mod:`hyft.evaluation.classify` scores it; ``encode_pair``
does the same job for encoder classifiers.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from hyft.tasks.base import Example, Task
from hyft.tasks.templates import (
    ChatTemplateMode,
    Template,
    chat_prompt,
    chat_target,
    render_prompt,
    render_target,
    template_for,
)

IGNORE_INDEX = -100
# Weak keys: an id()-keyed cache could hand a dead tokenizer's answer to a new one at the same address.
_LEADING_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def leading_special_ids(tokenizer: Any) -> list[int]:
    """Special tokens the tokenizer puts before text (e.g. Llama's BOS); ``[]`` for GPT-2 style."""
    try:
        return _LEADING_CACHE[tokenizer]
    except (KeyError, TypeError):
        pass
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    start = next((i for i in range(len(with_special)) if with_special[i : i + len(plain)] == plain), 0)
    leading = list(with_special[:start])
    try:
        _LEADING_CACHE[tokenizer] = leading
    except TypeError:  # not weak-referenceable: recompute next time (two tiny tokenizer calls)
        pass
    return leading


def encode_context_continuation(
    tokenizer: Any, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` (with leading specials) and of ``continuation`` after it.

    Trailing spaces of the context move to the continuation, and the pair is tokenised jointly then
    split where the context's tokens end, so BPE merges match what the model sees at generation
    (lm-eval-harness does the same). If the joint tokens do not start with the context's tokens, the
    continuation is tokenised on its own so the scored tokens are still exactly the continuation.
    """
    stripped = context.rstrip(" ")
    continuation = context[len(stripped) :] + continuation
    context_ids = tokenizer(stripped, add_special_tokens=False)["input_ids"]
    whole_ids = tokenizer(stripped + continuation, add_special_tokens=False)["input_ids"]
    if whole_ids[: len(context_ids)] == context_ids and len(whole_ids) > len(context_ids):
        continuation_ids = whole_ids[len(context_ids) :]
    else:
        continuation_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    prefix = leading_special_ids(tokenizer)
    if not prefix and not context_ids:
        # The first continuation token needs something to be predicted from.
        fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        prefix = [fallback]
    return prefix + context_ids, continuation_ids


def truncate_left(context_ids: list[int], continuation_ids: list[int], max_length: int | None, keep: int = 0):
    """Drop context tokens from the left (after the first ``keep``) so the pair fits ``max_length``.

    The continuation is kept whole (cut on the right only if it alone is too long): the scored or
    trained tokens matter more than the oldest demonstrations.
    """
    if max_length is None or len(context_ids) + len(continuation_ids) <= max_length:
        return context_ids, continuation_ids
    continuation_ids = continuation_ids[: max(1, max_length - keep - 1)]
    room = max_length - len(continuation_ids) - keep
    return context_ids[:keep] + context_ids[max(keep, len(context_ids) - room) :], continuation_ids


def build_causal_lm_example(
    task: Task | str,
    example: Example,
    lang: str,
    tokenizer: Any,
    shots: Sequence[Example] = (),
    template: Template | None = None,
    max_length: int | None = None,
    add_eos: bool = True,
    chat_template: ChatTemplateMode = "auto",
) -> dict[str, list[int]]:
    """One causal-LM training example: prompt tokens masked to -100, target tokens supervised.

    Target = the gold label's verbaliser (classification) or the formatted gold output (translation,
    GSM8K, HumanEval) followed by EOS when ``add_eos`` (so the model learns where to stop).
    Returns lists of equal length: ``input_ids``, ``attention_mask`` (all 1), ``labels``.
    ``chat_template``: ``auto`` puts the prompt in the tokenizer's chat template when it has one, as the
    evaluation does with the same setting (:func:`hyft.tasks.templates.chat_prompt`); ``never``: plain text.
    """
    if isinstance(task, str):
        from hyft.tasks.registry import get_task

        task = get_task(task)
    template = template or template_for(task, lang)
    prompt = chat_prompt(tokenizer, render_prompt(task, template, example, shots), chat_template)
    target = chat_target(tokenizer, render_target(task, template, example), chat_template)
    context_ids, target_ids = encode_context_continuation(tokenizer, prompt, target)
    if add_eos and tokenizer.eos_token_id is not None:
        target_ids = target_ids + [tokenizer.eos_token_id]
    context_ids, target_ids = truncate_left(
        context_ids, target_ids, max_length, len(leading_special_ids(tokenizer))
    )
    input_ids = context_ids + target_ids
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(context_ids) + list(target_ids),
    }


def _pair_task(example: Example) -> Task:
    from hyft.tasks.registry import get_task

    # Field layouts of the built-in classification tasks, most specific first.
    for fields, name in (
        (("premise", "hypothesis"), "xnli"),
        (("question1", "question2"), "qqp"),
        (("question", "sentence"), "qnli"),
        (("sentence",), "sst2"),
    ):
        if all(field in example for field in fields):
            return get_task(name)
    raise ValueError(f"cannot tell the task of example {example.get('id')}; pass task=")


def encode_pair(
    tokenizer: Any, example: Example, max_length: int, task: Task | str | None = None
) -> dict[str, Any]:
    """Encoder input for a classification example: text fields as a (pair of) segment(s) + class id.

    Returns the tokenizer's lists (``input_ids``, ``attention_mask``, maybe ``token_type_ids``), truncated
    to ``max_length`` (longest segment first), plus ``labels`` = index of the label in ``task.labels``.
    ``task`` is inferred from the example's fields when omitted (NLI, QNLI, QQP, SST-2 layouts).
    """
    if isinstance(task, str):
        from hyft.tasks.registry import get_task

        task = get_task(task)
    task = task or _pair_task(example)
    texts = [example[field] for field in task.text_fields]
    encoded = dict(tokenizer(*texts, truncation=True, max_length=max_length))
    if "label" in example:
        encoded["labels"] = task.label_index(example)
    return encoded
