"""``hyft run``: curate → search → train (models × tasks × methods × k-shots × seeds) → evaluate → report.

With a ``search`` section, the first cell of a (model, task, method) first runs that search's missing
trials (:mod:`hyft.experiments.search`); its cells then train with the chosen settings.

Resumable at two levels: a finished cell (``cells/<id>/result.json``) is skipped, and an interrupted
cell resumes from its last training checkpoint. ``results.json`` is rebuilt from the cell files, so
an interrupted and an uninterrupted run end with the same results.

Every file is written atomically (hyft.io). ``_COMPLETE`` is written last, after results.json,
manifest.json and the report, naming the config hash and every such file's sha256; it is removed
before results.json is rewritten, so a run killed in between leaves no marker and ``hyft report``
refuses the folder until ``hyft run`` is rerun (finished cells are skipped).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from hyft.experiments.cell_run import RESULT_FILE, check_code_sandbox, run_cell
from hyft.experiments.cells import NO_CURATION, Cell, plan_cells
from hyft.experiments.config import RunConfig
from hyft.experiments.manifest import build_manifest, config_hash
from hyft.experiments.search import SearchKey, load_search_results, run_search
from hyft.io import atomic_write_text, clear_marker, write_marker

RESULTS_SCHEMA_VERSION = 1


def resolve_pool(pool: str) -> Path:
    if pool == "builtin:demo-pool":
        from hyft.data import demo_path

        return demo_path("pool.jsonl")
    return Path(pool)


def curate_stage(config: RunConfig, run_dir: Path) -> tuple[dict[str, list[dict]] | None, dict | None]:
    """Run (or reuse) curation; returns ({"c0": [...], "c1": [...], "c2": [...]}, report) or (None, None).

    ``curate`` reuses ``run_dir/curation`` only when its _COMPLETE marker names the same pool (sha256)
    and settings and every file still matches it; a torn or stale folder is cleared and recomputed.
    """
    if config.curation is None:
        return None, None
    from hyft.governance import curate

    out = run_dir / "curation"
    (out / "settings.sha256").unlink(missing_ok=True)  # the marker of hyft versions before _COMPLETE
    settings = config.curation.settings
    if settings.decontaminate.tasks:  # `task:split` names: the governance layer cannot load tasks itself
        from hyft.experiments.decontamination import resolve_eval_tasks

        settings = resolve_eval_tasks(settings, config.data_source())
    if config.curation.decontaminate_against_eval:
        settings = with_eval_rows(settings, eval_rows(config))
    from hyft.governance.table_input import table_pool

    # A CSV / Parquet pool is written as JSONL into the curation folder first (hyft curate does the same).
    result = curate(table_pool(settings, out, path=resolve_pool(config.curation.pool)), settings, out)
    if result.previous:
        tqdm.write(f"curation: {result.previous}")
    return result.views, result.report


def eval_rows(config: RunConfig) -> list[dict[str, Any]]:
    """The run's evaluation rows ({id, texts}) in every task and language, text fields in task order."""
    from hyft.tasks.registry import get_task

    rows = []
    for name in config.tasks():
        task = get_task(name)
        fields = list(task.text_fields)
        for lang in config.languages_for(task):
            for example in task.load(task.eval_split, lang, config.data_source()):
                texts = [example[f] for f in fields if isinstance(example.get(f), str)]
                if texts:
                    rows.append(
                        {"id": str(example.get("id", f"{name}/{task.eval_split}/{lang}")), "texts": texts}
                    )
    return rows


def with_eval_rows(settings: Any, rows: list[dict[str, Any]]) -> Any:
    """``settings`` (a CurationConfig) with ``rows`` added to the rows it decontaminates against."""
    decontaminate = settings.decontaminate.model_validate(
        settings.decontaminate.model_dump() | {"rows": [*settings.decontaminate.model_dump()["rows"], *rows]}
    )
    return settings.model_copy(update={"decontaminate": decontaminate})


def load_cell_results(run_dir: Path, cells: list[Cell]) -> list[dict[str, Any]]:
    records = []
    for cell in cells:
        path = run_dir / "cells" / cell.cell_id / RESULT_FILE
        if path.is_file():
            records.append(json.loads(path.read_text()))
    return records


def data_files_used(config: RunConfig) -> list[Path]:
    """Files behind every task of the run and the pool, for the manifest's hashes (each file once)."""
    from hyft.tasks.registry import get_task

    files: list[Path] = []
    families: set[str] = set()
    for name in config.tasks():
        task = get_task(name)
        if task.name in ("demo-nli", "demo-topic"):  # shipped with hyft, not under the data folder
            from hyft.data import demo_path, nli_file_name, topic_file_name

            file_name = nli_file_name if task.name == "demo-nli" else topic_file_name
            languages = config.languages_for(task)
            files += [demo_path(file_name(s, lang)) for s in ("dev", "test") for lang in languages]
        elif task.family not in families:
            families.add(task.family)
            root = config.data_source().root
            files += sorted(
                p for p in root.rglob("*") if p.is_file() and f"/{task.family}/" in f"/{p.relative_to(root)}"
            )
    if config.curation is not None:
        files.append(resolve_pool(config.curation.pool))
    return list(dict.fromkeys(files))


def run(
    config: RunConfig, *, max_cells: int | None = None, show_progress: bool = True, write_report: bool = True
) -> Path:
    """Run every stage; ``max_cells`` stops after that many newly computed cells (for tests/time boxes)."""
    from hyft.distributed import process_state

    state = process_state()
    check_code_sandbox(config)  # a HumanEval task without a kernel sandbox: refuse before any work
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = config.model_dump(mode="json")
    if state.is_main_process:
        atomic_write_text(
            run_dir / "config.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True)
        )
        atomic_write_text(run_dir / "launch.txt", " ".join(shlex.quote(a) for a in sys.argv) + "\n")
    curated, curation_report = curate_stage(config, run_dir)
    cells = plan_cells(config)
    searched = set(config.search_methods())
    choices: dict[SearchKey, dict[str, Any]] = {}
    computed = 0
    bar = tqdm(cells, desc="cells", unit="cell", disable=not (show_progress and state.is_main_process))
    for cell in bar:
        bar.set_postfix_str(cell.cell_id)
        if (run_dir / "cells" / cell.cell_id / RESULT_FILE).is_file():
            continue
        if max_cells is not None and computed >= max_cells:
            break
        choice = None
        if cell.k_shot > 0 and cell.method in searched:
            key = SearchKey(cell.model, cell.task, cell.method)
            if key not in choices:
                bar.set_postfix_str(f"search {key.key_id}")
                choices[key] = run_search(
                    config,
                    key,
                    run_dir,
                    curated,
                    is_main=state.is_main_process,
                    show_progress=show_progress,
                    barrier=state.wait_for_everyone,
                )["chosen"]
            choice = choices[key]
        run_cell(
            config,
            cell,
            run_dir,
            curated,
            is_main=state.is_main_process,
            show_progress=show_progress,
            search_choice=choice,
        )
        state.wait_for_everyone()
        computed += 1
    bar.close()
    if not state.is_main_process:
        return run_dir
    from hyft.tasks.registry import get_task

    records = load_cell_results(run_dir, cells)
    complete = len(records) == len(cells)
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "run": {
            "name": config.run.name,
            "config_hash": config_hash(resolved),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "complete": complete,
            "seeds": config.run.seeds,
            "models": [m.name for m in config.models],
            "methods": list(config.methods),
            "tasks": config.tasks(),
            "task_groups": config.task_groups(),
            "k_shots": config.data.k_shots,
            "primary_task": config.tasks()[0],
            "languages": {task: config.languages_for(get_task(task)) for task in config.tasks()},
            "curation_stages": sorted({c.curation for c in cells}),
            "train_stage": config.curation.train_stage if config.curation else NO_CURATION,
            "main_k_shot": max(config.data.k_shots),
        },
        "curation": curation_report,
        "search": load_search_results(config, run_dir),
        "cells": records,
    }
    manifest = build_manifest(
        resolved, data_files_used(config), {m.name: m.name_or_path for m in config.models}, config.run.seeds
    )
    clear_marker(run_dir)
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1, ensure_ascii=False))
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=1))
    written = ["results.json", "manifest.json", "config.resolved.yaml"]
    if write_report and complete:
        from hyft.experiments.report import write_report as render

        render(run_dir)
        written.append("report.md")
    write_marker(
        run_dir, written, kind="hyft run", config_hash=results["run"]["config_hash"], complete=complete
    )
    return run_dir
