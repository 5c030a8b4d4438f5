"""Tables of the user's own data, read through ``datasets``: local JSONL / CSV / Parquet files, a local
dataset folder, or a Hugging Face Hub dataset name (from the local cache when offline).

One reader for every place that takes such a table (``data.custom`` of ``hyft run``, ``hyft curate``), so a
wrong column name or an unreachable dataset is reported the same way everywhere: :func:`check_columns` names
the setting, the column asked for and the columns the table has.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hyft.errors import UserError

if TYPE_CHECKING:
    import datasets

FileFormat = Literal["auto", "jsonl", "csv", "parquet"]
BUILDERS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}
SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class TableError(UserError):
    """A table cannot be read, or lacks a column a setting names (the message says which and what exists)."""


def file_format(path: Path, declared: str, setting: str) -> str:
    """``declared`` (jsonl, csv, parquet), or for ``auto`` the format the suffix says; ``setting`` is named
    in the error (e.g. ``data.custom.format``)."""
    if declared != "auto":
        return declared
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TableError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; set {setting} to "
            "jsonl, csv or parquet"
        )
    return kind


def read_file(path: Path, kind: str, expected: str) -> datasets.Dataset:
    """One local file through ``datasets``' packaged loader (``json``, ``csv``, ``parquet``: no network)."""
    import datasets

    try:
        return datasets.load_dataset(BUILDERS[kind], data_files=str(path), split="train")
    except Exception as exc:  # pyarrow / pandas raise many types for a malformed file
        raise TableError(
            f"{path}: could not be read as {kind.upper()} ({type(exc).__name__}: {exc}); expected {expected}"
        ) from None


def is_offline() -> bool:
    """Whether the Hugging Face libraries were told not to reach the network."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES
    )


def dataset_label(name: str, config: str | None, split: str) -> str:
    """How a dataset split is named in messages and row locations: ``name[config]/split``."""
    return f"{name}{f'[{config}]' if config else ''}/{split}"


def _download_hint(name: str, config: str | None) -> str:
    arguments = ", ".join(repr(a) for a in (name, config) if a)
    return (
        f'pre-download it on a machine with internet (python -c "import datasets; '
        f'datasets.load_dataset({arguments})") and copy its Hugging Face cache ($HF_HOME, default '
        "~/.cache/huggingface) here, or write its splits as files (Dataset.to_parquet / to_csv) into a "
        "folder and give that folder's path instead"
    )


def read_dataset(name: str, config: str | None, split: str) -> datasets.Dataset:
    """Split ``split`` of a dataset through ``datasets.load_dataset``: a local folder (data files, split by
    file name; or a ``save_to_disk`` folder) when ``name`` is a path that exists, else a Hub name, which
    offline (``HF_DATASETS_OFFLINE=1``) is found only in the local cache."""
    import datasets

    label = dataset_label(name, config, split)
    folder = Path(name)
    try:
        if folder.is_dir() and (
            (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()
        ):
            loaded: Any = datasets.load_from_disk(
                str(folder)
            )  # written by save_to_disk, not a data-file folder
        else:
            loaded = datasets.load_dataset(name, config)
    except (
        Exception
    ) as exc:  # datasets raises FileNotFoundError, ConnectionError, DatasetNotFoundError, ValueError
        if folder.exists():
            raise TableError(
                f"dataset {label}: the folder {folder} could not be read ({type(exc).__name__}: "
                f"{exc}); expected data files (csv, jsonl, parquet) named by split, e.g. "
                "train.csv and test.csv"
            ) from None
        where = (
            "this machine is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), so a Hub dataset must already "
            "be in the local Hugging Face cache"
            if is_offline()
            else "it is neither a local folder nor a dataset the Hub (or the local cache) has"
        )
        raise TableError(
            f"dataset {label} could not be loaded: {where} ({type(exc).__name__}: {exc}). To use it, "
            f"{_download_hint(name, config)}"
        ) from None
    if isinstance(loaded, datasets.Dataset):  # a save_to_disk folder of one split
        return loaded
    if split not in loaded:
        raise TableError(f"dataset {label}: there is no split {split!r}; its splits are: {', '.join(loaded)}")
    return loaded[split]


def check_columns(
    where: str, columns: Sequence[str], wanted: Mapping[str, Sequence[str]], section: str
) -> None:
    """Raise :class:`TableError` for the first column a setting names that the table lacks.

    ``wanted``: setting name → the columns it names (``{"text_fields": [...], "label_field": ["gold"]}``);
    ``section`` prefixes the setting in the message (``data.custom``, ``curation``).
    """
    for setting, names in wanted.items():
        for name in names:
            if name not in columns:
                raise TableError(
                    f"{where}: {section}.{setting} names column {name!r}, which it does not have; "
                    f"its columns are: {', '.join(columns)}"
                )
