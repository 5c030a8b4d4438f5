"""Public metric functions: ``from hyft.metrics import accuracy, expected_calibration_error, ...``.

Thin re-export of :mod:`hyft.evaluation.metrics` (see there for formulas).
"""

from hyft.evaluation.metrics import (
    accuracy,
    apply_temperature,
    average_ece,
    bleu,
    bleu_signature,
    bleu_tokenizer,
    chrf,
    direction_gap,
    expected_calibration_error,
    fit_temperature,
    gsm8k_exact_match,
    gsm8k_extract_answer,
    macro_average,
    paired_bootstrap_ci,
    parity_gap,
    pass_at_k,
)

__all__ = [
    "accuracy",
    "apply_temperature",
    "average_ece",
    "bleu",
    "bleu_signature",
    "bleu_tokenizer",
    "chrf",
    "direction_gap",
    "expected_calibration_error",
    "fit_temperature",
    "gsm8k_exact_match",
    "gsm8k_extract_answer",
    "macro_average",
    "paired_bootstrap_ci",
    "parity_gap",
    "pass_at_k",
]
