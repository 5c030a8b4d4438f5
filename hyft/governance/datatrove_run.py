"""Run the curation stages through datatrove's LocalPipelineExecutor (optional extra ``hyft[scale]``).

On a cluster the only change is the executor class (SlurmPipelineExecutor, RayPipelineExecutor)
and a work folder every node can see; the steps are the same. Work files live under
``out_dir/datatrove`` and are rebuilt on every run (completion markers from an older run with
another config must never be trusted, so resume is off).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hyft.config import ConfigError
from hyft.governance.config import CurationConfig
from hyft.governance.ledger import read_jsonl
from hyft.governance.quality import PplScorer

SCALE_HINT = "datatrove is not installed: install the scale extra, pip install 'hyft[scale]'"


def require_datatrove() -> None:
    """Raise a ConfigError naming the pip extra when datatrove cannot be imported."""
    try:
        import datatrove.executor  # noqa: F401
    except ImportError as exc:
        raise ConfigError("curation.executor", [f"{SCALE_HINT} ({exc})"]) from None


def _start_method() -> str:
    """datatrove's default (forkserver) re-imports ``__main__`` in each worker; when the caller has no
    main file (stdin, ``python -c``, a notebook) that import fails and the pool respawns workers
    forever, so fork instead."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return "forkserver" if main_file and Path(main_file).is_file() else "fork"


def run_datatrove(
    source: str | Path | Iterable[Any], config: CurationConfig, out_dir: Path, ppl_scorer: PplScorer | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Stages A and B as two dependent executors with ``config.workers`` tasks each."""
    require_datatrove()
    from datatrove.executor import LocalPipelineExecutor

    from hyft.governance.datatrove_steps import AnnotateShard, DecideLanguages, annotated_shards

    work = out_dir / "datatrove"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if isinstance(source, (str, Path)):
        pool_path, source_name = str(source), str(source)
    else:  # workers need a file: each item (dict or JSON string) is stored as one JSON value per line
        pool_path, source_name = str(work / "pool.jsonl"), "<iterable>"
        with open(pool_path, "w", encoding="utf-8") as handle:
            for item in source:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    from hyft.governance.pipeline import count_input

    n_input = count_input(pool_path)
    config_json = config.model_dump_json()
    workers = config.workers
    annotate_step = LocalPipelineExecutor(
        [AnnotateShard(pool_path, source_name, config_json, str(work), wrapped=source_name == "<iterable>")],
        tasks=workers, workers=workers, logging_dir=str(work / "logs_annotate"), skip_completed=False,
        start_method=_start_method(),
    )
    decide_step = LocalPipelineExecutor(
        [DecideLanguages(config_json, str(work), ppl_scorer)],
        tasks=workers, workers=workers, logging_dir=str(work / "logs_decide"), skip_completed=False,
        depends=annotate_step, start_method=_start_method(),
    )
    decide_step.run()
    entries = [e for shard in annotated_shards(work) for e in read_jsonl(shard)]
    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "decisions").glob("*.json"))]
    return entries, results, n_input
