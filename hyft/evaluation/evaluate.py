"""Evaluate one model on one task over languages → a results dict (JSON-ready, schema_version 1).

Classification: per-language accuracy and ECE, macro, Δ (parity gap), Avg-ECE; temperature-scaled
ECE beside the raw one when dev scores are given or computed; orthographic robustness on request.
Translation: per-direction BLEU/chrF, their averages and Δ. Generation: the task's own scorer.
Every result keeps a per-example ``samples`` list (id, gold, prediction, confidence ...).

Protocol: shots per language from :func:`hyft.tasks.kshot.draw_shots` (same for every method at a
seed index); ``max_examples`` keeps the first n evaluation rows in file order (identical for every
method and seed), after shots are removed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import torch

from hyft.evaluation import metrics
from hyft.evaluation.classify import ClassificationScores, decoder_scores, encoder_scores
from hyft.tasks.base import Example, Task
from hyft.tasks.kshot import evaluation_rows
from hyft.tasks.loading import DataError, DataSource
from hyft.tasks.registry import get_task
from hyft.tasks.templates import (
    ChatTemplateMode,
    ClassificationTemplate,
    Template,
    chat_prompt,
    chat_target,
    render_prompt,
    template_for,
    verbalizers_in_label_order,
)

SCHEMA_VERSION = 1
ModelKind = Literal["encoder", "decoder"]


def classification_scores(
    model: Any,
    tokenizer: Any,
    task: Task,
    examples: Sequence[Example],
    model_kind: ModelKind,
    template: ClassificationTemplate | None,
    shots: Sequence[Example] = (),
    batch_size: int = 8,
    progress: bool = True,
    chat_template: ChatTemplateMode = "auto",
) -> ClassificationScores:
    """[N, C] scores and probabilities of ``examples`` (encoder head, or decoder verbalisers + shots; with
    ``chat_template: auto`` in the tokenizer's chat template when it has one, as training formats them)."""
    if model_kind == "encoder":
        return encoder_scores(model, tokenizer, task, examples, batch_size, progress=progress)
    prompts = [
        chat_prompt(tokenizer, render_prompt(task, template, example, shots), chat_template)
        for example in examples
    ]
    verbalizers = [
        chat_target(tokenizer, text, chat_template) for text in verbalizers_in_label_order(task, template)
    ]
    return decoder_scores(model, tokenizer, prompts, verbalizers, batch_size, progress=progress)


def _calibrated_ece(
    scores: torch.Tensor, labels: Sequence[int], dev: tuple[Any, Sequence[int]], bins: int
) -> dict:
    temperature = metrics.fit_temperature(dev[0], list(dev[1]))
    probs = metrics.apply_temperature(scores, temperature)
    return {
        "temperature": temperature,
        "ece_temperature_scaled": metrics.expected_calibration_error(probs, labels, bins),
    }


def _robustness(
    task: Task,
    examples: Sequence[Example],
    original: ClassificationScores,
    gold: list[int],
    seed: int,
    score: Any,
) -> tuple[dict, list[str | None], list[int]]:
    """Per-language robustness row, the operation per example and the predictions on the variants.

    Each example gets exactly one orthographic operation (part A's assignment, keyed by the example id
    and the seed; None when no operation changes it), then the variants are scored like the originals.
    """
    from hyft.evaluation.orthographic import characters_changed, language_robustness, make_variant

    variants, operations, chars = [], [], []
    for example in examples:
        variant, operation = make_variant(
            example, seed, record_id=example["id"], text_fields=task.text_fields
        )
        variants.append(variant)
        operations.append(operation)
        chars.append(sum(characters_changed(example[f], variant[f]) for f in task.text_fields))
    varied = score(variants)
    row = language_robustness(
        [p == y for p, y in zip(original.predictions, gold, strict=True)],
        [p == y for p, y in zip(varied.predictions, gold, strict=True)],
        operations,
        chars,
    )
    return row, operations, varied.predictions


def evaluate_classification(
    model: Any,
    tokenizer: Any,
    task: Task,
    languages: Sequence[str],
    *,
    model_kind: ModelKind,
    num_fewshot: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    max_examples: int | None = None,
    data: DataSource | None = None,
    templates: Mapping[str, Template] | None = None,
    temperature_scaling: bool = False,
    calibration_examples: int = 500,
    dev_scores: Mapping[str, tuple[Any, Sequence[int]]] | None = None,
    calibration_rows: Mapping[str, Sequence[Example]] | None = None,
    orthographic: bool = False,
    ece_bins: int = 15,
    progress: bool = True,
    exclude_ids: Mapping[str, Collection[str]] | None = None,
    chat_template: ChatTemplateMode = "auto",
) -> dict[str, Any]:
    """Per-language accuracy/ECE and aggregates; see the module docstring for the protocol.

    ``exclude_ids[lang]``: rows never evaluated (training examples drawn from the evaluation split).

    The temperature per language is fitted here and only here, on (first match): ``dev_scores[lang] =
    (scores [N, C], labels [N])`` as given; ``calibration_rows[lang]``, held-out rows scored by this model
    (the runner passes the validation rows it never trained on); with ``temperature_scaling``, the first
    ``calibration_examples`` dev rows that are not shots.
    """
    if model_kind == "encoder" and num_fewshot:
        raise DataError(
            "k-shot for an encoder means training on the shots (hyft train), not prompting; "
            "evaluate the trained adapter with num_fewshot: 0"
        )
    per_language, samples, shot_ids = {}, [], {}
    for lang in languages:
        template = template_for(task, lang, templates) if model_kind == "decoder" else None
        shots, test = evaluation_rows(
            task, lang, num_fewshot, seed, data, (exclude_ids or {}).get(lang, ()), max_examples
        )
        shot_ids[lang] = [shot["id"] for shot in shots]

        def score(rows, shots=shots, template=template):
            return classification_scores(
                model, tokenizer, task, rows, model_kind, template, shots, batch_size, progress, chat_template
            )

        scored = score(test)
        gold = [task.label_index(example) for example in test]
        entry: dict[str, Any] = {
            "n": len(test),
            "accuracy": metrics.accuracy(scored.predictions, gold),
            "ece": metrics.expected_calibration_error(scored.probs, gold, ece_bins),
        }
        dev = (dev_scores or {}).get(lang)
        if dev is None and calibration_rows is not None and lang in calibration_rows:
            rows = calibration_rows[lang]
            dev = (score(rows).scores, [task.label_index(row) for row in rows])
        if dev is None and temperature_scaling:
            if task.shot_split is None:
                raise DataError(f"task {task.name!r} has no dev split to fit a temperature on")
            excluded = set(shot_ids[lang])
            pool = [row for row in task.load(task.shot_split, lang, data) if row["id"] not in excluded]
            pool = pool[:calibration_examples]
            dev = (score(pool).scores, [task.label_index(row) for row in pool])
        if dev is not None:
            entry.update(_calibrated_ece(scored.scores, gold, dev, ece_bins))
        language_samples = [
            {
                "id": example["id"],
                "lang": lang,
                "gold": example["label"],
                "prediction": task.labels[prediction],
                "confidence": max(probs),
                "probs": probs,
            }
            for example, prediction, probs in zip(
                test, scored.predictions, scored.probs.tolist(), strict=True
            )
        ]
        if orthographic:
            entry["orthographic"], operations, variant_predictions = _robustness(
                task, test, scored, gold, seed, score
            )
            for sample, operation, prediction in zip(
                language_samples, operations, variant_predictions, strict=True
            ):
                sample["operation"], sample["variant_prediction"] = operation, task.labels[prediction]
        per_language[lang] = entry
        samples += language_samples
    accuracy = {lang: entry["accuracy"] for lang, entry in per_language.items()}
    ece = {lang: entry["ece"] for lang, entry in per_language.items()}
    result = results_header(task, languages, model_kind, num_fewshot, seed, shot_ids) | {
        "per_language": per_language,
        "accuracy": accuracy,
        "macro": metrics.macro_average(accuracy),
        "delta": metrics.parity_gap(accuracy),
        "ece": ece,
        "avg_ece": metrics.average_ece(ece),
        "ece_bins": ece_bins,
    }
    if all("ece_temperature_scaled" in entry for entry in per_language.values()):
        result["avg_ece_temperature_scaled"] = metrics.average_ece(
            {lang: entry["ece_temperature_scaled"] for lang, entry in per_language.items()}
        )
    if orthographic:
        from hyft.evaluation.orthographic import robustness_report

        rows = {lang: entry["orthographic"] for lang, entry in per_language.items()}
        result["orthographic"] = robustness_report(
            {lang: row["acc_clean"] for lang, row in rows.items()},
            {lang: row["acc_variant"] for lang, row in rows.items()},
            {lang: row["changed_share"] for lang, row in rows.items()},
        )
    result["samples"] = samples
    return result


def results_header(
    task: Task, languages: Sequence[str], model_kind: str, k: int, seed: int, shot_ids: dict
) -> dict:
    """The fields every results dict starts with (task, protocol, shots used)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task.name,
        "kind": task.kind,
        "metric": task.metric,
        "model_kind": model_kind,
        "num_fewshot": k,
        "seed": seed,
        "languages": list(languages),
        "shot_ids": shot_ids,
    }


def evaluate_task(
    model: Any,
    tokenizer: Any,
    task: Task | str,
    languages: Sequence[str] | None = None,
    *,
    model_kind: ModelKind = "decoder",
    **options: Any,
) -> dict[str, Any]:
    """Dispatch on the task kind; ``languages`` defaults to all the task's languages (directions for
    translation: EN→X and X→EN for every X). ``options`` go to :func:`evaluate_classification` or
    :func:`evaluate_generation`."""
    # Imported here: evaluate_generation imports results_header from this module.
    from hyft.evaluation.evaluate_generation import evaluate_generation, translation_directions

    task = get_task(task) if isinstance(task, str) else task
    if languages is None:
        languages = list(task.languages)
        if task.kind == "translation":
            languages = translation_directions([lang for lang in languages if lang != "en"])
    if task.kind == "classification":
        return evaluate_classification(model, tokenizer, task, languages, model_kind=model_kind, **options)
    if model_kind != "decoder":
        raise DataError(f"task {task.name!r} needs a decoder (causal LM); model kind is {model_kind!r}")
    return evaluate_generation(model, tokenizer, task, languages, **options)
