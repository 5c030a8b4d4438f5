"""Cayley map and butterfly structure: methods.md §3.6 B1, B2, B4, B9 (fp64 where bounds are checked)."""

from __future__ import annotations

import pytest
import torch

import hyft
from hyft.adapters import boft as boft_module
from hyft.adapters.boft import BoftLinear
from hyft.adapters.butterfly import (
    apply_blocks,
    apply_factors,
    butterfly_permutations,
    grouped_blocks,
    inverse_permutation,
)
from hyft.adapters.cayley import (
    cayley_exact,
    cayley_neumann,
    neumann_orthogonality_bound,
    neumann_power,
    skew_from_upper,
    upper_from_skew,
    upper_size,
)
from tests.adapters_orthogonal.oracles import butterfly_oracle, cayley_by_inverse, random_skew


@pytest.mark.parametrize("size", [2, 8, 32, 64])
@pytest.mark.parametrize("norm", [0.1, 1.0])
def test_exact_cayley_is_orthogonal_in_fp32(size, norm):
    skew = random_skew((16,), size, norm, dtype=torch.float32, seed=size)
    rotation = cayley_exact(skew)
    error = (rotation.transpose(-1, -2) @ rotation - torch.eye(size)).abs().max()
    assert error <= 1e-5
    # The paper's sign: (I + Q)(I − Q)^{-1}, not its transpose.
    assert torch.allclose(rotation.double(), cayley_by_inverse(skew.double()), atol=1e-5)
    assert (rotation - rotation.transpose(-1, -2)).abs().max() > 1e-3 * norm


def test_zero_generator_gives_the_identity_bit_for_bit():
    zero = torch.zeros(3, 5, upper_size(8))
    skew = skew_from_upper(zero, 8)
    assert torch.equal(cayley_exact(skew), torch.eye(8).expand(3, 5, 8, 8))
    assert torch.equal(cayley_neumann(skew, 6), torch.eye(8).expand(3, 5, 8, 8))


@pytest.mark.parametrize("terms", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("q", [0.05, 0.1, 0.3])
def test_neumann_orthogonality_error_is_within_its_bound_fp64(terms, q):
    skew = random_skew((4,), 16, q, seed=terms)
    rotation = cayley_neumann(skew, terms)
    error = torch.linalg.matrix_norm(
        rotation.transpose(-1, -2) @ rotation - torch.eye(16, dtype=torch.float64), ord=2
    )
    bound = neumann_orthogonality_bound(q, terms)
    assert (error <= bound * (1 + 1e-6) + 1e-13).all()
    # The bound is tight (methods.md §3.2): a wrong truncation order would land far from it.
    assert (error >= 0.5 * bound - 1e-15).all()


def test_neumann_power_follows_pefts_rule():
    assert [neumann_power(k) for k in (3, 4, 5, 6, 7)] == [2, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        neumann_power(2)


def test_neumann_and_exact_share_the_sign_convention():
    # B2: at ‖Q‖ = 1e-2 the two forms agree to O(‖Q‖^{n+1}); R vs Rᵀ would differ by about 4‖Q‖.
    skew = random_skew((8,), 12, 1e-2, seed=3)
    exact, approx = cayley_exact(skew), cayley_neumann(skew, 6)
    assert (exact - approx).abs().max() < 1e-9
    assert (exact.transpose(-1, -2) - approx).abs().max() > 1e-2


def test_skew_from_upper_roundtrip_and_layout():
    upper = torch.randn(2, 3, upper_size(5))
    skew = skew_from_upper(upper, 5)
    assert torch.equal(skew, -skew.transpose(-1, -2))
    assert torch.equal(upper_from_skew(skew), upper)
    rows, cols = torch.triu_indices(5, 5, 1)
    assert torch.equal(skew[1, 2, rows[0], cols[0]], upper[1, 2, 0])  # row-major strict upper triangle


@pytest.mark.parametrize(
    ("dim", "size", "factors"), [(16, 2, 4), (48, 4, 3), (64, 8, 3), (96, 6, 2), (32, 4, 1)]
)
def test_butterfly_permutations_match_peft_and_the_dense_oracle(dim, size, factors):
    from peft.tuners.boft.layer import BOFTLayer

    perms = butterfly_permutations(dim, size, factors)
    for i in range(factors):
        assert torch.equal(torch.sort(perms[i]).values, torch.arange(dim))  # a permutation
        if factors > 1:
            peft_perm = BOFTLayer.block_butterfly_perm(None, dim, dim // size // 2**i, size // 2, factors - 1)
            assert torch.equal(perms[i], peft_perm)
    assert torch.equal(perms[0], torch.arange(dim))
    assert torch.equal(perms.gather(1, inverse_permutation(perms)), torch.arange(dim).expand(factors, dim))
    blocks = cayley_exact(random_skew((factors, dim // size), size, 0.8, seed=dim))
    dense = butterfly_oracle(blocks, perms)
    assert (dense.T @ dense - torch.eye(dim, dtype=torch.float64)).abs().max() < 1e-12
    x = torch.randn(5, dim, dtype=torch.float64)
    assert torch.allclose(apply_factors(x, blocks, perms), x @ dense, atol=1e-12)
    assert torch.allclose(apply_factors(x, blocks, perms, transpose=True), x @ dense.T, atol=1e-12)
    assert torch.allclose(apply_blocks(x, grouped_blocks(blocks, perms)), x @ dense, atol=1e-12)
    if factors > 1:  # the butterfly really mixes more than one block of b coordinates
        assert dense[:size, size:].abs().max() > 1e-3


@pytest.mark.parametrize(
    ("limit", "size", "dim"),
    [(boft_module.GROUPED_LIMIT, 2, 8), (1, 2, 8), (boft_module.GROUPED_LIMIT, 4, 16)],
)
@pytest.mark.parametrize("side", ["input", "output"])
def test_rotation_gradcheck_fp64(monkeypatch, limit, size, dim, side):
    monkeypatch.setattr(boft_module, "GROUPED_LIMIT", limit)  # 1 forces the factor-by-factor path
    config = hyft.AdapterConfig(
        method="boft", boft_block_size=size, boft_n_butterfly_factor=3, boft_scale=True, rotation_side=side
    )
    layer = BoftLinear(torch.nn.Linear(dim, dim), config).double()
    with torch.no_grad():
        layer.boft_R.normal_(0, 0.5)
    x = torch.randn(3, dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, q, s: layer(t), (x, layer.boft_R, layer.boft_s))
