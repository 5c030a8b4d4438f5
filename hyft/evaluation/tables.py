"""Markdown tables in the layout of the paper's Table II (XNLI) and Table III (FLORES).

Every function takes plain dicts ``{method_name: results_dict}`` where a results dict is what
:func:`hyft.evaluation.evaluate.evaluate_task` returns (or the same read back from results.json), so the
runner and ``hyft report`` can reuse them without recomputing anything. Scores are shown in percent
(accuracy, Macro, Δ, ECE × 100; BLEU/chrF already are) with ``digits`` decimals; a missing value is "–".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MISSING = "–"


def _cell(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None:
        return MISSING
    return f"{float(value) * scale:.{digits}f}"


def _render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _languages(results_by_method: Mapping[str, Mapping[str, Any]], key: str) -> list[str]:
    """Union of the keys of ``results[key]`` in order of first appearance (first method's order first)."""
    seen: list[str] = []
    for results in results_by_method.values():
        seen += [lang for lang in results.get(key, {}) if lang not in seen]
    return seen


def classification_table(
    results_by_method: Mapping[str, Mapping[str, Any]],
    languages: Sequence[str] | None = None,
    digits: int = 1,
) -> str:
    """Table II: one row per method; columns language accuracies, Macro, Δ, Avg-ECE (and Avg-ECE after
    temperature scaling when any method has it). All in percent."""
    languages = list(languages or _languages(results_by_method, "accuracy"))
    with_ts = any("avg_ece_temperature_scaled" in r for r in results_by_method.values())
    header = ["Method", *[lang.upper() for lang in languages], "Macro", "Δ", "Avg-ECE"]
    header += ["Avg-ECE (TS)"] if with_ts else []
    rows = []
    for method, results in results_by_method.items():
        accuracy = results.get("accuracy", {})
        row = [method, *[_cell(accuracy.get(lang), 100, digits) for lang in languages]]
        row += [_cell(results.get(key), 100, digits) for key in ("macro", "delta", "avg_ece")]
        row += [_cell(results.get("avg_ece_temperature_scaled"), 100, digits)] if with_ts else []
        rows.append(row)
    return _render(header, rows)


def _direction_label(key: str) -> str:
    source, target = key.split("-", 1)
    return f"{source.upper()}→{target.upper()}"


def translation_table(
    results_by_method: Mapping[str, Mapping[str, Any]],
    metric: str = "bleu",
    directions: Sequence[str] | None = None,
    digits: int = 1,
) -> str:
    """Table III: one row per method; columns per direction (e.g. EN→ZH), Avg and Δ of ``metric``
    (``bleu`` or ``chrf``). Δ is the mean gap between a pair's two directions ("–" for EN→X only)."""
    directions = list(directions or _languages(results_by_method, metric))
    header = ["Method", *[_direction_label(key) for key in directions], "Avg", "Δ"]
    rows = []
    for method, results in results_by_method.items():
        scores = results.get(metric, {})
        row = [method, *[_cell(scores.get(key), 1, digits) for key in directions]]
        row += [
            _cell(results.get(f"avg_{metric}"), 1, digits),
            _cell(results.get(f"delta_{metric}"), 1, digits),
        ]
        rows.append(row)
    return _render(header, rows)


def robustness_table(
    results_by_method: Mapping[str, Mapping[str, Any]],
    languages: Sequence[str] | None = None,
    digits: int = 1,
) -> str:
    """Orthographic robustness: accuracy drop (clean − variant, percent points) per language, share of
    examples changed by the assigned operation, and the macro drop."""
    languages = list(languages or _languages(results_by_method, "accuracy"))
    header = ["Method", *[f"{lang.upper()} drop" for lang in languages], "Macro drop"]
    header += [f"{lang.upper()} changed" for lang in languages]
    rows = []
    for method, results in results_by_method.items():
        per_language = results.get("per_language", {})
        variant = {lang: per_language.get(lang, {}).get("orthographic", {}) for lang in languages}
        row = [method, *[_cell(variant[lang].get("drop_all"), 100, digits) for lang in languages]]
        row.append(_cell(results.get("orthographic", {}).get("macro", {}).get("drop"), 100, digits))
        row += [_cell(variant[lang].get("changed_share"), 100, digits) for lang in languages]
        rows.append(row)
    return _render(header, rows)


def generation_table(results_by_method: Mapping[str, Mapping[str, Any]], digits: int = 1) -> str:
    """GSM8K / HumanEval / MT-Bench: one row per method, the task metric (percent) per language."""
    first = next(iter(results_by_method.values()), {})
    metric = first.get("metric", "score")
    languages = _languages(results_by_method, metric)
    header = ["Method", *[f"{metric} ({lang.upper()})" for lang in languages]]
    rows = [
        [method, *[_cell(r.get(metric, {}).get(lang), 100, digits) for lang in languages]]
        for method, r in results_by_method.items()
    ]
    return _render(header, rows)


def task_tables(task_name: str, results_by_method: Mapping[str, Mapping[str, Any]], digits: int = 1) -> str:
    """All tables that apply to one task's results, each under a ``###`` heading."""
    first = next(iter(results_by_method.values()), {})
    kind = first.get("kind")
    parts = [f"### {task_name}\n\n"]
    if kind == "classification":
        parts.append(classification_table(results_by_method, digits=digits))
        if any("orthographic" in r for r in results_by_method.values()):
            parts += [
                "\nOrthographic robustness (percent points)\n\n",
                robustness_table(results_by_method, digits=digits),
            ]
    elif kind == "translation":
        for metric in ("bleu", "chrf"):
            parts += [
                f"\n{metric.upper() if metric == 'bleu' else 'chrF'}\n\n",
                translation_table(results_by_method, metric, digits=digits),
            ]
    else:
        parts.append(generation_table(results_by_method, digits=digits))
    return "".join(parts)


def parse_markdown_table(markdown: str) -> list[dict[str, str]]:
    """Rows of the first pipe table in ``markdown`` as ``{header: cell}`` (inverse of the renderers)."""
    lines: list[str] = []
    for line in markdown.splitlines():
        if line.strip().startswith("|"):
            lines.append(line.strip())
        elif lines:
            break  # the first table ended
    if len(lines) < 2:
        raise ValueError("no Markdown table found")

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip("|").split("|")]

    header = cells(lines[0])
    return [dict(zip(header, cells(line), strict=True)) for line in lines[2:]]
