"""UnitaryLinear against explicit dense matrices: methods.md §5.7 U1–U6, pairing, odd d_in, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.unitary import UnitaryLinear, pair_features, run_program, unpair_features
from tests.adapters_orthogonal.oracles import realify, unitary_oracle

VARIANTS = [("halves", "identity"), ("adjacent", "identity"), ("halves", "random"), ("adjacent", "random")]


def make_layer(d_in=12, d_out=5, pairing="halves", permutation="identity", seed=0) -> UnitaryLinear:
    torch.manual_seed(seed)
    config = hyft.AdapterConfig(method="unitary", unitary_pairing=pairing, unitary_permutation=permutation)
    return UnitaryLinear(nn.Linear(d_in, d_out), config, f"layer{d_in}")


def randomize(layer: UnitaryLinear, theta_scale=1.0, v_scale=1.0, seed=1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.unitary_theta.copy_(torch.randn(layer.unitary_theta.shape, generator=generator) * theta_scale)
        layer.unitary_v.copy_(torch.randn(layer.unitary_v.shape, generator=generator) * v_scale)


def dense_operator(layer: UnitaryLinear) -> torch.Tensor:
    """Ũ (real d×d, fp64) from the oracle; with a random Π the frozen reference factor is included."""
    u = unitary_oracle(layer.unitary_theta.detach(), layer.unitary_v.detach(), layer.unitary_perm)
    if layer.unitary_v_ref is not None:
        zero = torch.zeros_like(layer.unitary_theta)
        u = u @ unitary_oracle(zero, layer.unitary_v_ref, layer.unitary_perm).conj().T
    return realify(u, layer.pairing, layer.in_features)


@pytest.mark.parametrize(("pairing", "permutation"), VARIANTS)
@pytest.mark.parametrize("d_in", [12, 13])
def test_structured_ops_equal_the_dense_oracle(pairing, permutation, d_in):
    layer = make_layer(d_in, pairing=pairing, permutation=permutation)
    randomize(layer)
    dense = dense_operator(layer)  # column convention: token ↦ Ũ·token under U = D3 R2 F⁻¹ D2 Π R1 F D1
    x = torch.randn(6, d_in, dtype=torch.float64)
    assert torch.allclose(layer.apply_unitary_rows(x).double(), x @ dense.T, atol=1e-5)
    assert torch.allclose(layer.transform_input(x).double(), x @ dense, atol=1e-5)  # per token Ũᵀ = real(Uᴴ)
    u = layer.unitary_matrix().to(torch.complex128)
    oracle = unitary_oracle(layer.unitary_theta.detach(), layer.unitary_v.detach(), layer.unitary_perm)
    if layer.unitary_v_ref is None:
        assert torch.allclose(u, oracle, atol=1e-5)
    assert torch.allclose(realify(u, pairing, d_in), dense, atol=1e-5)  # U2: realified U is the operator
    assert (dense.T @ dense - torch.eye(d_in, dtype=torch.float64)).abs().max() < 1e-12
    if d_in % 2:
        assert torch.equal(layer.transform_input(x)[:, -1], x[:, -1].float())  # odd coordinate untouched


@pytest.mark.parametrize(("pairing", "permutation"), VARIANTS)
def test_norm_is_preserved_for_any_parameters(pairing, permutation):
    layer = make_layer(64, pairing=pairing, permutation=permutation)
    randomize(layer, theta_scale=10.0, v_scale=100.0)  # large phases and reflection vectors
    x = torch.randn(50, 64) * 3
    ratio = layer.transform_input(x).norm(dim=-1) / x.norm(dim=-1)
    assert (ratio - 1).abs().max() < 1e-5
    layer = layer.double()
    x = x.double()
    assert ((layer.transform_input(x).norm(dim=-1) / x.norm(dim=-1)) - 1).abs().max() < 1e-12
    assert ((layer.apply_unitary_rows(x).norm(dim=-1) / x.norm(dim=-1)) - 1).abs().max() < 1e-12


@pytest.mark.parametrize(("pairing", "permutation"), VARIANTS)
def test_identity_at_init(pairing, permutation):
    layer = make_layer(16, pairing=pairing, permutation=permutation)
    assert layer.unitary_v.abs().max() > 0.1  # the reflections themselves are not trivial
    eye = torch.eye(8, dtype=torch.complex64)
    assert (layer.unitary_matrix() - eye).abs().max() < 1e-6
    x = torch.randn(4, 16)
    assert torch.allclose(layer(x), layer.base_layer(x), atol=1e-6)


@pytest.mark.parametrize(("pairing", "permutation"), [("halves", "identity"), ("adjacent", "random")])
@pytest.mark.parametrize("d_in", [6, 7])
def test_gradcheck_fp64_and_agreement_with_autograd(pairing, permutation, d_in):
    layer = make_layer(d_in, pairing=pairing, permutation=permutation).double()
    randomize(layer)
    x = torch.randn(3, d_in, dtype=torch.float64, requires_grad=True)
    inputs = (x, layer.unitary_theta, layer.unitary_v)
    assert torch.autograd.gradcheck(lambda t, a, b: layer.transform_input(t), inputs)
    assert torch.autograd.gradcheck(lambda t, a, b: layer.apply_unitary_rows(t), inputs)

    def by_autograd(t):  # the same stages, differentiated by PyTorch's complex autograd
        z, rest = pair_features(t, pairing)
        return unpair_features(run_program(z, layer.program(True), layer.operands()), rest, pairing)

    weights = torch.randn(3, d_in, dtype=torch.float64)
    ours = torch.autograd.grad((layer.transform_input(x) * weights).sum(), inputs)
    reference = torch.autograd.grad((by_autograd(x) * weights).sum(), inputs)
    for a, b in zip(ours, reference, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize(("pairing", "permutation"), [("halves", "identity"), ("adjacent", "random")])
def test_merge_by_rows_equals_the_dense_product_and_the_forward(pairing, permutation):
    layer = make_layer(20, 9, pairing=pairing, permutation=permutation)
    randomize(layer)
    w0 = layer.base_layer.weight.detach().double()
    expected = w0 @ dense_operator(layer).T  # W_eff = W0 Ũᵀ
    assert torch.allclose(layer.merged_weight().double(), expected, atol=1e-5)
    x = torch.randn(7, 20)
    merged = x @ layer.merged_weight().T + layer.base_layer.bias
    assert torch.allclose(layer(x), merged, rtol=1e-5, atol=1e-5)
    assert (layer(x) - layer.base_layer(x)).abs().max() > 1e-2


def test_parameter_count_is_three_and_a_half_d_in():
    for d_in in (64, 65):
        layer = make_layer(d_in)
        count = sum(p.numel() for p in layer.parameters() if p.requires_grad)
        assert count == 7 * (d_in // 2)
        assert count == sum(p.numel() for p in layer.branch_parameters()["unitary"])


def test_stays_unitary_after_100_large_adam_steps():
    layer = make_layer(32, 16, permutation="random")
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam([layer.unitary_theta, layer.unitary_v], lr=0.3)
    for _ in range(100):
        x = torch.randn(16, 32, generator=generator)
        loss = (layer(x) - 3 * torch.randn(16, 16, generator=generator)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert layer.unitary_theta.abs().max() > 1.0
    dense = layer.transform_input(torch.eye(32))  # rows of Ũ
    assert (dense.T @ dense - torch.eye(32)).abs().max() < 1e-5


def test_load_rejects_a_broken_permutation():
    layer = make_layer(16, permutation="random")
    state = layer.adapter_state()
    assert set(state) == {"unitary_theta", "unitary_v", "unitary_perm", "unitary_v_ref"}
    state["unitary_perm"] = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="permutation"):
        layer.load_adapter_state(state)
