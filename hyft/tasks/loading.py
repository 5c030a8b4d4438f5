"""Read benchmark files (local JSONL/TXT in the ``../shared/data`` layout, or the Hugging Face Hub).

Every failure a user can fix names the file, the line and the expected format, and says how to point
hyft at another data folder. Nothing is skipped silently: one bad line stops the load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hyft.errors import UserError

DATA_DIR_ENV = "HYFT_DATA_DIR"
SourceMode = Literal["local", "hub", "auto"]


class DataError(UserError):
    """A benchmark file is missing or not in the expected format (message names path, line, format)."""


def default_data_root() -> Path:
    """``$HYFT_DATA_DIR`` when set, else ``../shared/data`` relative to the current directory."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path.cwd() / ".." / "shared" / "data"


@dataclass(frozen=True)
class DataSource:
    """Where task data comes from.

    ``mode``: ``local`` reads only files under ``root``; ``hub`` only the Hugging Face Hub; ``auto``
    (the default) reads the local file and never the Hub: a missing file fails fast with a message
    naming the path and ``data_dir`` instead of waiting on (or retrying) a download. The Hub is read
    only when asked for (``hub``), after one metadata request bounded by ``HUB_TIMEOUT_S``.
    """

    root: Path
    mode: SourceMode = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept str too
        if self.mode not in ("local", "hub", "auto"):
            raise ValueError(f"data source mode must be local, hub or auto, got {self.mode!r}")

    @classmethod
    def default(cls, root: str | Path | None = None, mode: SourceMode = "auto") -> DataSource:
        return cls(Path(root) if root is not None else default_data_root(), mode)

    def use_hub(self, local_path: Path) -> bool:
        """Whether to read the Hub instead of ``local_path`` (raises when neither can work)."""
        if self.mode == "hub":
            return True
        return False  # local and auto: the local file (a missing one is reported by the reader)


HUB_TIMEOUT_S = 10.0


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def check_hub_dataset(dataset_id: str, local_path: Path, config: str | None = None) -> None:
    """One bounded metadata request before ``datasets`` starts (it retries for minutes when offline)."""
    if hub_offline():
        which = f"{dataset_id!r}" + (f" (config {config!r})" if config else "")
        raise DataError(
            f"{local_path}: file not found, and HF_HUB_OFFLINE forbids reading {which} "
            "from the Hub; point data_dir at the data folder"
        )
    from huggingface_hub import HfApi

    try:
        HfApi().dataset_info(dataset_id, timeout=HUB_TIMEOUT_S)
    except Exception as exc:
        raise DataError(
            f"the Hugging Face Hub did not give {dataset_id!r} within {HUB_TIMEOUT_S:.0f} s "
            f"({type(exc).__name__}); local file that would be used instead: {local_path}"
        ) from None


def missing_file_error(path: Path, expected_format: str) -> DataError:
    return DataError(
        f"{path}: file not found (expected {expected_format}). Point hyft at the data folder with "
        f"${DATA_DIR_ENV} or the config's data_dir, or use source: hub when online."
    )


def format_error(path: Path | str, line: int, problem: str, expected_format: str) -> DataError:
    return DataError(f"{path}:{line}: {problem}; expected {expected_format}")


def read_jsonl(
    path: Path,
    required_fields: Mapping[str, type | tuple[type, ...]],
    expected_format: str,
) -> list[tuple[int, dict[str, Any]]]:
    """Parse a JSONL file into ``(line_number, record)`` pairs, checking each required field's type.

    Blank lines are an error too: a benchmark file with holes usually means a broken conversion.
    """
    if not path.is_file():
        raise missing_file_error(path, expected_format)
    records = []
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise format_error(path, line_number, f"not UTF-8 ({exc.reason})", expected_format) from None
            if not text.strip():
                raise format_error(path, line_number, "blank line", expected_format)
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise format_error(
                    path, line_number, f"not valid JSON ({exc.msg})", expected_format
                ) from None
            if not isinstance(record, dict):
                raise format_error(path, line_number, "a JSON value that is not an object", expected_format)
            for field, kind in required_fields.items():
                if field not in record:
                    raise format_error(path, line_number, f"missing field '{field}'", expected_format)
                # bool is an int subclass; a label of `true` is a conversion bug, not a class id.
                if not isinstance(record[field], kind) or (isinstance(record[field], bool) and kind is int):
                    got = type(record[field]).__name__
                    raise format_error(path, line_number, f"field '{field}' is a {got}", expected_format)
            records.append((line_number, record))
    if not records:
        raise format_error(path, 1, "empty file", expected_format)
    return records


def read_lines(path: Path, expected_format: str) -> list[str]:
    """Read a UTF-8 text file with one non-empty item per line (trailing newline stripped)."""
    if not path.is_file():
        raise missing_file_error(path, expected_format)
    lines = []
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise format_error(path, line_number, f"not UTF-8 ({exc.reason})", expected_format) from None
            if not text.strip():
                raise format_error(path, line_number, "empty line", expected_format)
            lines.append(text)
    if not lines:
        raise format_error(path, 1, "empty file", expected_format)
    return lines


def load_hub_rows(dataset_id: str, config: str | None, split: str, local_path: Path) -> list[dict[str, Any]]:
    """Rows of a Hub dataset split via ``datasets`` (only called when online or forced by ``hub``)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise DataError("reading from the Hub needs the 'datasets' package: pip install datasets") from None
    check_hub_dataset(dataset_id, local_path, config)
    try:
        rows = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # the Hub raises many types (network, gated, missing config)
        raise DataError(
            f"could not load {dataset_id!r} (config {config!r}, split {split!r}) from the Hugging Face "
            f"Hub: {type(exc).__name__}: {exc}. Local file that would be used instead: {local_path}"
        ) from None
    return [dict(row) for row in rows]


def load_records(
    data: DataSource,
    relative_path: str,
    required_fields: Mapping[str, type | tuple[type, ...]],
    expected_format: str,
    hub: tuple[str, str | None, str] | None,
    from_hub_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[Path | str, list[tuple[int, dict[str, Any]]]]:
    """Read one JSONL benchmark file locally or its Hub equivalent, as ``(where, [(line, record)])``.

    ``hub`` is ``(dataset_id, config, split)``; ``from_hub_row`` maps a Hub row onto the local
    record layout so both sources produce identical records. Hub "line numbers" are row index + 1.
    """
    local_path = data.root / relative_path
    if hub is not None and data.use_hub(local_path):
        rows = load_hub_rows(*hub, local_path=local_path)
        convert = from_hub_row or (lambda row: row)
        return f"hub:{hub[0]}/{hub[1]}/{hub[2]}", [(i + 1, convert(row)) for i, row in enumerate(rows)]
    return local_path, read_jsonl(local_path, required_fields, expected_format)
