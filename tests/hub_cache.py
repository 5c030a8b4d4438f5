"""A Hub dataset "pre-downloaded" into a local ``datasets`` cache, so a Hub name resolves offline.

Nothing is downloaded or mocked: the rows are written by ``datasets``' own packaged CSV builder into the
cache folder layout ``load_dataset`` writes after an online download (``<cache>/<owner>___<name>/<config>/
0.0.0/<hash>/<name>-<split>.arrow`` + ``dataset_info.json``); with ``HF_HUB_OFFLINE=1``, ``load_dataset
("owner/name", config)`` then reads that folder ("Using the latest cached version of the dataset").
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


def cache_hub_dataset(
    monkeypatch: pytest.MonkeyPatch, cache: Path, name: str, config: str, splits: dict[str, list[dict]]
) -> None:
    """Put ``splits`` (split → rows) into ``cache`` as Hub dataset ``name`` (owner/name), configuration
    ``config``, and point ``datasets`` at that cache for the rest of the test."""
    import datasets
    from datasets.packaged_modules.csv.csv import Csv

    assert datasets.config.HF_HUB_OFFLINE, (
        "the test must run offline (tests/conftest.py sets HF_HUB_OFFLINE=1)"
    )
    files = cache / "source"
    files.mkdir(parents=True, exist_ok=True)
    data_files = {}
    for split, rows in splits.items():
        data_files[split] = str(files / f"{split}.csv")
        with open(data_files[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    folder_name = name.replace("/", "___")
    builder = Csv(
        cache_dir=str(cache / "datasets"),
        dataset_name=folder_name,
        config_name=config,
        data_files=data_files,
        hash="0" * 16,
    )
    builder.download_and_prepare()
    # The packaged builder suffixes the config with a hash of its data files and prefixes the arrow files with
    # the cache folder name; a downloaded Hub dataset has neither.
    prepared = Path(builder.cache_dir)
    for arrow in prepared.glob(f"{folder_name}-*.arrow"):
        arrow.rename(prepared / arrow.name.replace(f"{folder_name}-", f"{name.split('/')[-1]}-", 1))
    prepared.parent.parent.rename(prepared.parent.parent.parent / config)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
