"""MT-Bench single-answer grading by a local judge model (``eval.judge: <causal LM path>``).

The prompts follow the structure of FastChat's single-answer grading (Zheng et al., 2023, "Judging
LLM-as-a-Judge with MT-Bench and Chatbot Arena"), with hyft's own wording: a system line; an
instruction to judge impartially, explain briefly, then rate on 1–10 in the format ``Rating: [[x]]``;
the question and the assistant's answer between start/end markers. The second turn shows the whole
conversation and asks about the second answer only; questions with a GPT-4 reference answer (math,
reasoning, coding) show it as the reference, as FastChat does for those categories.

The judge decodes greedily; the score is the first ``[[x]]`` (integer or decimal) in its output, kept
when 1 ≤ x ≤ 10. An output without one is unparsed: its score is None and it is counted, never
replaced by a default. The MT-Bench score of a model is the mean over all parsed (question, turn)
ratings, as FastChat averages over turns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hyft.evaluation.generate import greedy_generate

PROMPT_VERSION = "hyft-single-answer-v1 (FastChat single-answer grading structure)"
SYSTEM_PROMPT = "You are a careful and impartial judge of the answers an AI assistant gives to users."
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_FORMAT = (
    "Start with a short explanation and stay as objective as possible. After the explanation, rate the "
    'answer on a scale of 1 to 10, writing the rating strictly in this format: "[[rating]]", for '
    'example: "Rating: [[5]]".'
)
_CRITERIA = (
    "Consider how helpful, relevant, accurate and detailed it is, how deep it goes and how creative it is."
)
_WITH_REFERENCE = (
    "A reference answer is given: compare the assistant's answer with it and treat every mistake as serious."
)


def parse_rating(text: str) -> float | None:
    """The first ``[[x]]`` in ``text`` as a float (``"[[7]]"`` → 7.0, ``"[[7.5]]"`` → 7.5); None when
    there is none or it lies outside 1–10."""
    match = _RATING.search(text or "")
    if match is None:
        return None
    value = float(match.group(1))
    return value if 1.0 <= value <= 10.0 else None


def grading_prompt(
    turns: Sequence[str], answers: Sequence[str], turn: int, reference_turns: Sequence[str] | None = None
) -> str:
    """The user message asking the judge to rate the answer to ``turns[turn]`` (0: first, 1: second)."""
    reference = reference_turns[turn] if reference_turns and turn < len(reference_turns) else None
    if turn == 0:
        instruction = (
            "[Instruction]\n"
            "Act as an impartial judge and rate the quality of the answer an AI assistant gave to the user "
            f"question shown below. {_CRITERIA} "
            + (f"{_WITH_REFERENCE} " if reference is not None else "")
            + _FORMAT
        )
        parts = [instruction, f"[Question]\n{turns[0]}"]
        if reference is not None:
            parts.append(f"[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]")
        parts.append(f"[The Start of Assistant's Answer]\n{answers[0]}\n[The End of Assistant's Answer]")
        return "\n\n".join(parts)
    instruction = (
        "[Instruction]\nAct as an impartial judge and rate the quality of an AI assistant's answer in the "
        "conversation shown below. Rate only the assistant's answer to the user's last question; the earlier "
        f"exchange is context. {_CRITERIA} "
        + (f"{_WITH_REFERENCE} " if reference is not None else "")
        + _FORMAT
    )
    conversation = []
    for index in range(turn + 1):
        conversation += [f"### User:\n{turns[index]}", f"### Assistant:\n{answers[index]}"]
    parts = [instruction]
    if reference is not None:
        reference_conversation = []
        for index in range(turn + 1):
            reference_conversation += [
                f"### User:\n{turns[index]}",
                f"### Reference answer:\n{reference_turns[index]}",
            ]
        parts.append(
            "<|The Start of Reference Answer|>\n"
            + "\n\n".join(reference_conversation)
            + "\n<|The End of Reference Answer|>"
        )
    parts.append(
        "<|The Start of the Assistant's Conversation with the User|>\n"
        + "\n\n".join(conversation)
        + "\n<|The End of the Assistant's Conversation with the User|>"
    )
    return "\n\n".join(parts)


def render_for_judge(tokenizer: Any, user: str, system: str = SYSTEM_PROMPT) -> str:
    """The judge's input text: its chat template with a system and a user message when it has one (the
    system line folded into the user message when the template rejects a system role), else plain text."""
    if getattr(tokenizer, "chat_template", None):
        for messages in (
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            [{"role": "user", "content": f"{system}\n\n{user}"}],
        ):
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 - templates raise their own errors for unsupported roles
                continue
            bos = tokenizer.bos_token
            # greedy_generate adds the special tokens itself: avoid a doubled BOS.
            return text[len(bos) :] if bos and text.startswith(bos) else text
    return f"{system}\n\n{user}\n\n[Judgement]\n"


@dataclass
class JudgeResult:
    """Per question, per turn: the judge's raw output and its parsed rating (None when unparsed)."""

    scores: list[list[float | None]]
    outputs: list[list[str]] = field(repr=False)

    @property
    def parsed(self) -> int:
        return sum(score is not None for row in self.scores for score in row)

    @property
    def unparsed(self) -> int:
        return sum(score is None for row in self.scores for score in row)

    @property
    def mean(self) -> float | None:
        """Mean over all parsed (question, turn) ratings; None when none parsed."""
        values = [score for row in self.scores for score in row if score is not None]
        return sum(values) / len(values) if values else None


def judge_answers(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict],
    answers: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 512,
    progress: bool = False,
) -> JudgeResult:
    """Rate every answered turn of every MT-Bench row (``rows[i]["turns"]``, optional
    ``rows[i]["reference_turns"]``) with the judge ``model``; ``answers[i][t]`` answers turn t."""
    slots, prompts = [], []
    for i, (row, answer) in enumerate(zip(rows, answers, strict=True)):
        for turn in range(min(len(row["turns"]), len(answer))):
            user = grading_prompt(row["turns"], answer, turn, row.get("reference_turns"))
            slots.append((i, turn))
            prompts.append(render_for_judge(tokenizer, user))
    outputs = greedy_generate(model, tokenizer, prompts, max_new_tokens, (), batch_size, progress)
    scores: list[list[float | None]] = [
        [None] * min(len(r["turns"]), len(a)) for r, a in zip(rows, answers, strict=True)
    ]
    texts: list[list[str]] = [[""] * len(row) for row in scores]
    for (i, turn), output in zip(slots, outputs, strict=True):
        texts[i][turn] = output.text
        scores[i][turn] = parse_rating(output.text)
    return JudgeResult(scores, texts)


def load_judge(name_or_path: str, device: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of the judge, a local (or cached) causal LM, in eval mode on ``device``
    (bfloat16 on a GPU, float32 on CPU)."""
    import torch

    from hyft.models import load_base_model

    dtype = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    model, tokenizer = load_base_model(name_or_path, "decoder", dtype=dtype)
    return model.to(device).eval(), tokenizer
