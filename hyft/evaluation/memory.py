"""Peak-memory reading that works on CPU and GPU (used by training, LoRA-GA init and benchmarks)."""

from __future__ import annotations

import resource
import sys

import torch


def reset_peak_memory(device: torch.device | str | None = None) -> None:
    """Reset the CUDA peak counter (a process's peak RSS cannot be reset: CPU readings are cumulative)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device | str | None = None) -> int:
    """CUDA max allocated bytes on a GPU; otherwise the process's peak resident set size in bytes."""
    if device is not None and torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
