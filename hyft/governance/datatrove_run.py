"""Run the curation stages through datatrove's executors (optional extra ``hyft[scale]``).

``executor``: datatrove_local (LocalPipelineExecutor, processes on this machine), datatrove_slurm
(SlurmPipelineExecutor: one sbatch array job per stage, chained with afterok dependencies; the
output folder must be on a filesystem the nodes share) or datatrove_ray (RayPipelineExecutor on a
local or existing Ray cluster, extra ``hyft[ray]``). The steps are the same for all three. Work files live
under ``out_dir/datatrove`` and are rebuilt on every run (completion markers from an older run with
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
RAY_HINT = "ray is not installed: install the ray extra, pip install 'hyft[scale,ray]'"


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


def require_ray() -> None:
    """Raise a ConfigError naming the pip extra when ray cannot be imported."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ConfigError("curation.executor", [f"{RAY_HINT} ({exc})"]) from None


def make_executor(
    config: CurationConfig, pipeline: list[Any], name: str, work: Path, depends: Any = None
) -> Any:
    """datatrove's executor for ``config.executor``, with ``config.workers`` tasks,
    logging in work/logs_<name>.

    Resume is off (``skip_completed=False``): the work folder is rebuilt on every run.
    """
    logging_dir = str(work / f"logs_{name}")
    workers = config.workers
    if config.executor == "datatrove_slurm":
        from datatrove.executor import SlurmPipelineExecutor

        slurm = config.slurm
        assert slurm is not None  # the config validator requires it for this executor
        return SlurmPipelineExecutor(
            pipeline,
            tasks=workers,
            workers=workers,
            time=slurm.time,
            partition=slurm.partition,
            cpus_per_task=slurm.cpus_per_task,
            mem_per_cpu_gb=slurm.mem_per_cpu_gb,
            qos=slurm.qos,
            job_name=f"{slurm.job_name}-{name}",
            env_command=slurm.env_command,
            sbatch_args=dict(slurm.sbatch_args),
            max_array_size=slurm.max_array_size,
            logging_dir=logging_dir,
            skip_completed=False,
            depends=depends,
            mail_type="NONE",
        )
    if config.executor == "datatrove_ray":
        from datatrove.executor.ray import RayPipelineExecutor

        return RayPipelineExecutor(
            pipeline,
            tasks=workers,
            workers=workers,
            logging_dir=logging_dir,
            skip_completed=False,
            depends=depends,
            cpus_per_task=config.ray.cpus_per_task,
            mem_per_cpu_gb=config.ray.mem_per_cpu_gb,
        )
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(
        pipeline,
        tasks=workers,
        workers=workers,
        logging_dir=logging_dir,
        skip_completed=False,
        depends=depends,
        start_method=_start_method(),
    )


def build_executors(
    pool_path: str,
    source_name: str,
    config: CurationConfig,
    work: Path,
    ppl_scorer: PplScorer | None,
    n_input: int | None = None,
) -> list[Any]:
    """The chain of executors, each depending on the one before; run the last one.

    A: validate + LID; then the disk near-dedup stages, when a language can go to disk (mode disk, or
    auto with more than ``disk_above`` input lines); B: dedup + quality per language.
    """
    from hyft.governance.datatrove_steps import (
        DecideLanguages,
        NearDiskStage,
        PrepareNear,
        ValidateIdentifyShard,
    )

    config_json = config.model_dump_json()
    stages: list[tuple[str, Any]] = [
        (
            "validate_and_identify",
            ValidateIdentifyShard(
                pool_path, source_name, config_json, str(work), wrapped=source_name == "<iterable>"
            ),
        ),
    ]
    scale = config.near_dedup
    could_go_to_disk = scale.mode == "disk" or (
        scale.mode == "auto" and (n_input is None or n_input > scale.disk_above)
    )
    if config.dedup.near and could_go_to_disk:
        stages.append(("near_input", PrepareNear(config_json, str(work))))
        stages += [
            (f"near_{stage}", NearDiskStage(stage, config_json, str(work)))
            for stage in ("signatures", "bands", "candidates", "confirm")
        ]
    stages.append(("decide", DecideLanguages(config_json, str(work), ppl_scorer)))
    executors: list[Any] = []
    for name, step in stages:
        executors.append(make_executor(config, [step], name, work, executors[-1] if executors else None))
    return executors


def _completed(executor: Any) -> int:
    return len(list((Path(executor.logging_dir.path) / "completions").glob("*")))


def wait_for_slurm(executors: list[Any], poll_seconds: float) -> None:
    """Block until the last stage's tasks have all completed; fail when no job of ours is queued any more.

    datatrove's SlurmPipelineExecutor only submits (sbatch); curate() assembles the outputs, so it
    waits here on the completion markers the tasks write to the shared work folder.
    """
    import subprocess
    import time

    last = executors[-1]
    while _completed(last) < last.world_size:
        job_ids = [str(e.job_id) for e in executors if e.job_id not in (None, -1)]
        queued = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True, text=True, check=False
        ).stdout.split()
        if not queued and _completed(last) < last.world_size:
            failed = [e.job_name for e in executors if _completed(e) < e.world_size]
            raise RuntimeError(
                f"Slurm jobs {', '.join(job_ids)} left the queue but stages {', '.join(failed)} did not "
                f"complete: see the logs under {Path(last.logging_dir.path).parent}/logs_*/"
            )
        time.sleep(poll_seconds)


def _init_ray(config: CurationConfig) -> bool:
    """Connect to (or start) Ray unless a session is already up; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if config.ray.address:
        ray.init(address=config.ray.address, log_to_driver=False)
    else:  # a local instance sized to the task count, no dashboard (it would only cost memory here)
        ray.init(
            num_cpus=config.workers * config.ray.cpus_per_task, include_dashboard=False, log_to_driver=False
        )
    return True


def run_datatrove(
    source: str | Path | Iterable[Any], config: CurationConfig, out_dir: Path, ppl_scorer: PplScorer | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Run the stages through ``config.executor`` with ``config.workers`` tasks each;
    read the results back."""
    require_datatrove()
    if config.executor == "datatrove_ray":
        require_ray()
    from hyft.governance.datatrove_steps import annotated_shards

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
    executors = build_executors(pool_path, source_name, config, work, ppl_scorer, n_input)
    if config.executor == "datatrove_ray":
        import ray

        started = _init_ray(config)
        try:
            executors[-1].run()
        finally:
            if started:
                ray.shutdown()
    else:
        executors[-1].run()
    if config.executor == "datatrove_slurm":
        assert config.slurm is not None
        wait_for_slurm(executors, config.slurm.poll_seconds)
    entries = [e for shard in annotated_shards(work) for e in read_jsonl(shard)]
    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "decisions").glob("*.json"))]
    return entries, results, n_input
