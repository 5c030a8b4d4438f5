"""A pool given as a table (CSV / Parquet file, or a dataset split) for curation, which reads JSONL.

Curation accounts for every input line (the ledger), so a table is first written row for row as JSONL into
the output folder (``input.jsonl``: row n of the table = line n, CSV file line n + 1) and that file is
curated; the same table, same file, so an unchanged rerun reuses the finished curation (sha256 of the
input). The table is read and its columns checked by :mod:`hyft.tables`, the reader of ``data.custom``:
a text, language, label or id field the table lacks fails at once, naming the columns it has.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hyft.governance.config import CurationConfig
from hyft.io import atomic_write_lines, prepare_output_dir
from hyft.tables import SUFFIXES, check_columns, dataset_label, file_format, read_dataset, read_file

CONVERTED_POOL = "input.jsonl"


def pool_columns(config: CurationConfig) -> dict[str, list[str]]:
    """Setting → the columns it names; the language column only without a ``default_language``."""
    return {
        "text_fields": list(config.text_fields),
        "lang_field": [config.lang_field] if config.default_language is None else [],
        "label_field": [config.label_field] if config.label_field else [],
        "id_field": [config.id_field] if config.id_field else [],
    }


def _json_ready(value: Any) -> Any:
    # pandas reads an empty CSV cell of a numeric column as NaN, which strict JSON has no word for: null
    # (a missing value) is what the validate stage then reports.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    return value


def table_pool(
    config: CurationConfig,
    out_dir: Path,
    *,
    path: Path | None = None,
    input_format: str = "auto",
    dataset: str | None = None,
    dataset_config: str | None = None,
    split: str = "train",
) -> Path:
    """The JSONL file to curate: ``path`` itself when it is JSONL; else the CSV / Parquet file or the split of
    ``dataset`` (a Hub name from the local cache, or a local folder), checked against the field mapping and
    written to ``out_dir/input.jsonl``.

    Raises :class:`hyft.tables.TableError` (a :class:`~hyft.errors.UserError`) for an unreadable table or a
    missing column, :class:`hyft.io.OutputError` when ``out_dir`` cannot be written.
    """
    if dataset is None:
        if path is None:
            raise ValueError("table_pool needs a path or a dataset")
        # Any other suffix stays JSONL, the pool format before tables were read (pool.txt keeps working).
        known = input_format != "auto" or path.suffix.lower() in SUFFIXES
        kind = file_format(path, input_format, "input_format") if known else "jsonl"
        if kind == "jsonl":
            return path  # read line by line by the validate stage, byte-faithful
        if not path.is_file():
            raise FileNotFoundError(f"{path}: input pool not found (expected a {kind.upper()} file)")
        label = str(path)
        columns = [name for names in pool_columns(config).values() for name in names]
        table = read_file(path, kind, f"{kind.upper()} with columns {columns}")
    else:
        label = dataset_label(dataset, dataset_config, split)
        table = read_dataset(dataset, dataset_config, split)
    check_columns(label, list(table.column_names), pool_columns(config), "curation")
    target = prepare_output_dir(out_dir) / CONVERTED_POOL
    atomic_write_lines(
        target, (json.dumps(_json_ready(dict(row)), ensure_ascii=False, default=str) for row in table)
    )
    return target
