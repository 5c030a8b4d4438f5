"""Every ``lora_ga_direction`` (methods.md §2.1 step 3) against the SVD of the estimated gradient.

The regression below has W0 = 0 and orthogonal inputs (XᵀX = N·I), so the gradient the init pass
estimates is G = −(2/d_out)·K for the target map K: we give K a known, well-separated spectrum and
recover G independently with autograd. With G = U S Vᵀ (fp64, full SVD) and ζ the stable scale:
A0 = ζ·V[:, S_A]ᵀ and B0 = ζ·U[:, S_B] with disjoint index sets, 0-based: ArB2r S_A = 0..r−1,
S_B = r..2r−1; A2rBr the reverse; ArBr S_A = 0, 2, 4, … and S_B = 1, 3, 5, … (the paper's odd and even
indices); random a random split of 0..2r−1. Subspaces are compared as projectors (signs are arbitrary).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyft

D_IN, D_OUT, N, R = 64, 48, 128, 4
SPECTRUM = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.5]  # top 2r, then a tail of 0.01


class ZeroRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(D_IN, D_OUT, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x, labels=None):
        out = self.proj(x)
        loss = ((out - labels) ** 2).mean() if labels is not None else None
        return type("Out", (), {"loss": loss, "logits": out})()


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = N**0.5 * torch.linalg.qr(torch.randn(N, D_IN, generator=generator, dtype=torch.float64)).Q
    u = torch.linalg.qr(torch.randn(D_OUT, D_OUT, generator=generator, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=generator, dtype=torch.float64)).Q
    spectrum = torch.full((D_OUT,), 0.01, dtype=torch.float64)
    spectrum[: len(SPECTRUM)] = torch.tensor(SPECTRUM, dtype=torch.float64)
    target_map = -(D_OUT / 2) * (u * spectrum) @ v[:, :D_OUT].T  # K, so that G = −(2/d_out)·K = U S Vᵀ
    return {"x": x.float(), "labels": (x @ target_map.T).float()}


def _gradient_svd(batch):
    model = ZeroRegression()
    model(**batch).loss.backward()
    gradient = model.proj.weight.grad.double()
    U, S, Vh = torch.linalg.svd(gradient)
    assert torch.allclose(S[: 2 * R], torch.tensor(SPECTRUM, dtype=torch.float64), rtol=1e-3)  # as designed
    return U, Vh.T


def _init_factors(method: str, direction: str, batch, seed: int = 0):
    config = hyft.AdapterConfig(
        method=method,
        r=R,
        alpha=2 * R,
        lora_ga_direction=direction,
        target_modules=["proj"],
        boft_block_size=8,
    )
    layer = hyft.wrap(ZeroRegression(), config, init_batches=[batch], seed=seed).adapted_layers()["proj"]
    branch = layer.lora if method == "hybrid" else layer
    return branch.lora_A0.double(), branch.lora_B0.double()


def _index_set(weights: torch.Tensor) -> list[int]:
    """Indices i < 2r whose singular vector lies in the factor's span (weight ≈ 1); the others must be ≈ 0."""
    chosen = [i for i, w in enumerate(weights.tolist()) if w > 0.5]
    assert all(abs(w - (1.0 if i in chosen else 0.0)) < 1e-3 for i, w in enumerate(weights.tolist()))
    return chosen


EXPECTED = {
    "ArB2r": ([0, 1, 2, 3], [4, 5, 6, 7]),
    "A2rBr": ([4, 5, 6, 7], [0, 1, 2, 3]),
    "ArBr": ([0, 2, 4, 6], [1, 3, 5, 7]),
}


def _split(
    A0: torch.Tensor, B0: torch.Tensor, U: torch.Tensor, V: torch.Tensor
) -> tuple[list[int], list[int]]:
    """(S_A, S_B) read off the factors, after checking A0 = ζ·V_Aᵀ and B0 = ζ·U_B as projectors."""
    zeta = D_OUT**0.25 / 16**0.5  # the default "stable" scale, γ = 16
    eye = torch.eye(R, dtype=torch.float64)
    assert torch.allclose(A0 @ A0.T, zeta**2 * eye, atol=1e-5)
    assert torch.allclose(B0.T @ B0, zeta**2 * eye, atol=1e-5)
    # ‖A0 v_i‖²/ζ² is 1 for a singular vector in A0's row space and 0 for one orthogonal to it.
    a_set = _index_set((A0 @ V[:, : 2 * R]).square().sum(0) / zeta**2)
    b_set = _index_set((U[:, : 2 * R].T @ B0).square().sum(1) / zeta**2)
    assert len(a_set) == R and len(b_set) == R
    for factor_projector, vectors, chosen in ((A0.T @ A0, V, a_set), (B0 @ B0.T, U, b_set)):
        basis = vectors[:, chosen]
        assert torch.allclose(factor_projector / zeta**2, basis @ basis.T, atol=1e-4)
    return a_set, b_set


@pytest.mark.parametrize("method", ["lora_ga", "hybrid"])
@pytest.mark.parametrize("direction", list(EXPECTED))
def test_fixed_directions_pick_their_singular_vectors(method, direction):
    batch = _batch()
    U, V = _gradient_svd(batch)
    A0, B0 = _init_factors(method, direction, batch)
    a_set, b_set = _split(A0, B0, U, V)
    assert (a_set, b_set) == EXPECTED[direction]
    assert not set(a_set) & set(b_set)  # A and B never share a singular vector (first-step identity, §2.1)


def test_random_direction_splits_the_top_2r_at_random():
    batch = _batch()
    U, V = _gradient_svd(batch)
    splits = set()
    for seed in range(4):
        a_set, b_set = _split(*_init_factors("lora_ga", "random", batch, seed), U, V)
        assert sorted(a_set + b_set) == list(range(2 * R))  # a partition of the top 2r
        splits.add(tuple(a_set))
    assert len(splits) > 1  # the split depends on the seed
    assert not splits <= {tuple(sets[0]) for sets in EXPECTED.values()}  # and is not just a fixed rule
