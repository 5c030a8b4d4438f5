"""Footprint measurement: step time, peak memory, parameter counts, bytes saved for backward.

torch is imported only inside the functions that need it, so the meter also times non-torch code.
A base module (no hyft imports): adapters (LoRA-GA's estimate), training and evaluation all measure with it.
"""

from __future__ import annotations

import re
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class FootprintSummary:
    """What a :class:`FootprintMeter` measured.

    median_step_s: median wall time of the recorded steps (None without steps); step_times_s: all of them;
    peak_memory_bytes: peak inside the measured window; baseline_memory_bytes: the same quantity when the
    window opened (peak − baseline = what the window added); memory_kind: "cuda_max_allocated" (torch
    allocator, excludes the CUDA context and cache), "process_peak_rss" (VmHWM after a reset at the
    window start) or "process_peak_rss_lifetime" (ru_maxrss: peak since process start, no reset possible).
    """

    n_steps: int
    median_step_s: float | None
    step_times_s: tuple[float, ...]
    peak_memory_bytes: int
    baseline_memory_bytes: int
    memory_kind: str


def _status_kib(field: str) -> int | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; Linux ≥ 4.0 only."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class FootprintMeter:
    """Context manager that records per-step wall time and the peak memory of the enclosed window.

    device: "cpu" (default) measures process RSS; "cuda"/"cuda:N"/a torch.device measures the torch
    allocator's max_memory_allocated and synchronises the device around each step so the time covers
    the queued kernels. Usage::

        with FootprintMeter("cuda") as meter:
            for batch in batches:
                with meter.step():
                    train_step(batch)
        summary = meter.summary()
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device = str(device) if device is not None else "cpu"
        self.is_cuda = self.device.startswith("cuda")
        self.step_times_s: list[float] = []
        self._baseline = 0
        self._peak: int | None = None
        self._memory_kind = ""

    def _synchronize(self) -> None:
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def __enter__(self) -> FootprintMeter:
        self._peak = None
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            self._memory_kind = "cuda_max_allocated"
        else:
            resettable = _reset_peak_rss()
            rss_kib = _status_kib("VmRSS")
            self._baseline = (rss_kib or 0) * 1024
            self._memory_kind = "process_peak_rss" if resettable and rss_kib else "process_peak_rss_lifetime"
        return self

    def current_peak_bytes(self) -> int:
        """Peak memory since the window opened (lifetime peak for "process_peak_rss_lifetime")."""
        if self.is_cuda:
            import torch

            return int(torch.cuda.max_memory_allocated(self.device))
        if self._memory_kind == "process_peak_rss":
            return (_status_kib("VmHWM") or 0) * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    def __exit__(self, *exc_info: object) -> None:
        self._synchronize()
        self._peak = self.current_peak_bytes()

    @contextmanager
    def step(self) -> Iterator[None]:
        """Time one step (device synchronised before and after on CUDA)."""
        self._synchronize()
        start = time.perf_counter()
        yield
        self._synchronize()
        self.step_times_s.append(time.perf_counter() - start)

    def record_step(self, seconds: float) -> None:
        """Add a step time measured elsewhere."""
        self.step_times_s.append(float(seconds))

    def summary(self) -> FootprintSummary:
        """Measurements so far; the peak is read live when called inside the window."""
        peak = self._peak if self._peak is not None else self.current_peak_bytes()
        return FootprintSummary(
            n_steps=len(self.step_times_s),
            median_step_s=statistics.median(self.step_times_s) if self.step_times_s else None,
            step_times_s=tuple(self.step_times_s),
            peak_memory_bytes=int(peak),
            baseline_memory_bytes=int(self._baseline),
            memory_kind=self._memory_kind,
        )


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; a parameter shared by several modules counts once.

    trainable = Σ numel(p) over p with requires_grad; total = Σ numel(p) over all parameters.
    """
    trainable = total = 0
    for parameter in model.parameters():  # parameters() already skips repeated (tied) tensors
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def saved_tensor_bytes(fn: Callable[[], Any], exclude: Iterable[Any] = ()) -> int:
    """Bytes kept alive for backward by one call of ``fn`` (a forward pass with grad enabled).

    Every tensor autograd saves passes through a ``torch.autograd.graph.saved_tensors_hooks`` pack hook.
    Tensors are grouped by their storage (data pointer): a storage saved several times (x * x saves x
    twice) or through several views is counted once, with its full size, since that is what the saved
    view keeps alive. Storages of ``exclude`` (e.g. ``model.parameters()``, alive anyway) are not counted.
    Result = Σ over distinct saved storages of storage.nbytes(). Meta/fake tensors are counted by their
    own size.
    """
    import torch

    def storage_key(tensor: torch.Tensor) -> tuple[Any, int]:
        if tensor.device.type == "meta":
            return ("tensor", id(tensor)), tensor.numel() * tensor.element_size()
        try:
            storage = tensor.untyped_storage()
            return (tensor.device, storage.data_ptr()), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without a plain storage
            return ("tensor", id(tensor)), tensor.numel() * tensor.element_size()

    excluded = {storage_key(t)[0] for t in exclude}
    saved: dict[Any, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key, nbytes = storage_key(tensor)
        if key not in excluded:
            saved[key] = max(saved.get(key, 0), nbytes)
        # Detached alias (same storage): handing back the tensor itself makes a saved *output* point at
        # its own grad_fn, a reference cycle through C++ that keeps the whole graph alive (a leak).
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = fn()
    del output
    return sum(saved.values())
