"""Properties of the hybrid layer and its λ controller that the mutation run (bench/results/mutation.md)
found untested."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.hybrid import HybridLinear
from hyft.adapters.mixer import LambdaController


def make_hybrid(seed: int = 0, with_unitary: bool | None = None, **settings) -> HybridLinear:
    torch.manual_seed(seed)
    config = hyft.AdapterConfig(
        **{
            "method": "hybrid",
            "r": 2,
            "alpha": 4,
            "boft_block_size": 4,
            "boft_n_butterfly_factor": 2,
            **settings,
        }
    )
    base = nn.Linear(16, 12)
    if with_unitary is None:
        return HybridLinear(base, config, "layer")
    return HybridLinear(base, config, "layer", with_unitary=with_unitary)


def perturb(layer: HybridLinear, seed: int = 1, lam: float = 0.3) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in (layer.lora.lora_A, layer.lora.lora_B, layer.lora.lora_A0, layer.lora.lora_B0):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
        layer.boft.boft_R.copy_(torch.randn(layer.boft.boft_R.shape, generator=generator) * 0.3)
        layer.mixer.mixing_weight.fill_(lam)


@pytest.mark.parametrize("mix", ["linear", "generator"])
def test_merged_weight_reproduces_the_forward_for_both_mixes(mix):
    layer = make_hybrid(hybrid_mix=mix)
    perturb(layer)
    layer.eval()
    x = torch.randn(5, 16)
    merged = x @ layer.merged_weight().T + layer.base_layer.bias
    assert (layer(x) - layer.base_layer(x)).abs().max() > 1e-2
    assert torch.allclose(layer(x), merged, atol=1e-5)


def test_layer_after_backward_sets_lambda_from_its_branch_gradient_norms():
    layer = make_hybrid(lambda_warmup_steps=0)
    perturb(layer, lam=0.5)
    layer.train()
    layer(torch.randn(8, 16)).square().sum().backward()
    lora = torch.cat([p.grad.flatten() for p in (layer.lora.lora_A, layer.lora.lora_B)]).norm()
    rotation = layer.boft.boft_R.grad.norm()
    g_lora, g_rotation = layer.branch_gradient_norms()
    assert torch.allclose(g_lora, lora) and torch.allclose(g_rotation, rotation)
    reference = LambdaController(layer.mixer.config, layer.mixer.lora_count, layer.mixer.rotation_count)
    reference.update(lora, rotation)
    layer.after_backward()
    assert float(layer.mixing_weight) != 0.5
    assert torch.allclose(layer.mixing_weight, reference.mixing_weight)


def test_unitary_sub_layer_is_trained_saved_and_loaded_with_the_hybrid():
    assert make_hybrid().unitary is None  # only unitary_modules layers (build_hybrid) get one
    source = make_hybrid(with_unitary=True)
    perturb(source)
    with torch.no_grad():
        source.unitary.unitary_theta.normal_()
    assert "unitary" in source.branch_parameters()
    target = make_hybrid(seed=0, with_unitary=True)  # same W0 …
    with torch.no_grad():
        target.unitary.unitary_v.normal_()  # … but other reflection vectors
    target.load_adapter_state(source.adapter_state())
    x = torch.randn(4, 16)
    source.eval()
    target.eval()
    assert torch.allclose(target(x), source(x), atol=1e-5)


def _controller(**settings) -> LambdaController:
    config = hyft.AdapterConfig(
        **{"method": "hybrid", "r": 2, "boft_block_size": 4, "lambda_warmup_steps": 0, **settings}
    )
    return LambdaController(config, lora_count=400, rotation_count=25)


def test_ema_starts_at_the_first_norms_not_at_zero():
    controller = _controller(mixer="descaled", lambda_ema=0.9)
    controller.update(3.0, 1.0)  # λ = 0.5: descaled norms 6 and 2
    assert float(controller.ema_lora) == pytest.approx(6.0) and float(
        controller.ema_rotation
    ) == pytest.approx(2.0)
    assert float(controller.mixing_weight) == pytest.approx(0.75)
    controller.update(1.0, 3.0)  # descaled by λ = 0.75: 4/3 and 12
    ema_lora, ema_rotation = 0.9 * 6 + 0.1 * 4 / 3, 0.9 * 2 + 0.1 * 12
    assert float(controller.mixing_weight) == pytest.approx(ema_lora / (ema_lora + ema_rotation), rel=1e-6)


@pytest.mark.parametrize(("norm", "expected"), [("l2", 2 / 3), ("rms", 1 / 3)])
def test_rms_norm_divides_each_branch_norm_by_the_root_of_its_parameter_count(norm, expected):
    controller = _controller(mixer="paper", lambda_norm=norm)
    controller.update(2.0, 1.0)  # rms: 2/√400 = 0.1 against 1/√25 = 0.2
    assert float(controller.mixing_weight) == pytest.approx(expected, rel=1e-6)
