"""Output files that are never torn: every write goes to a temp name in the same folder, is fsynced,
then ``os.replace``d onto the target (atomic on POSIX), and the folder entry is fsynced too.

A reader therefore sees either the old file or the complete new one, never a prefix. Folders that
hold several files (a curation folder, a run folder) also get a completion marker written last
(:func:`write_marker`); readers call :func:`require_marker` and refuse a folder without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

MARKER = "_COMPLETE"
MARKER_SCHEMA = 1


class OutputError(OSError):
    """An output location cannot be used (an existing file, a read-only or special folder)."""


class IncompleteOutputError(RuntimeError):
    """A folder lacks its completion marker, or its files no longer match it: do not trust it."""


def prepare_output_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it is a writable folder; raise OutputError saying why not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{path} is not a writable folder ({exc.strerror or exc})") from None
    return path


def fsync_dir(path: str | Path) -> None:
    """Persist a folder's entries (a rename or a new file) where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is fsynced and replaces ``path``.

    For writers that insist on a file name (``savefig``, ``safetensors.save_file``). On failure the
    temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name keeps the suffix, so writers that infer a format from it (savefig) still do.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="\n") as handle:
        handle.write(text)


def atomic_write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """UTF-8 text, one item per line (each item without its newline)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """UTF-8 JSONL, one object per line, keys in insertion order (deterministic)."""
    atomic_write_lines(path, (json.dumps(row, ensure_ascii=False) for row in rows))


def atomic_write_json(path: str | Path, value: Any, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=indent) + "\n")


def atomic_save(path: str | Path, save: Callable[[Path], Any]) -> None:
    """Call ``save(temp_path)`` (e.g. ``lambda p: fig.savefig(p, format="png")``), then replace."""
    with atomic_path(path) as tmp:
        save(tmp)


def fsync_tree(folder: str | Path) -> None:
    """fsync every file below ``folder`` and every folder entry (before renaming a temp folder into place)."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(path)
    fsync_dir(folder)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _name_in(folder: Path, path: Path) -> str:
    """``path``'s name relative to ``folder``: an absolute path, or a relative one that starts with the
    folder's own (relative) path, names a file under it (``runs/x/c0.jsonl`` in ``runs/x``); any other
    relative path is already relative to the folder (``c0.jsonl``)."""
    if path.is_absolute() or (not folder.is_absolute() and path.parts[: len(folder.parts)] == folder.parts):
        return path.resolve().relative_to(folder.resolve()).as_posix()
    return path.as_posix()


def write_marker(folder: str | Path, files: Iterable[str | Path], **facts: Any) -> dict[str, Any]:
    """Write ``folder/_COMPLETE`` last: the facts (input hash, config hash) and every file's sha256.

    Call it only after every listed file is in place; remove it (:func:`clear_marker`) before the
    first write of a new run into the same folder.
    """
    folder = Path(folder)
    names = sorted({_name_in(folder, Path(f)) for f in files})
    marker = {
        "schema_version": MARKER_SCHEMA,
        **facts,
        "files": {name: file_sha256(folder / name) for name in names},
    }
    atomic_write_json(folder / MARKER, marker)
    return marker


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker's content, or None when it is missing or unreadable."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None


def clear_marker(folder: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(folder) / MARKER).unlink()
    fsync_dir(folder)


def require_marker(folder: str | Path, what: str, verify: bool = True) -> dict[str, Any]:
    """The folder's marker; IncompleteOutputError when it is missing or (``verify``) a file changed."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        raise IncompleteOutputError(
            f"{folder}: no {MARKER} marker, so this {what} was interrupted or is still being written; "
            "rerun the command that produces it"
        )
    if verify:
        for name, digest in marker["files"].items():
            path = folder / name
            if not path.is_file() or file_sha256(path) != digest:
                raise IncompleteOutputError(
                    f"{folder}: {name} is missing or differs from what {MARKER} recorded; "
                    f"this {what} was changed after it was written; rerun the command that produces it"
                )
    return marker
