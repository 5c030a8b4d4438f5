"""Generation tasks (FLORES translation, GSM8K, HumanEval, MT-Bench) → a results dict.

Greedy decoding with the task template's stop strings; the task's own scorer gives the metric
(BLEU/chrF per direction, exact match, pass@1; MT-Bench: BLEU against the GPT-4 reference answers and,
with ``judge``, a local judge model's 1–10 score from :mod:`hyft.evaluation.judge`). Shots and the
``max_examples`` cut follow the same protocol as classification (see :mod:`hyft.evaluation.evaluate`).

Translation aggregates: ``delta_bleu``/``delta_chrf`` are the paper's FLORES Δ, max − min over the
EN→X directions (None with fewer than two); ``reverse_gap_bleu``/``reverse_gap_chrf`` are the mean
|a→b − b→a| over the pairs run in both directions (None without such a pair).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

from hyft.evaluation import metrics
from hyft.evaluation.evaluate import results_header
from hyft.evaluation.generate import greedy_generate
from hyft.evaluation.judge import PROMPT_VERSION
from hyft.evaluation.scoring import generation_scorer
from hyft.tasks.base import Task, direction
from hyft.tasks.kshot import evaluation_rows
from hyft.tasks.loading import DataSource
from hyft.tasks.templates import (
    ChatTemplateMode,
    GenerationTemplate,
    Template,
    chat_conversation,
    chat_prompt,
    render_prompt,
    template_for,
)


def _generate_answers(
    model,
    tokenizer,
    task,
    template: GenerationTemplate,
    rows,
    shots,
    batch_size,
    max_new_tokens,
    progress,
    chat_template: ChatTemplateMode = "auto",
) -> list[list[str]]:
    """One answer per turn (MT-Bench has two; every other task one); prompts in the tokenizer's chat
    template under ``chat_template: auto`` when it has one, as training formats them."""
    if not task.extra.get("multi_turn"):
        prompts = [
            chat_prompt(tokenizer, render_prompt(task, template, row, shots), chat_template) for row in rows
        ]
        outputs = greedy_generate(
            model, tokenizer, prompts, max_new_tokens, template.stop_strings, batch_size, progress
        )
        # Translations lose the space the template puts before the target; code keeps its indentation.
        keep = task.kind != "translation"
        return [[output.text if keep else output.text.strip()] for output in outputs]
    answers: list[list[str]] = [[] for _ in rows]
    for turn in range(max(len(row["turns"]) for row in rows)):
        active = [i for i, row in enumerate(rows) if turn < len(row["turns"])]
        prompts = [chat_conversation(tokenizer, template, rows[i], answers[i], chat_template) for i in active]
        outputs = greedy_generate(
            model, tokenizer, prompts, max_new_tokens, template.stop_strings, batch_size, progress
        )
        for i, output in zip(active, outputs, strict=True):
            answers[i].append(output.text.strip())
    return answers


def evaluate_generation(
    model: Any,
    tokenizer: Any,
    task: Task,
    languages: Sequence[str],
    *,
    num_fewshot: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    max_examples: int | None = None,
    data: DataSource | None = None,
    templates: Mapping[str, Template] | None = None,
    max_new_tokens: int | None = None,
    sandbox_timeout_s: float = 10.0,
    progress: bool = True,
    exclude_ids: Mapping[str, Collection[str]] | None = None,
    judge: str | None = None,
    judge_max_new_tokens: int = 512,
    chat_template: ChatTemplateMode = "auto",
) -> dict[str, Any]:
    """Greedy generation scored by the task (translation: ``languages`` are directions ``src-tgt``).

    ``exclude_ids[lang]``: rows never evaluated (e.g. the examples an adapter was trained on, for tasks
    whose shots come from the evaluation split). ``judge``: path (or Hub id) of a causal LM that grades
    MT-Bench answers (ignored by other tasks); the result then records it under ``"judge"``.
    """
    per_language, samples, shot_ids = {}, [], {}
    judged = judge is not None and task.name == "mtbench"
    judge_model = judge_tokenizer = None
    if judged:
        from hyft.evaluation.classify import model_device
        from hyft.evaluation.judge import load_judge

        judge_model, judge_tokenizer = load_judge(judge, model_device(model))
    for lang in languages:
        template = template_for(task, lang, templates)
        shots, rows = evaluation_rows(
            task, lang, num_fewshot, seed, data, (exclude_ids or {}).get(lang, ()), max_examples
        )
        shot_ids[lang] = [shot["id"] for shot in shots]
        answers = _generate_answers(
            model,
            tokenizer,
            task,
            template,
            rows,
            shots,
            batch_size,
            max_new_tokens or task.max_new_tokens,
            progress,
            chat_template,
        )
        texts = [answer[0] if len(answer) == 1 else "\n\n".join(answer) for answer in answers]
        scores = generation_scorer(task)(
            texts, rows, {"sandbox_timeout_s": sandbox_timeout_s, "turn_answers": answers}
        )
        per_example = scores.pop("per_example", None)  # e.g. HumanEval pass/fail per problem
        if judged:
            from hyft.evaluation.judge import judge_answers

            graded = judge_answers(
                judge_model,
                judge_tokenizer,
                rows,
                answers,
                batch_size=batch_size,
                max_new_tokens=judge_max_new_tokens,
                progress=progress,
            )
            scores.update(
                judge_score=graded.mean, judge_ratings=graded.parsed, judge_unparsed=graded.unparsed
            )
            per_example = [
                {
                    **(per_example[i] if per_example else {}),
                    "judge_scores": graded.scores[i],
                    "judge_outputs": graded.outputs[i],
                }
                for i in range(len(rows))
            ]
        per_language[lang] = {"n": len(rows), **scores}
        if task.kind == "translation":
            per_language[lang]["bleu_signature"] = metrics.bleu_signature(rows[0]["tgt_lang"])
        for i, (row, answer) in enumerate(zip(rows, answers, strict=True)):
            sample = {"id": row["id"], "lang": lang, "prediction": answer[0] if len(answer) == 1 else answer}
            if task.kind == "translation" or "reference_field" in task.extra:
                sample["reference"] = task.reference(row)
            elif row.get("reference_turns"):  # MT-Bench: the GPT-4 reference answer, one entry per turn
                sample["reference"] = row["reference_turns"]
            if per_example is not None:
                sample.update(per_example[i])
            samples.append(sample)
    result = results_header(task, languages, "decoder", num_fewshot, seed, shot_ids) | {
        "per_language": per_language
    }
    if task.kind == "translation":
        for name in ("bleu", "chrf"):
            by_direction = {lang: entry[name] for lang, entry in per_language.items()}
            result[name] = by_direction
            result[f"avg_{name}"] = metrics.macro_average(by_direction)
            result[f"delta_{name}"] = _en_x_spread_or_none(by_direction)
            result[f"reverse_gap_{name}"] = _direction_gap_or_none(by_direction)
    else:
        result[task.metric] = {lang: entry.get(task.metric) for lang, entry in per_language.items()}
        for name in task.extra.get("also_reported", ()):  # MT-Bench: reference_bleu beside judge_score
            result[name] = {lang: entry.get(name) for lang, entry in per_language.items()}
    if task.name == "mtbench":
        result["judge"] = (
            {
                "model": judge,
                "prompt": PROMPT_VERSION,
                "max_new_tokens": judge_max_new_tokens,
                "ratings": sum(e.get("judge_ratings", 0) for e in per_language.values()),
                "unparsed": sum(e.get("judge_unparsed", 0) for e in per_language.values()),
            }
            if judged
            else None
        )
    result["samples"] = samples
    return result


def _en_x_spread_or_none(by_direction: Mapping[str, float]) -> float | None:
    """The paper's FLORES Δ: max − min over the EN→X directions; None with fewer than two of them."""
    if sum(key.startswith("en-") for key in by_direction) < 2:
        return None
    return metrics.en_x_spread(by_direction)


def _direction_gap_or_none(by_direction: Mapping[str, float]) -> float | None:
    """Reverse-direction gap: mean |a→b − b→a| over pairs with both directions; None when none has both."""
    keys = set(by_direction)
    if not any(f"{b}-{a}" in keys for a, b in (key.split("-", 1) for key in keys)):
        return None
    return metrics.direction_gap(by_direction)


def translation_directions(
    targets: Sequence[str],
    source_language: str = "en",
    directions: Literal["both", "from_source", "to_source"] = "both",
) -> list[str]:
    """Direction keys for ``targets``: ``en-de`` (from_source), ``de-en`` (to_source), or both in turn."""
    keys = []
    for target in targets:
        if directions in ("both", "from_source"):
            keys.append(direction(source_language, target))
        if directions in ("both", "to_source"):
            keys.append(direction(target, source_language))
    return keys
