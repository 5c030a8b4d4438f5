"""The closed sets the ledger speaks in: stages, drop reasons (one per dropped record) and flags.

A record gets exactly one drop reason: the first rule that fails in the fixed stage order below
(governance.md §1). Flags never drop anything; they mark records the report should talk about.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Stages in the order they run. ``done`` is the stage reached by a record that survives C2."""

    VALIDATE = "validate"
    DECONTAMINATE = "decontaminate"
    LID = "lid"
    EXACT_DEDUP = "exact_dedup"
    NEAR_DEDUP = "near_dedup"
    LENGTH = "length"
    PERPLEXITY = "perplexity"
    DONE = "done"


class Reason(StrEnum):
    """Why a record was dropped. Closed: a reason outside this enum is a bug."""

    # validate (C0 -> C1, first step): the line is in the raw input C0 but never becomes a record
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"  # not JSON (incl. NaN/Infinity literals), or not an object
    INVALID_JSON_DEPTH = "invalid_json_depth"  # nested deeper than validate.MAX_JSON_DEPTH
    INVALID_JSON_NUMBER = "invalid_json_number"  # a number no strict parser holds (huge int, 1e999)
    INVALID_MISSING_FIELD = "invalid_missing_field"
    INVALID_FIELD_TYPE = "invalid_field_type"
    INVALID_EMPTY = "invalid_empty"
    INVALID_LANGUAGE = "invalid_language"
    LANGUAGE_NOT_SELECTED = "language_not_selected"
    # decontamination (C1, first step): the record copies an evaluation row
    EVAL_CONTAMINATION = "eval_contamination"
    # LID (C1, part 1)
    LID_NO_LETTERS = "lid_no_letters"
    LID_SCRIPT_MISMATCH = "lid_script_mismatch"
    LID_WRONG_LANGUAGE = "lid_wrong_language"
    LID_LOW_CONFIDENCE = "lid_low_confidence"
    ROMANISED = "romanised"  # Latin text in a non-Latin language, dropped by lid.romanised_policy=drop
    # dedup (C1, part 2)
    EXACT_DUPLICATE = "exact_duplicate"
    NORMALIZED_DUPLICATE = "normalized_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    # quality (C2)
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    REPETITIVE = "repetitive"  # one field is a few tokens repeated (quality.repetition)
    PPL_TOO_HIGH = "ppl_too_high"
    NO_WORD_ORDER = "no_word_order"  # Han/Kana: its order earns the char LM no more than shuffles of it


STAGE_OF_REASON: dict[Reason, Stage] = {
    Reason.INVALID_ENCODING: Stage.VALIDATE,
    Reason.INVALID_JSON: Stage.VALIDATE,
    Reason.INVALID_JSON_DEPTH: Stage.VALIDATE,
    Reason.INVALID_JSON_NUMBER: Stage.VALIDATE,
    Reason.INVALID_MISSING_FIELD: Stage.VALIDATE,
    Reason.INVALID_FIELD_TYPE: Stage.VALIDATE,
    Reason.INVALID_EMPTY: Stage.VALIDATE,
    Reason.INVALID_LANGUAGE: Stage.VALIDATE,
    Reason.LANGUAGE_NOT_SELECTED: Stage.VALIDATE,
    Reason.EVAL_CONTAMINATION: Stage.DECONTAMINATE,
    Reason.LID_NO_LETTERS: Stage.LID,
    Reason.LID_SCRIPT_MISMATCH: Stage.LID,
    Reason.LID_WRONG_LANGUAGE: Stage.LID,
    Reason.LID_LOW_CONFIDENCE: Stage.LID,
    Reason.ROMANISED: Stage.LID,
    Reason.EXACT_DUPLICATE: Stage.EXACT_DEDUP,
    Reason.NORMALIZED_DUPLICATE: Stage.EXACT_DEDUP,
    Reason.NEAR_DUPLICATE: Stage.NEAR_DEDUP,
    Reason.TOO_SHORT: Stage.LENGTH,
    Reason.TOO_LONG: Stage.LENGTH,
    Reason.REPETITIVE: Stage.LENGTH,
    Reason.PPL_TOO_HIGH: Stage.PERPLEXITY,
    Reason.NO_WORD_ORDER: Stage.PERPLEXITY,
}

# The curated view a record last belongs to, by the stage that dropped it. C0 is the raw input
# (governance.md §2: validation is the first C0 -> C1 step), so a line that fails validation is still
# counted in C0; it is not written to c0.jsonl, which holds only records that can be read (assembly.py).
VIEW_OF_STAGE: dict[Stage, str | None] = {
    Stage.VALIDATE: "c0",
    Stage.DECONTAMINATE: "c0",
    Stage.LID: "c0",
    Stage.EXACT_DEDUP: "c0",
    Stage.NEAR_DEDUP: "c0",
    Stage.LENGTH: "c1",
    Stage.PERPLEXITY: "c1",
    Stage.DONE: "c2",
}


class Flag(StrEnum):
    """Report-only marks; a flag never changes whether a record is kept."""

    LID_TOO_SHORT_KEPT = "lid_too_short_kept"  # < min units: detectors skipped, record kept
    LID_SCRIPT_UNCHECKED = "lid_script_unchecked"  # no expected script known for the language
    LID_RESCUED_BY_PY3LANGID = "lid_rescued_by_py3langid"  # fastText alone would have dropped it
    DUPLICATE_LABEL_CONFLICT = "duplicate_label_conflict"  # an exact duplicate carried another label
    NEAR_PAIR_LABEL_DIFFERS = "near_pair_label_differs"  # near-equal text, different label: kept
    PPL_SKIPPED_SMALL_POOL = "ppl_skipped_small_pool"  # too few records for a quantile: not dropped
    PPL_VERY_LOW = "ppl_very_low"  # below the language's 1st percentile (often markup or lists)
    DUPLICATE_ID = "duplicate_id"  # the id field repeats an earlier record's id
    ROMANISED = "romanised"  # Latin text in a non-Latin-script language (tagged <lang>-Latn in evidence)
    MOJIBAKE_FIXED = "mojibake_fixed"  # ftfy repaired a text field: curated views hold the repair


def stage_of(reason: str | None) -> Stage:
    """The stage a record reached: the one that dropped it, or ``done`` when kept."""
    return Stage.DONE if reason is None else STAGE_OF_REASON[Reason(reason)]


def view_of(reason: str | None) -> str | None:
    """The last view ("c0", "c1", "c2") that counts a record with this drop reason
    (every input line is in C0)."""
    return VIEW_OF_STAGE[stage_of(reason)]
