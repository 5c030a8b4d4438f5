"""Footprint meter, parameter counts and saved-for-backward bytes against hand-computed values."""

from __future__ import annotations

import mmap
import time

import pytest
import torch

from hyft.footprint import FootprintMeter, count_parameters, saved_tensor_bytes


def test_count_parameters_with_frozen_and_tied_weights() -> None:
    embedding = torch.nn.Embedding(10, 4)  # 40
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied: counted once
    model = torch.nn.ModuleDict({"embed": embedding, "head": head, "mlp": torch.nn.Linear(4, 3)})  # 12 + 3
    model["mlp"].bias.requires_grad_(False)
    assert count_parameters(model) == (40 + 12, 40 + 12 + 3)


def test_saved_tensor_bytes_by_hand() -> None:
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(3, 4, requires_grad=True)
    assert saved_tensor_bytes(lambda: (a * b).sum()) == 2 * 3 * 4 * 4  # mul saves both float32 inputs
    x = torch.randn(5, requires_grad=True)
    assert saved_tensor_bytes(lambda: (x * x).sum()) == 5 * 4  # x saved twice, counted once
    assert saved_tensor_bytes(lambda: x.exp().sum()) == 5 * 4  # exp saves its output only
    assert saved_tensor_bytes(lambda: (x.exp() * x).sum()) == 2 * 5 * 4
    layer = torch.nn.Linear(16, 8)
    inputs = torch.randn(4, 16, requires_grad=True)
    # addmm saves the input (for dW) and the weight (for dx); relu saves its 4×8 output
    assert saved_tensor_bytes(lambda: torch.relu(layer(inputs)).sum()) == (4 * 16 + 8 * 16 + 4 * 8) * 4
    excluded = saved_tensor_bytes(lambda: torch.relu(layer(inputs)).sum(), exclude=layer.parameters())
    assert excluded == (4 * 16 + 4 * 8) * 4
    with torch.no_grad():
        assert saved_tensor_bytes(lambda: torch.relu(layer(inputs)).sum()) == 0


def test_saved_tensor_bytes_frees_the_graph() -> None:
    # exp saves its own output; a pack hook that hands back that very tensor would tie the output to its
    # grad_fn in a cycle that Python's gc cannot see, and every measured forward would leak its graph.
    import gc
    import weakref

    x = torch.randn(1000, requires_grad=True)
    kept: list[weakref.ref] = []

    def forward() -> torch.Tensor:
        y = x.exp()
        kept.append(weakref.ref(y))
        return y.sum()

    assert saved_tensor_bytes(forward) == 1000 * 4
    gc.collect()
    assert kept[0]() is None


def test_footprint_meter_times_steps_and_measures_the_window_peak() -> None:
    with FootprintMeter() as meter:
        for pause in (0.03, 0.03, 0.03, 0.2):
            with meter.step():
                time.sleep(pause)
        # Fresh anonymous pages, each written so it is resident: a malloc'd buffer could reuse memory the
        # process already holds (after other tests in the same worker) and leave the peak unchanged.
        block = mmap.mmap(-1, 256 << 20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        block.close()
    summary = meter.summary()
    assert summary.n_steps == 4 and len(summary.step_times_s) == 4
    assert 0.03 <= summary.median_step_s < 0.1  # the median ignores the one slow step
    assert summary.peak_memory_bytes - summary.baseline_memory_bytes >= 240 << 20
    if summary.memory_kind != "process_peak_rss":
        pytest.skip(f"peak RSS cannot be reset here ({summary.memory_kind}); window isolation not testable")
    with FootprintMeter() as quiet:
        small = b"\x01" * (8 << 20)
        del small
    assert quiet.summary().peak_memory_bytes - quiet.summary().baseline_memory_bytes < 64 << 20
