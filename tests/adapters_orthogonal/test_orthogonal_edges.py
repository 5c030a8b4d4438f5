"""Properties of the Cayley map, the butterfly operators, BOFT and the unitary adapter that the mutation
run (bench/results/mutation.md) found untested."""

from __future__ import annotations

import ast
import re
import warnings

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters import boft as boft_module
from hyft.adapters.boft import BoftLinear
from hyft.adapters.butterfly import (
    apply_blocks,
    butterfly_permutations,
    dense_rotation,
    dense_rotation_from_matrices,
)
from hyft.adapters.cayley import (
    block_size_from_upper,
    cayley_exact,
    cayley_neumann,
    neumann_orthogonality_bound,
    skew_from_upper,
    upper_size,
)
from hyft.adapters.unitary import UnitaryLinear
from hyft.config import ConfigError
from tests.adapters_orthogonal.layers import make_layer, randomize

# --------------------------------------------------------------------------- Cayley


def test_block_size_from_upper_inverts_upper_size_and_refuses_other_counts():
    for size in range(1, 65):
        assert block_size_from_upper(upper_size(size)) == size
    for count in (2, 4, 5, 7, 9, 27, 29):
        with pytest.raises(ValueError, match="b\\(b-1\\)/2"):
            block_size_from_upper(count)


@pytest.mark.parametrize("terms", [3, 4, 5, 6, 7, 8])
def test_neumann_bound_holds_and_is_attained_by_a_plane_generator(terms):
    # Q = q·J (eigenvalues ±iq): ‖RᵀR − I‖₂ = |1 − (iq)^{n+1}|² − 1 on the eigenvectors, which meets the bound
    # for n even (q^{2n+2}) and for n + 1 ≡ 2 (mod 4) (2q^{n+1} + q^{2n+2}); it stays below it otherwise.
    q = 0.3
    skew = torch.tensor([[0.0, q], [-q, 0.0]], dtype=torch.float64)
    rotation = cayley_neumann(skew, terms)
    measured = float(
        torch.linalg.matrix_norm(rotation.T @ rotation - torch.eye(2, dtype=torch.float64), ord=2)
    )
    bound = neumann_orthogonality_bound(q, terms)
    n = max(2, terms - 2)
    assert measured <= bound * (1 + 1e-9)
    if n % 2 == 0 or (n + 1) % 4 == 2:
        assert measured == pytest.approx(bound, rel=1e-9)


# --------------------------------------------------------------------------- butterfly


def test_apply_blocks_differentiates_the_input_when_the_blocks_are_constant():
    blocks = torch.randn(4, 8, 8, dtype=torch.float64)  # a frozen operator: no gradient wanted for it
    x = torch.randn(5, 32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_blocks(t, blocks), (x,))


def test_factor_chain_equals_the_explicit_matrix_product_with_more_blocks_than_block_width():
    factors, size, dim = 3, 4, 64  # 16 blocks of width 4 per factor
    generator = torch.Generator().manual_seed(0)
    upper = torch.randn(factors, dim // size, upper_size(size), generator=generator, dtype=torch.float64)
    blocks = cayley_exact(skew_from_upper(upper, size))
    perms = butterfly_permutations(dim, size, factors)
    assert torch.allclose(
        dense_rotation(blocks, perms), dense_rotation_from_matrices(blocks, perms), atol=1e-12
    )


# --------------------------------------------------------------------------- BOFT


@pytest.mark.parametrize(("factors", "size", "dropout"), [(1, 8, 0.0), (1, 8, 0.5), (3, 4, 0.5)])
def test_unmerge_inverts_merge_also_with_block_dropout_configured(factors, size, dropout):
    layer = make_layer(boft_block_size=size, boft_n_butterfly_factor=factors, boft_dropout=dropout)
    randomize(layer)
    layer.train()  # dropout belongs to the training forward only, never to merge / unmerge
    torch.manual_seed(3)
    w0 = layer.base_layer.weight.detach()
    assert torch.allclose(layer.unmerged_weight(layer.merged_weight()), w0, atol=1e-5)


def test_eval_forward_with_gradients_rebuilds_the_graph_every_call():
    layer = make_layer()
    randomize(layer)
    layer.eval()
    x = torch.randn(6, 64)
    grads = []
    for _ in range(2):  # a cached R would carry the first call's (freed) graph into the second backward
        layer.zero_grad()
        layer(x).square().sum().backward()
        grads.append(layer.boft_R.grad.clone())
    assert torch.equal(grads[0], grads[1])
    assert grads[0].abs().max() > 0


def test_evaluation_forwards_reuse_the_rotation_blocks(monkeypatch):
    layer = make_layer()
    randomize(layer)
    layer.eval()
    calls = []
    original = BoftLinear.rotation_blocks
    monkeypatch.setattr(
        BoftLinear, "rotation_blocks", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    x = torch.randn(3, 64)
    with torch.no_grad():
        first = layer(x)
        second = layer(x)
    assert len(calls) == 1 and torch.equal(first, second)
    with torch.no_grad():
        layer.boft_R.add_(0.1)  # an update (a new version of boft_R) voids the cache
        changed = layer(x)
    assert len(calls) == 2 and not torch.allclose(changed, first)


def test_suggested_block_sizes_are_exactly_the_ones_that_fit():
    with pytest.raises(ConfigError) as info:
        make_layer(d_in=40, boft_block_size=4, boft_n_butterfly_factor=3)
    suggested = ast.literal_eval(re.search(r"block sizes that fit: (\[[^\]]*\])", str(info.value)).group(1))
    fitting = []
    for size in range(1, 41):
        try:
            make_layer(d_in=40, boft_block_size=size, boft_n_butterfly_factor=3)
        except (ConfigError, ValueError):
            continue
        fitting.append(size)
    assert suggested == fitting[:12] and suggested


def test_neumann_range_warning_is_given_once_per_layer(monkeypatch):
    monkeypatch.setattr(boft_module, "NEUMANN_CHECK_EVERY", 1)
    layer = make_layer(cayley="neumann")
    randomize(layer, std=2.0)
    layer.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            layer.rotation_blocks()
    assert sum("Cayley–Neumann" in str(w.message) for w in caught) == 1


def test_fused_low_rank_term_is_refused_off_the_weight_side_path():
    layer = make_layer(boft_block_size=8, boft_n_butterfly_factor=1)
    operator = layer.input_operator()
    not_plain = nn.Sequential(nn.Linear(64, 48))  # the activation path: no fused LoRA term possible
    low_rank = (torch.zeros(2, 64), torch.zeros(48, 2), torch.zeros(2, 64), torch.zeros(48, 2), 1.0)
    with pytest.raises(ValueError, match="weight-side"):
        operator.linear(torch.randn(3, 64), not_plain, low_rank)


# --------------------------------------------------------------------------- unitary


def make_unitary(d_in: int, name: str = "layer", **settings) -> UnitaryLinear:
    torch.manual_seed(0)
    config = hyft.AdapterConfig(method="unitary", **settings)
    return UnitaryLinear(nn.Linear(d_in, 5), config, name)


def test_householder_stages_stay_unitary_for_short_reflection_vectors():
    layer = make_unitary(12).double()
    with torch.no_grad():
        layer.unitary_v.mul_(1e-3)  # ‖v‖² ≪ 1: the reflection is I − 2vvᴴ/‖v‖² whatever the scale of v
        layer.unitary_theta.normal_()
    unitary = layer.unitary_matrix()
    assert torch.allclose(unitary.conj().T @ unitary, torch.eye(6, dtype=unitary.dtype), atol=1e-10)


def test_unitary_forward_and_gradients_cover_every_row_chunk():
    # 1100 rows of 1024 features: more rows than features, and several row chunks of the fused transform
    layer = make_unitary(1024).double()
    with torch.no_grad():
        layer.unitary_theta.normal_()
    x = torch.randn(1100, 1024, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(1100, 1024, dtype=torch.float64)
    assert torch.allclose(layer.transform_input(x).norm(dim=-1), x.norm(dim=-1), atol=1e-10)
    (grad,) = torch.autograd.grad((layer.transform_input(x) * weights).sum(), x)
    # every stage is unitary and the map is linear in x:
    # the input gradient is the adjoint applied to the weights
    assert torch.allclose(grad, layer.apply_unitary_rows(weights), atol=1e-12)


def test_unitary_is_a_registered_method():
    model = nn.Sequential(nn.Linear(8, 8))
    wrapped = hyft.wrap(model, hyft.AdapterConfig(method="unitary", target_modules=["0"]))
    assert [type(layer) for layer in wrapped.adapted_layers().values()] == [UnitaryLinear]


def test_unitary_needs_two_input_features_and_works_from_two():
    with pytest.raises(ValueError, match="at least 2 input features"):
        make_unitary(1)
    layer = make_unitary(2)
    x = torch.randn(4, 2)
    assert torch.allclose(layer.transform_input(x).norm(dim=-1), x.norm(dim=-1), atol=1e-6)


def test_loading_a_random_permutation_reproduces_the_saved_layer():
    source = make_unitary(16, name="a", unitary_permutation="random")
    target = make_unitary(16, name="b", unitary_permutation="random")
    assert not torch.equal(source.unitary_perm, target.unitary_perm)
    with torch.no_grad():
        source.unitary_theta.normal_()
    target.load_adapter_state(source.adapter_state())
    x = torch.randn(4, 16)
    assert torch.allclose(target.transform_input(x), source.transform_input(x), atol=1e-6)
    assert torch.allclose(target.apply_unitary_rows(x), source.apply_unitary_rows(x), atol=1e-6)
