"""The generation scorers of the built-in tasks, keyed by task family: evaluation owns the metrics, so a
task never imports evaluation (the layer order in docs/ARCHITECTURE.md).

A scorer takes ``(predictions, examples, options)`` and returns the task's metric dict; options carries
``sandbox_timeout_s`` and ``turn_answers`` (MT-Bench's per-turn answers). A task may still bring its own
scorer (``Task.score_generations``, e.g. one registered by a user), which then takes precedence.
"""

from __future__ import annotations

from hyft.evaluation import metrics
from hyft.tasks.base import GenerationScorer, Task
from hyft.tasks.humaneval import HUMANEVAL_FIELDS
from hyft.tasks.mtbench import has_reference, reference_bleu_segments


def score_translations(hypotheses, examples, options) -> dict:
    references = [example["target"] for example in examples]
    return {
        "bleu": metrics.bleu(list(hypotheses), references, examples[0]["tgt_lang"]),
        "chrf": metrics.chrf(list(hypotheses), references),
    }


def score_gsm8k(predictions, examples, options) -> dict:
    references = [example["answer"] for example in examples]
    return {"exact_match": float(metrics.gsm8k_exact_match(list(predictions), references))}


def score_mtbench(answers, examples, options) -> dict:
    turn_answers = options.get("turn_answers") or [[answer] for answer in answers]
    hypotheses, references = reference_bleu_segments(turn_answers, examples)
    return {
        "judge_score": None,  # filled in by evaluate_generation when a judge model is given
        "reference_bleu": metrics.bleu(hypotheses, references, "en") if hypotheses else None,
        "reference_bleu_questions": sum(has_reference(example) for example in examples),
        "reference_bleu_segments": len(hypotheses),
        "reference_bleu_signature": metrics.bleu_signature("en"),
        "answered": sum(1 for answer in answers if answer.strip()),
        "note": "reference_bleu: BLEU against the GPT-4 reference answers (the paper's proxy; questions "
        "with a reference only); judge_score: local judge model (eval.judge), else None",
    }


def score_humaneval(completions, examples, options) -> dict:
    from hyft.evaluation.sandbox import run_humaneval_problems  # subprocess machinery: only when needed

    timeout_s = float(options.get("sandbox_timeout_s", 10.0))
    problems = [{field: example[field] for field in HUMANEVAL_FIELDS} for example in examples]
    outcomes = run_humaneval_problems(problems, list(completions), timeout_s)
    passed = [outcome.status == "passed" for outcome in outcomes]
    # One greedy sample per problem: pass@1 per problem is 0 or 1; pass_at_k keeps one estimator.
    per_problem = [metrics.pass_at_k(1, int(ok), 1) for ok in passed]
    return {
        "pass@1": sum(per_problem) / len(per_problem),
        "per_example": [
            {"passed": ok, "status": o.status, "reason": o.reason}
            for ok, o in zip(passed, outcomes, strict=True)
        ],
    }


SCORERS: dict[str, GenerationScorer] = {
    "flores": score_translations,
    "gsm8k": score_gsm8k,
    "mtbench": score_mtbench,
    "humaneval": score_humaneval,
}


def generation_scorer(task: Task) -> GenerationScorer:
    """The task's own scorer when it brings one, else the built-in scorer of its family."""
    if task.score_generations is not None:
        return task.score_generations
    if task.family not in SCORERS:
        raise ValueError(f"task {task.name!r} (family {task.family!r}) has no generation scorer")
    return SCORERS[task.family]
