"""The Hybrid adapter and its λ controller (methods.md §6.6 tests H1–H9, H11)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

import hyft
from hyft.adapters.boft import BoftLinear
from hyft.adapters.input_operator import InputOperator
from hyft.adapters.mixer import LambdaController
from tests.conftest import model_inputs, tiny_bloom, tiny_llama


class Regression(nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, labels=None):
        out = self.proj(x)
        loss = ((out - labels) ** 2).mean() if labels is not None else None
        return type("Out", (), {"loss": loss, "logits": out})()


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 32, generator=generator)
    return {"x": x, "labels": x @ (torch.eye(32) + 0.3 * torch.randn(32, 32, generator=generator)).T}


def _config(**overrides):
    settings = dict(
        method="hybrid", r=4, alpha=8, boft_block_size=8, boft_n_butterfly_factor=2, target_modules=["proj"]
    )
    return hyft.AdapterConfig(**{**settings, **overrides})


def _perturb(model, seed=1):
    """Move every adapter tensor away from its init so the branches are not trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lam", [1.0, 0.0])
def test_fixed_lambda_reproduces_the_pure_branches_and_their_gradients(lam):
    data = _data()
    hybrid = hyft.wrap(Regression(), _config(mixer="fixed", fixed_lambda=lam), init_batches=[data])
    pure_method = "lora_ga" if lam == 1.0 else "boft"
    pure = hyft.wrap(Regression(), _config(method=pure_method), init_batches=[data])
    _perturb(hybrid)
    h_layer, p_layer = hybrid.adapted_layers()["proj"], pure.adapted_layers()["proj"]
    with torch.no_grad():
        if lam == 1.0:
            for name in ("lora_A", "lora_B", "lora_A0", "lora_B0"):
                getattr(p_layer, name).copy_(getattr(h_layer.lora, name))
        else:
            p_layer.boft_R.copy_(h_layer.boft.boft_R)
    out_h, out_p = hybrid(**data), pure(**data)
    assert torch.allclose(out_h.logits, out_p.logits, atol=1e-6, rtol=0)
    out_h.loss.backward()
    out_p.loss.backward()
    if lam == 1.0:
        assert torch.allclose(h_layer.lora.lora_A.grad, p_layer.lora_A.grad, atol=1e-6)
        assert torch.allclose(h_layer.lora.lora_B.grad, p_layer.lora_B.grad, atol=1e-6)
        assert h_layer.boft.boft_R.grad.abs().max() == 0  # μ = 0: the rotation gets no gradient
    else:
        assert torch.allclose(h_layer.boft.boft_R.grad, p_layer.boft_R.grad, atol=1e-6)
        assert h_layer.lora.lora_A.grad.abs().max() == 0


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_output_unchanged_at_init_for_every_lambda(lam):
    data = _data()
    reference = Regression()(**data).logits
    model = hyft.wrap(Regression(), _config(mixer="fixed", fixed_lambda=lam), init_batches=[data])
    # BA − B0A0 = 0 at init; computed as one rank-2r product it cancels to rounding error only.
    assert torch.allclose(model(**data).logits, reference, atol=1e-6, rtol=0)


def test_single_gemm_forward_equals_the_three_term_weight():
    data = _data()
    model = hyft.wrap(Regression(), _config(mixer="fixed", fixed_lambda=0.3), init_batches=[data])
    _perturb(model)
    layer = model.adapted_layers()["proj"]
    w0 = layer.base_layer.weight
    R = layer.boft.rotation_matrix()  # dense oracle: the layer computes x @ R, i.e. W_eff = W0 Rᵀ
    three_term = w0 + 0.3 * layer.lora.delta_weight() + 0.7 * (w0 @ R.T - w0)
    expected = data["x"] @ three_term.T + layer.base_layer.bias
    assert torch.allclose(model(**data).logits, expected, atol=1e-5, rtol=1e-5)


def test_lambda_is_a_buffer_outside_autograd_and_the_optimizer():
    data = _data()
    model = hyft.wrap(Regression(), _config(), init_batches=[data])
    layer = model.adapted_layers()["proj"]
    assert not layer.mixing_weight.requires_grad
    assert all(p is not layer.mixing_weight for p in model.parameters())
    model(**data).loss.backward()
    assert layer.mixing_weight.grad is None


def _feedback(mixer, a=1.3, b=1.0, steps=300, **overrides):
    """Branch norms scale with their weight (∇A,∇B ∝ λ, ∇Q ∝ μ): the feedback of methods.md §6.3."""
    controller = LambdaController(_config(mixer=mixer, lambda_warmup_steps=0, **overrides), 1, 1)
    trajectory = []
    for _ in range(steps):
        lam = float(controller.mixing_weight)
        controller.update(a * lam, b * (1 - lam))
        trajectory.append(float(controller.mixing_weight))
    return trajectory


def test_descaled_rule_converges_to_the_signal_ratio_and_the_paper_rule_collapses():
    descaled = _feedback("descaled")
    assert descaled[-1] == pytest.approx(1.3 / 2.3, abs=1e-3)
    paper = _feedback("paper")
    assert paper[-1] == pytest.approx(0.95)  # runs into the clamp
    unclamped = _feedback("paper", lambda_min=0.0, lambda_max=1.0, steps=600)
    assert unclamped[-1] > 0.99
    reverse = _feedback("paper", a=1.0, b=1.3)
    assert reverse[-1] == pytest.approx(0.05)


def test_lambda_timing_warmup_clamp_and_non_finite_steps():
    controller = LambdaController(_config(lambda_warmup_steps=2, lambda_ema=0.0), 1, 1)
    controller.update(3.0, 1.0)
    controller.update(3.0, 1.0)
    assert float(controller.mixing_weight) == 0.5  # held during warm-up
    controller.update(3.0, 1.0)  # de-scaled at λ = 0.5: 6 vs 2 → 0.75
    assert float(controller.mixing_weight) == pytest.approx(0.75)
    controller.update(float("nan"), 1.0)
    assert float(controller.mixing_weight) == pytest.approx(0.75)
    controller.update(1000.0, 1e-9)
    assert float(controller.mixing_weight) == pytest.approx(0.95)


def test_on_a_toy_problem_the_paper_rule_collapses_and_the_default_stays_inside():
    """Real gradients of a HybridLinear at fixed parameters: each update only changes λ."""
    data = _data()

    def trajectory(mixer):
        model = hyft.wrap(Regression(), _config(mixer=mixer, lambda_warmup_steps=0), init_batches=[data])
        _perturb(model)
        values = []
        for _ in range(100):
            model(**data).loss.backward()
            model.after_backward()
            model.zero_grad()
            values.append(model.mixing_weights()["proj"])
        return values

    paper, default = trajectory("paper"), trajectory("descaled")
    assert min(paper[-1], 1 - paper[-1]) == pytest.approx(0.05, abs=1e-6)  # pinned to a clamp
    assert all(0.05 < v < 0.95 for v in default)
    assert abs(default[-1] - default[-50]) < 1e-3  # and settled


def test_merge_save_load_and_frozen_base(tmp_path):
    data = _data()
    model = hyft.wrap(Regression(), _config(lambda_warmup_steps=1), init_batches=[data])
    w0 = model.adapted_layers()["proj"].base_layer.weight
    digest = hashlib.sha256(w0.detach().numpy().tobytes()).hexdigest()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(5):
        model(**data).loss.backward()
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad()
    assert hashlib.sha256(w0.detach().numpy().tobytes()).hexdigest() == digest
    lam = model.mixing_weights()["proj"]
    assert lam != 0.5
    out = model(**data).logits
    model.save_pretrained(tmp_path)
    loaded = hyft.load(Regression(), tmp_path)
    assert loaded.mixing_weights()["proj"] == lam
    assert torch.equal(loaded(**data).logits, out)
    merged = loaded.merge_and_unload()
    assert torch.allclose(merged(**data).logits, out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factory", [tiny_bloom, tiny_llama])
def test_decoder_training_lowers_the_loss_and_logs_lambda(tmp_path, factory):
    import json

    from hyft.training import TrainConfig, train

    inputs = model_inputs("llama", batch=4, length=16)
    examples = [{"input_ids": row.tolist(), "labels": row.tolist()} for row in inputs["input_ids"]] * 4
    model = hyft.wrap(factory(), _config(target_modules=None, lambda_warmup_steps=2), init_batches=[inputs])
    result = train(
        model,
        examples,
        TrainConfig(epochs=8, batch_size=4, lr=1e-2, lr_lora_ga=1e-2, warmup_ratio=0.0),
        tmp_path,
        show_progress=False,
    )
    losses = [r["loss"] for r in result.history["steps"]]
    assert losses[-1] < 0.9 * losses[0]
    rows = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert len(rows) == len(losses) and all(len(r["lambda"]) == len(model.adapted_layers()) for r in rows)
    trajectory = [r["lambda"][next(iter(r["lambda"]))] for r in rows]
    assert trajectory[0] == 0.5 and trajectory[-1] != 0.5
    assert all(0.05 <= v <= 0.95 for r in rows for v in r["lambda"].values())


@pytest.mark.parametrize("mix", ["linear", "generator"])
def test_fused_weight_side_forward_equals_the_activation_path(mix, monkeypatch):
    data = _data()
    model = hyft.wrap(
        Regression(), _config(mixer="fixed", fixed_lambda=0.4, hybrid_mix=mix), init_batches=[data]
    )
    _perturb(model)
    layer = model.adapted_layers()["proj"]
    x = data["x"].view(4, 32, 32).requires_grad_(True)
    weights = torch.linspace(-1, 1, 32)
    results = []
    for fused in (True, False):
        if not fused:  # as for a base layer that cannot take the weight-side path
            monkeypatch.setattr(InputOperator, "rotates_weight", lambda operator, base: False)
        y = layer(x)
        params = [x, layer.lora.lora_A, layer.lora.lora_B, layer.boft.boft_R]
        results.append((y, torch.autograd.grad((y * weights).sum(), params)))
    (y_fused, g_fused), (y_plain, g_plain) = results
    assert y_fused.shape == (4, 32, 32)
    assert torch.allclose(y_fused, y_plain, atol=1e-5)
    for a, b in zip(g_fused, g_plain, strict=True):
        assert b.abs().max() > 0 and torch.allclose(a, b, atol=1e-5)


def test_fused_forward_runs_a_bf16_base_with_fp32_adapters():
    data = _data()
    model = hyft.wrap(Regression(), _config(mixer="fixed", fixed_lambda=0.4), init_batches=[data])
    _perturb(model)
    reference = model(**data).logits
    model.base_model.to(torch.bfloat16)
    layer = model.adapted_layers()["proj"]
    layer.lora.float()
    layer.boft.float()
    out = model(x=data["x"].bfloat16()).logits
    assert out.dtype == torch.bfloat16
    assert (out.float() - reference).abs().max() < 0.05 * reference.abs().max()
    out.float().pow(2).sum().backward()
    assert layer.lora.lora_A.grad.dtype == torch.float32 and layer.boft.boft_R.grad.abs().max() > 0


@pytest.mark.parametrize("method", ["hybrid", "boft"])
def test_batched_rotation_blocks_equal_the_per_layer_ones(method, monkeypatch):
    # HyftModel.forward computes the Cayley blocks of same-shaped layers together (batched_rotation.py);
    # calling the base model directly makes every layer compute its own. Outputs and gradients must agree.
    from hyft.adapters.batched_rotation import prepare_rotation_blocks

    config = hyft.AdapterConfig(
        method=method,
        r=4,
        alpha=8,
        boft_block_size=4,
        boft_n_butterfly_factor=2,
        target_modules=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    )
    base = tiny_bloom()
    batch = model_inputs(base)
    model = hyft.wrap(base, config, init_batches=[batch] if method == "hybrid" else None)
    _perturb(model)
    model.train()
    layers = list(model.adapted_layers().values())
    rotations = [layer.boft if method == "hybrid" else layer for layer in layers]
    per_layer_calls = []
    original = BoftLinear.rotation_blocks
    monkeypatch.setattr(
        BoftLinear,
        "rotation_blocks",
        lambda self, *a, **k: per_layer_calls.append(1) or original(self, *a, **k),
    )
    results = []
    for batched in (True, False):
        model.zero_grad(set_to_none=True)
        per_layer_calls.clear()
        loss = (model(**batch) if batched else model.base_model(**batch)).loss
        assert all(rotation.prepared_blocks is None for rotation in rotations)  # every layer took its blocks
        assert len(per_layer_calls) == (0 if batched else len(layers))
        loss.backward()
        results.append((loss.detach(), _grads(model)))
    (loss_b, grads_b), (loss_p, grads_p) = results
    assert torch.allclose(loss_b, loss_p, atol=1e-6)
    assert grads_b.keys() == grads_p.keys() and any("boft_R" in name for name in grads_b)
    for name in grads_b:
        assert torch.allclose(grads_b[name], grads_p[name], atol=1e-6, rtol=1e-4), name
    prepare_rotation_blocks(layers)  # prepared blocks are taken once, then each layer computes its own
    assert all(rotation.prepared_blocks is not None for rotation in rotations)
    rotations[0].operator_blocks()
    assert rotations[0].prepared_blocks is None
    # An update of the generators between preparing and using (an optimizer step) voids the prepared blocks.
    prepare_rotation_blocks(layers)
    with torch.no_grad():
        rotations[1].boft_R.add_(0.1)
    used = rotations[1].operator_blocks()
    assert torch.allclose(used, rotations[1].operator_blocks())  # the second call computes its own
