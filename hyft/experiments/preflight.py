"""Checks that need the file system (data, pool, models): all problems at once, before any training."""

from __future__ import annotations

import os
from pathlib import Path

from hyft.config import ConfigError
from hyft.experiments.config import RunConfig
from hyft.tasks.loading import HUB_TIMEOUT_S, hub_offline


def _model_problem(index: int, name_or_path: str) -> str | None:
    from hyft.models import BUILTIN_MODELS, resolve_model_path

    try:
        resolved = resolve_model_path(name_or_path)
    except FileNotFoundError as exc:
        return f"models.{index}.name_or_path: {exc}"
    if Path(resolved).is_dir() or name_or_path.removeprefix("builtin:") in BUILTIN_MODELS:
        return None
    if resolved.startswith((".", "/")) or os.sep in resolved and not resolved.count("/") == 1:
        return f"models.{index}.name_or_path: folder {resolved!r} does not exist"
    # Offline first: the local Hugging Face cache answers without any network.
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(resolved, local_files_only=True)
        return None
    except Exception:  # not cached (LocalEntryNotFoundError), or a malformed id
        pass
    where = f"models.{index}.name_or_path: {resolved!r}"
    if hub_offline():
        return (
            f"{where} is not in the local Hugging Face cache and HF_HUB_OFFLINE forbids downloading it "
            "(use a local folder or builtin:minilm)"
        )
    # Not cached and online: one metadata request, bounded by a timeout, says whether it exists.
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(resolved, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return None  # exists; loading it needs a token, which from_pretrained will say
    except RepositoryNotFoundError:
        return (
            f"{where} is neither a local folder nor in the Hugging Face cache, and the Hub has no such model"
        )
    except Exception as exc:  # network down, timeout, proxy: say so instead of hanging in a retry loop
        return (
            f"{where} is not in the local Hugging Face cache and the Hub did not answer within "
            f"{HUB_TIMEOUT_S:.0f} s ({type(exc).__name__}); download it first or use a local folder"
        )
    return None


def check_run_config(config: RunConfig, source: str = "<config>") -> None:
    """Raise ConfigError listing every missing file, unloadable model or inconsistent protocol setting."""
    from hyft.experiments.runner import resolve_pool
    from hyft.tasks.loading import DataError, DataSource
    from hyft.tasks.registry import get_task

    problems: list[str] = []
    for index, model in enumerate(config.models):
        if (problem := _model_problem(index, model.name_or_path)) is not None:
            problems.append(problem)
    data = DataSource.default(config.data.data_dir)
    tasks = [get_task(name) for name in config.tasks()]
    from hyft.experiments.cell_run import evaluation_keys

    for task in tasks:
        for lang in evaluation_keys(config, task):  # directions (en-de, de-en) for translation
            for split in {task.eval_split, task.shot_split} - {None}:
                try:
                    task.load(split, lang, data)
                except DataError as exc:
                    problems.append(f"data: {exc}")
    if config.curation is not None and not resolve_pool(config.curation.pool).is_file():
        problems.append(f"curation.pool: file {config.curation.pool!r} not found")
    if config.eval.temperature_scaling and config.data.val_examples < 10:
        problems.append(
            "eval.temperature_scaling needs data.val_examples ≥ 10 held-out dev rows per language"
        )
    for task in tasks:
        if task.kind != "classification" and any(m.kind == "encoder" for m in config.models):
            problems.append(f"models: task {task.name!r} generates text and needs decoder models")
    if problems:
        raise ConfigError(source, problems)
