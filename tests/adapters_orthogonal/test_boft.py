"""BoftLinear: orthogonality under training, B5–B8, governance, merge/unmerge, helpers the hybrid uses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.cayley import cayley_exact, neumann_orthogonality_bound, skew_from_upper
from hyft.config import ConfigError
from tests.adapters_orthogonal.layers import make_layer, randomize
from tests.adapters_orthogonal.oracles import butterfly_oracle


def train_hard(layer: nn.Module, params, steps: int = 100, lr: float = 0.3, seed: int = 0) -> None:
    """Adam with a large LR on random regression targets: drives the generators far from zero."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        x = torch.randn(32, layer.in_features, generator=generator)
        target = torch.randn(32, layer.out_features, generator=generator) * 3
        loss = (layer(x) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize(("factors", "size"), [(1, 8), (3, 4), (2, 16)])
def test_rotations_stay_orthogonal_after_100_large_adam_steps(factors, size):
    layer = make_layer(boft_block_size=size, boft_n_butterfly_factor=factors)
    train_hard(layer, [layer.boft_R])
    assert layer.boft_R.abs().max() > 0.5  # the generators really moved far
    blocks = layer.rotation_blocks().detach()
    eye = torch.eye(size)
    assert (blocks.transpose(-1, -2) @ blocks - eye).abs().max() <= 1e-5
    full = layer.rotation_matrix().detach()
    assert (full.T @ full - torch.eye(64)).abs().max() <= 1e-5


def test_neumann_rotations_after_training_stay_within_the_bound_fp64():
    layer = make_layer(cayley="neumann", cayley_neumann_terms=5)
    with pytest.warns(UserWarning, match="Cayley–Neumann series"):  # ‖Q_k‖_F passed 0.3: the user is told
        train_hard(layer, [layer.boft_R], lr=0.01, steps=101)
    layer = layer.double()
    skew = layer.generator().detach()
    q = torch.linalg.matrix_norm(skew, ord=2)
    assert q.max() > 0.05  # training made the truncation error non-trivial
    blocks = layer.rotation_blocks().detach()
    error = torch.linalg.matrix_norm(
        blocks.transpose(-1, -2) @ blocks - torch.eye(4, dtype=torch.float64), ord=2
    )
    bounds = torch.tensor(
        [[neumann_orthogonality_bound(float(v), 5) for v in row] for row in q], dtype=torch.float64
    )
    assert (error <= bounds * (1 + 1e-6) + 1e-13).all()


@pytest.mark.parametrize("side", ["input", "output"])
@pytest.mark.parametrize("scale", [False, True])
def test_input_centric_forward_equals_the_weight_centric_oracle(side, scale):
    layer = make_layer(rotation_side=side, boft_scale=scale)
    randomize(layer)
    dense = butterfly_oracle(layer.rotation_blocks().detach(), layer.perms)
    w0 = layer.base_layer.weight.detach().double()
    weight = w0 @ dense.T if side == "input" else dense @ w0
    if scale:
        weight = weight * layer.boft_s.detach().double()
    x = torch.randn(4, 7, 64)
    expected = (x.double() @ weight.T + layer.base_layer.bias.detach().double()).float()
    out = layer(x)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())
    assert torch.allclose(layer.merged_weight(), weight.float(), atol=1e-5)
    base = layer.base_layer(x)
    assert (out - base).abs().max() > 1e-2  # not trivially the base output


def test_input_rotation_preserves_neuron_angles_and_spectrum():
    layer = make_layer()
    randomize(layer, std=0.5)
    w0 = layer.base_layer.weight.detach()
    merged = layer.merged_weight().detach()

    def cosines(w):
        unit = w / w.norm(dim=1, keepdim=True)
        return unit @ unit.T

    assert torch.allclose(cosines(merged), cosines(w0), atol=1e-5)
    assert torch.allclose(torch.linalg.svdvals(merged), torch.linalg.svdvals(w0), rtol=1e-5, atol=1e-6)
    # Negative control: rotating the output side keeps the spectrum but not the neuron angles.
    out_side = make_layer(d_in=48, d_out=64, rotation_side="output")
    randomize(out_side, std=0.5)
    w0_out, merged_out = out_side.base_layer.weight.detach(), out_side.merged_weight().detach()
    assert torch.allclose(
        torch.linalg.svdvals(merged_out), torch.linalg.svdvals(w0_out), rtol=1e-5, atol=1e-6
    )
    assert (cosines(merged_out) - cosines(w0_out)).abs().max() > 1e-2


@pytest.mark.parametrize("cayley", ["exact", "neumann"])
@pytest.mark.parametrize("side", ["input", "output"])
def test_merge_then_unmerge_returns_w0(cayley, side):
    layer = make_layer(cayley=cayley, rotation_side=side, boft_scale=True)
    randomize(layer, std=0.05)
    restored = layer.unmerged_weight(layer.merged_weight())
    assert torch.allclose(restored, layer.base_layer.weight, atol=1e-5)


@pytest.mark.parametrize(
    ("factors", "size", "scale"), [(1, 8, False), (2, 4, False), (3, 8, True), (4, 2, False)]
)
def test_trainable_count_is_m_d_b_minus_1_over_2(factors, size, scale):
    layer = make_layer(
        d_in=64, d_out=48, boft_block_size=size, boft_n_butterfly_factor=factors, boft_scale=scale
    )
    count = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert count == factors * 64 * (size - 1) // 2 + (48 if scale else 0)
    assert count == sum(p.numel() for p in layer.branch_parameters()["rotation"])


def test_block_num_and_configuration_errors():
    by_num = make_layer(boft_block_size=None, boft_block_num=16)
    assert by_num.block_size == 4
    with pytest.raises(ConfigError, match="layer.*block sizes that fit"):
        make_layer(d_in=40, boft_block_size=4, boft_n_butterfly_factor=3)  # 40 is not divisible by 16
    with pytest.raises(ConfigError, match="boft_block_size"):
        make_layer(boft_block_size=None)
    with pytest.raises(ValueError):
        hyft.AdapterConfig(method="oft", boft_block_size=4, boft_n_butterfly_factor=2)


def test_multiplicative_dropout_swaps_blocks_for_the_identity_in_training_only():
    layer = make_layer(boft_dropout=0.5)
    randomize(layer)
    torch.manual_seed(3)
    blocks = layer.rotation_blocks(dropout=True).detach()
    is_eye = (blocks - torch.eye(4)).abs().amax(dim=(-1, -2)) == 0
    assert 0 < is_eye.float().mean() < 1
    assert (blocks.transpose(-1, -2) @ blocks - torch.eye(4)).abs().max() < 1e-5
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert not torch.equal(layer(x), layer(x))  # training forward: a new dropout draw each call
        assert torch.equal(layer.merged_weight(), layer.merged_weight())  # merges never drop blocks
        layer.eval()
        assert torch.equal(layer(x), layer(x))
        assert torch.allclose(layer(x), x @ layer.merged_weight().T + layer.base_layer.bias, atol=1e-5)


def test_input_operator_and_generator_for_the_hybrid():
    layer = make_layer()
    randomize(layer)
    x = torch.randn(5, 64, dtype=torch.float64)
    assert torch.equal(layer.input_operator(0.0).apply(x), x.float())  # R(0·Q) = I exactly
    mu = 0.35
    skew = layer.generator(mu).detach()
    assert torch.allclose(skew, mu * skew_from_upper(layer.boft_R.detach(), 4))
    dense = butterfly_oracle(cayley_exact(skew.double()), layer.perms)
    expected = (x @ dense).float()
    assert torch.allclose(layer.input_operator(mu).apply(x), expected, atol=1e-5)
    assert torch.allclose(layer.input_operator(torch.tensor(mu)).apply(x), expected, atol=1e-5)
    assert layer.input_operator().apply(x).dtype == torch.float32
    # The helpers never touch base_layer (the hybrid detaches it).
    layer.base_layer = None
    assert torch.allclose(layer.input_operator(mu).apply(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="rotation_side"):
        make_layer(d_in=48, d_out=64, rotation_side="output").input_operator()


def test_oft_is_boft_with_one_factor_and_saves_under_its_own_key():
    oft = make_layer(method="oft", boft_block_size=8, boft_n_butterfly_factor=1)
    boft = make_layer(boft_block_size=8, boft_n_butterfly_factor=1)
    randomize(oft)
    boft.load_adapter_state({"boft_R": oft.boft_R.detach()})
    x = torch.randn(4, 64)
    assert torch.equal(oft(x), boft(x))
    assert set(oft.adapter_state()) == {"oft_R.weight"} and oft.adapter_state()["oft_R.weight"].shape == (
        8,
        28,
    )
    assert set(make_layer(boft_scale=True).adapter_state()) == {"boft_R", "boft_s"}
    with pytest.raises(ValueError, match="shape"):
        oft.load_adapter_state({"oft_R.weight": torch.zeros(8, 27)})


def test_half_precision_base_keeps_an_fp32_rotation():
    layer = make_layer()
    randomize(layer)
    reference = layer(torch.ones(2, 64))
    layer.base_layer.to(torch.bfloat16)
    out = layer(torch.ones(2, 64, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and layer.boft_R.dtype == torch.float32
    assert torch.allclose(out.float(), reference, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize(
    "block_size, factors", [(4, 3), (64, 3)]
)  # folded groups (g=16); factor path (g=256)
def test_blended_operator_is_the_linear_mix_of_identity_and_rotation(block_size, factors):
    layer = make_layer(d_in=512, d_out=32, boft_block_size=block_size, boft_n_butterfly_factor=factors)
    randomize(layer)
    x = torch.randn(2, 5, 512, dtype=torch.float64)
    dense = butterfly_oracle(cayley_exact(layer.generator().detach().double()), layer.perms)
    for weight in (0.3, torch.tensor(0.8)):
        expected = (x + weight * (x @ dense - x)).float()
        assert torch.allclose(layer.input_operator(blend=weight).apply(x), expected, atol=1e-5)
    assert torch.equal(layer.input_operator(blend=0.0).apply(x), x.float())  # w = 0: the input, exactly
    # Gradients reach the generators through the blended blocks: w·∂R, nothing at w = 0.
    layer.input_operator(blend=0.5).apply(x.float()).pow(2).sum().backward()
    assert layer.boft_R.grad.abs().max() > 0
    with pytest.raises(ValueError, match="rotation_side"):
        make_layer(d_in=48, d_out=64, rotation_side="output").input_operator(blend=0.5)


@pytest.mark.parametrize("blend", [None, 0.4])
@pytest.mark.parametrize("block_size, factors", [(4, 3), (8, 1), (64, 3)])
def test_weight_side_rotation_equals_rotating_the_activations(block_size, factors, blend):
    # A frozen nn.Linear takes the weight-side path (rotated_linear.py) when M is folded; a trainable one, the
    # activation path.
    layer = make_layer(d_in=512, d_out=24, boft_block_size=block_size, boft_n_butterfly_factor=factors)
    randomize(layer, std=0.2)
    frozen = layer.base_layer
    trainable = nn.Linear(512, 24)
    trainable.load_state_dict(frozen.state_dict())
    frozen.requires_grad_(False)
    x = torch.randn(3, 7, 512, requires_grad=True)
    outputs, grads = [], []
    for base in (frozen, trainable):
        operator = layer.input_operator(blend=blend) if blend is not None else layer.input_operator(0.7)
        assert operator.rotates_weight(base) == (base is frozen and operator.folded)
        y = operator.linear(x, base)
        outputs.append(y)
        grads.append(torch.autograd.grad((y * torch.linspace(-1, 1, 24)).sum(), [x, layer.boft_R]))
    assert outputs[0].shape == (3, 7, 24)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    for fused, plain in zip(grads[0], grads[1], strict=True):
        assert torch.allclose(fused, plain, atol=1e-5)
    assert grads[0][1].abs().max() > 0
