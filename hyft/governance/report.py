"""The governance report: per language and stage, kept and dropped counts by reason, rebuilt from
the ledger; two example records per reason; the thresholds actually applied; Markdown, JSON, PNG.

Nothing here depends on the executor, the worker count or the clock, so two runs of the same input
and config give byte-identical reports.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from hyft.governance.reasons import Reason, Stage, stage_of
from hyft.io import atomic_save, atomic_write_text

SCHEMA_VERSION = 1
STAGES = [s.value for s in Stage if s is not Stage.DONE]
REASONS_BY_STAGE = {stage: [r.value for r in Reason if stage_of(r.value).value == stage] for stage in STAGES}
EXAMPLES_PER_REASON = 2


def _example(row: dict[str, Any], record: dict[str, Any] | None, text_fields: list[str]) -> dict[str, Any]:
    if record is not None:
        text = " || ".join(str(record.get(f, "")) for f in text_fields)
    else:
        text = row["evidence"].get("raw", "")
    return {
        "id": row["id"],
        "line": row["line"],
        "text": text[:200],
        "detail": row["detail"],
        "dup_of": row["dup_of"],
    }


def language_summary(
    rows: list[dict[str, Any]], records: dict[int, dict], text_fields: list[str]
) -> dict[str, Any]:
    """Counts for one language's ledger rows: per stage in/kept/dropped-by-reason, views, flags."""
    reasons = Counter(r["reason"] for r in rows if r["reason"] is not None)
    stages: dict[str, Any] = {}
    remaining = len(rows)
    for stage in STAGES:
        dropped = {reason: reasons[reason] for reason in REASONS_BY_STAGE[stage] if reasons[reason]}
        lost = sum(dropped.values())
        stages[stage] = {"in": remaining, "kept": remaining - lost, "dropped": dropped}
        remaining -= lost
    views = Counter(r["view"] for r in rows)
    n_c0 = views["c0"] + views["c1"] + views["c2"]
    n_c1 = views["c1"] + views["c2"]
    n_c2 = views["c2"]
    examples: dict[str, list] = {}
    for r in rows:
        if r["reason"] is not None and len(examples.setdefault(r["reason"], [])) < EXAMPLES_PER_REASON:
            examples[r["reason"]].append(_example(r, records.get(r["line"]), text_fields))

    def share(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {
        "n_input": len(rows),
        "n_c0": n_c0,
        "n_c1": n_c1,
        "n_c2": n_c2,
        "retention": {"c0_c1": share(n_c1, n_c0), "c1_c2": share(n_c2, n_c1), "c0_c2": share(n_c2, n_c0)},
        "stages": stages,
        "dropped": dict(sorted(reasons.items())),
        "eval_contamination": reasons[Reason.EVAL_CONTAMINATION.value],
        "flags": dict(sorted(Counter(f for r in rows for f in r["flags"]).items())),
        "examples": dict(sorted(examples.items())),
    }


def build_report(
    rows: list[dict[str, Any]],
    records: dict[int, dict],
    run: dict[str, Any],
    applied: dict[str, Any],
    text_fields: list[str],
) -> dict[str, Any]:
    """The full report dict (what ``CurationResult.report`` holds and report.json stores)."""
    by_lang: dict[str, list] = {}
    for r in rows:
        by_lang.setdefault(r["lang"], []).append(r)
    languages = {}
    for lang in sorted(by_lang):
        summary = language_summary(by_lang[lang], records, text_fields)
        summary["applied"] = applied.get(lang, {})
        languages[lang] = summary
    retained = {
        k: v["retention"]["c0_c2"] for k, v in languages.items() if v["retention"]["c0_c2"] is not None
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "languages": languages,
        "total": language_summary(rows, records, text_fields) | {"examples": {}},
        "macro_retention_c0_c2": round(sum(retained.values()) / len(retained), 4) if retained else None,
        "retention_gap_c0_c2": round(max(retained.values()) - min(retained.values()), 4)
        if retained
        else None,
    }


def _markdown(report: dict[str, Any]) -> str:
    reasons_seen = [
        r.value for r in Reason if any(r.value in v["dropped"] for v in report["languages"].values())
    ]
    # C0 is the raw input (every line), so validation drops stand between n_C0 and n_C1 (governance.md §6).
    header = ["lang", "n_C0", *[r for r in reasons_seen if stage_of(r) in (Stage.VALIDATE,)]]
    header += [
        r
        for r in reasons_seen
        if stage_of(r) in (Stage.DECONTAMINATE, Stage.LID, Stage.EXACT_DEDUP, Stage.NEAR_DEDUP)
    ] + ["n_C1"]
    header += [r for r in reasons_seen if stage_of(r) in (Stage.LENGTH, Stage.PERPLEXITY)] + ["n_C2", "C0→C2"]
    lines = ["# Curation report", ""]
    run = report["run"]
    lines += [f"- {key}: `{json.dumps(value, ensure_ascii=False)}`" for key, value in run.items()]
    lines += ["", "## Counts per language (columns in stage order)", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for lang, summary in [*report["languages"].items(), ("**total**", report["total"])]:
        cells = []
        for column in header:
            if column == "lang":
                cells.append(lang)
            elif column in ("n_C0", "n_C1", "n_C2"):
                cells.append(str(summary[column.lower()]))
            elif column == "C0→C2":
                value = summary["retention"]["c0_c2"]
                cells.append("–" if value is None else f"{100 * value:.1f}%")
            else:
                cells.append(str(summary["dropped"].get(column, 0)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Macro retention C0→C2: {report['macro_retention_c0_c2']}; "
        f"max–min gap: {report['retention_gap_c0_c2']}",
        "",
        "## Thresholds applied and flags",
        "",
    ]
    for lang, summary in report["languages"].items():
        lines.append(
            f"- **{lang}**: applied `{json.dumps(summary['applied'], ensure_ascii=False)}`; "
            f"flags `{json.dumps(summary['flags'], ensure_ascii=False)}`"
        )
    lines += ["", "## Examples (two per language and reason)", ""]
    for lang, summary in report["languages"].items():
        for reason, examples in summary["examples"].items():
            for ex in examples:
                text = ex["text"].replace("|", "\\|").replace("\n", " ")
                lines.append(f"- {lang} / `{reason}` / id {ex['id']} (line {ex['line']}): {text}")
    return "\n".join(lines) + "\n"


def _chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(report["languages"])
    columns = ["kept (C2)"] + [r.value for r in Reason]
    figure, axis = plt.subplots(figsize=(10, 0.45 * len(langs) + 2))
    left = [0] * len(langs)
    colours = plt.get_cmap("tab20")
    drawn = False
    for k, column in enumerate(columns):
        if column == "kept (C2)":
            values = [report["languages"][lang]["n_c2"] for lang in langs]
        else:
            values = [report["languages"][lang]["dropped"].get(column, 0) for lang in langs]
        if any(values):
            axis.barh(langs, values, left=left, label=column, color=colours(k % 20))
            left = [a + b for a, b in zip(left, values, strict=True)]
            drawn = True
    axis.set_xlabel("records")
    axis.set_title("Curation: kept and dropped per reason")
    if drawn:
        axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    atomic_save(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png", metadata={"Software": None}))
    plt.close(figure)


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """report.json, report.md and report.png in ``out_dir``; <lang>/stats.json per language.

    Each file is written atomically; returns the paths written.
    """
    written = [out_dir / "report.json", out_dir / "report.md", out_dir / "report.png"]
    atomic_write_text(written[0], json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    atomic_write_text(written[1], _markdown(report))
    _chart(report, written[2])
    for lang, summary in report["languages"].items():
        stats = {"schema_version": SCHEMA_VERSION, "lang": lang} | {
            k: v for k, v in summary.items() if k != "examples"
        }
        written.append(out_dir / lang / "stats.json")
        atomic_write_text(written[-1], json.dumps(stats, ensure_ascii=False, indent=2) + "\n")
    return written
