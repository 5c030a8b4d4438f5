"""LoRA-GA's gradient estimate on a quantized base: the gradient on the dequantised weight, per layer."""

from __future__ import annotations

import pytest
import torch

import hyft
from hyft.adapters.lora_ga import estimate_lora_ga_init
from hyft.adapters.targeting import find_targets
from tests.adapters_quantized.tiny import batch, dequantised_reference_model, load_quantized


def _invariants(A0: torch.Tensor, B0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A0ᵀA0 and B0B0ᵀ: the factors up to the sign of each singular vector."""
    return A0.T @ A0, B0 @ B0.T


@pytest.mark.parametrize("n_batches", [1, 2])
@pytest.mark.parametrize("scale", ["stable", "weightS"])
def test_nf4_factors_equal_autograd_on_the_dequantised_twin(llama_dir, n_batches, scale):
    """Oracle: the fp32 model whose weights are the NF4 reference Ŵ, where autograd gives ∂L/∂Ŵ directly.
    NF4 with fp32 compute runs the same x·Ŵᵀ, so the factors must agree to fp32 rounding."""
    config = hyft.AdapterConfig(method="lora_ga", r=4, alpha=8, lora_ga_scale=scale)
    batches = [batch(seed=10 + i) for i in range(n_batches)]
    quantized = load_quantized(llama_dir, "nf4")
    twin = dequantised_reference_model(llama_dir, "nf4")
    targets = find_targets(quantized, None)
    flags = {n: p.requires_grad for n, p in quantized.named_parameters()}
    got, report = estimate_lora_ga_init(quantized, targets, batches, config)
    expected, _ = estimate_lora_ga_init(twin, targets, batches, config)
    assert sorted(got) == sorted(expected) == sorted(targets) and report.layers == 14
    for name in targets:
        for mine, reference in zip(_invariants(*got[name]), _invariants(*expected[name]), strict=True):
            assert (mine - reference).abs().max() <= 1e-4 * reference.abs().max(), name
    assert {n: p.requires_grad for n, p in quantized.named_parameters()} == flags
    assert all(p.grad is None for p in quantized.parameters())


def test_int8_factors_align_with_the_dequantised_gradient(llama_dir):
    """LLM.int8() rounds the activations in its forward, so its gradient is close to, not equal to, the
    one on Ŵ in exact arithmetic: the top-r subspaces still agree (cosines of principal angles > 0.99)."""
    config = hyft.AdapterConfig(method="lora_ga", r=4, alpha=8)
    batches = [batch(seed=10), batch(seed=11)]
    quantized = load_quantized(llama_dir, "int8")
    targets = find_targets(quantized, None)
    got, _ = estimate_lora_ga_init(quantized, targets, batches, config)
    expected, _ = estimate_lora_ga_init(
        dequantised_reference_model(llama_dir, "int8"), targets, batches, config
    )
    for name in targets:
        for index in (0, 1):  # A0 rows span right singular vectors, B0 columns left ones
            mine = got[name][index] if index == 0 else got[name][index].T
            reference = expected[name][index] if index == 0 else expected[name][index].T
            q_mine, q_ref = torch.linalg.qr(mine.T).Q, torch.linalg.qr(reference.T).Q
            cosines = torch.linalg.svdvals(q_mine.T @ q_ref)
            assert cosines.min() > 0.99, (name, cosines)
