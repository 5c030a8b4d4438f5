"""Properties of LoRA and the LoRA-GA init that the mutation run
(bench/results/mutation.md) found untested."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.lora import LoraLinear
from hyft.adapters.lora_ga import estimate_lora_ga_init, lora_ga_factors


def make_lora(seed: int = 0, **settings) -> LoraLinear:
    torch.manual_seed(seed)
    config = hyft.AdapterConfig(**{"method": "lora", "r": 4, "alpha": 8, **settings})
    return LoraLinear(nn.Linear(16, 12), config)


def fill(layer: LoraLinear, scale: float = 1.0, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in (layer.lora_A, layer.lora_B):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)


# --------------------------------------------------------------------------- LoRA


def test_frozen_init_survives_a_state_dict_round_trip():
    source = make_lora(method="lora_ga")
    with torch.no_grad():
        source.lora_A0.normal_()
        source.lora_B0.normal_()
    fill(source)
    target = make_lora(method="lora_ga")
    target.load_state_dict(source.state_dict())  # A0, B0 are persistent buffers: the delta BA − B0A0 travels
    x = torch.randn(5, 16)
    assert torch.allclose(target(x), source(x), atol=1e-6)


def test_dropout_acts_on_the_lora_input_in_training_only():
    layer = make_lora(dropout=0.5)
    fill(layer)
    x = torch.randn(64, 16)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_norm_cap_counts_the_training_forwards_where_it_binds():
    capped = make_lora(norm_cap=0.01)
    fill(capped, scale=3.0)
    loose = make_lora(norm_cap=100.0)
    fill(loose, scale=1e-3)
    assert capped.cap_active_steps == loose.cap_active_steps == 0
    x = torch.randn(3, 16)
    for layer in (capped, loose):
        layer.train()
        layer(x)
        layer(x)
        layer.eval()
        layer(x)
    assert capped.cap_active_steps == 2  # two training forwards with κ < 1, none in eval
    assert loose.cap_active_steps == 0  # κ = 1 exactly: the cap does not bind


def test_saved_capped_lora_loads_as_plain_lora_with_the_capped_output():
    capped = make_lora(norm_cap=0.01)
    fill(capped, scale=3.0)
    plain = make_lora()  # same seed: the same frozen W0
    plain.load_adapter_state(capped.adapter_state())
    x = torch.randn(5, 16)
    capped.eval()
    plain.eval()
    assert (capped(x) - capped.base_layer(x)).abs().max() > 1e-4
    assert torch.allclose(plain(x), capped(x), atol=1e-6)


# --------------------------------------------------------------------------- LoRA-GA factors


def _gradient(seed: int = 0, shape: tuple[int, int] = (24, 20)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=generator))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=generator))
    spectrum = 2.0 ** -torch.arange(
        min(shape), dtype=torch.float32
    )  # well separated: randomized SVD is exact
    return (u[:, : len(spectrum)] * spectrum) @ v[:, : len(spectrum)].T


def test_rank_must_leave_room_for_two_r_directions():
    config = hyft.AdapterConfig(method="lora_ga", r=4, alpha=8)
    with pytest.raises(ValueError, match="2r ≤ min"):
        lora_ga_factors(torch.randn(8, 6), torch.randn(8, 6), config)


def test_factors_depend_on_the_seed_not_on_the_global_random_state():
    config = hyft.AdapterConfig(method="lora_ga", r=2, alpha=4, lora_ga_niter=0)
    G = torch.randn(30, 25)
    torch.manual_seed(1)
    first = lora_ga_factors(G, G, config, seed=5)
    torch.manual_seed(2)
    second = lora_ga_factors(G, G, config, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_paper_eq8_factors_multiply_to_the_rank_r_truncation_of_the_gradient():
    config = hyft.AdapterConfig(method="lora_ga", r=3, alpha=6, lora_ga_variant="paper_eq8")
    G = _gradient()
    A0, B0 = lora_ga_factors(G, G, config)
    U, S, Vh = torch.linalg.svd(G)
    truncation = (U[:, :3] * S[:3]) @ Vh[:3]
    assert torch.allclose(B0 @ A0, truncation, atol=1e-5)


def test_weight_spectrum_scale_shrinks_as_the_inverse_square_root_of_the_lora_scale():
    # ζ = mean_i sqrt(σ_i(W0) / s): the rows of A0 = ζ·V_rᵀ have norm ζ, and s four times larger halves it.
    G, W0 = _gradient(0), _gradient(1) * 50
    norms = []
    for alpha in (8, 32):
        config = hyft.AdapterConfig(method="lora_ga", r=2, alpha=alpha, lora_ga_scale="weightS")
        A0, _ = lora_ga_factors(G, W0, config)
        norms.append(A0.norm(dim=1))
    assert torch.allclose(norms[0], norms[1] * 2, rtol=1e-4)
    sigma = torch.linalg.svdvals(W0)[:2]
    assert torch.allclose(norms[0], torch.sqrt(sigma / 4).mean().expand(2), rtol=1e-4)  # s = α/r = 8/2


class DropoutRegression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(16, 16)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        loss = (self.proj(self.drop(x)) - labels).square().mean()
        return type("Out", (), {"loss": loss})()


@pytest.mark.parametrize("n_batches", [1, 3])
def test_gradient_pass_is_seeded_per_batch_and_reports_its_time(n_batches):
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"x": torch.randn(8, 16, generator=generator), "labels": torch.randn(8, 16, generator=generator)}
        for _ in range(n_batches)
    ]
    config = hyft.AdapterConfig(method="lora_ga", r=2, alpha=4)
    results = []
    for global_seed in (11, 12):  # dropout masks come from seed + batch index, not the caller's RNG state
        model = DropoutRegression()
        torch.manual_seed(global_seed)
        factors, report = estimate_lora_ga_init(model, ["proj"], batches, config, seed=3)
        results.append(factors["proj"])
        assert report.svd_seconds > 0 and report.gradient_seconds >= 0
        assert math.isclose(report.init_seconds, report.svd_seconds + report.gradient_seconds)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
