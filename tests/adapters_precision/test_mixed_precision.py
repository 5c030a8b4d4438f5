"""Training under bf16 autocast for every adapter method, on an fp32 and on a bf16 base (issue 12).

The trainer wraps the forward in autocast when ``train.mixed_precision`` is set. Adapter tensors stay
fp32 whatever the base dtype; the Cayley blocks and the nearly-cancelling LoRA-GA product stay fp32
under autocast; the fused rotated-weight op runs its frozen GEMM as the base layer would (autocast dtype).
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import hyft
from hyft.adapters.batched_rotation import prepare_rotation_blocks
from hyft.adapters.boft import BoftLinear
from hyft.adapters.lora import LoraLinear
from hyft.adapters.model import WEIGHTS_NAME
from hyft.adapters.rotated_linear import rotated_frozen_linear
from tests.adapters_precision.tiny import METHODS, wrap_kwargs
from tests.conftest import model_inputs, tiny_llama

BF16 = torch.bfloat16


def _autocast():
    return torch.autocast("cpu", dtype=BF16)


@pytest.mark.parametrize("base_dtype", [torch.float32, BF16], ids=["fp32_base", "bf16_base"])
@pytest.mark.parametrize("name", list(METHODS))
def test_six_adamw_steps_under_bf16_autocast_lower_the_loss(name, base_dtype, tmp_path):
    settings = METHODS[name]
    batch = model_inputs("llama", batch=4, length=12)
    config = hyft.AdapterConfig(**settings)
    model = hyft.wrap(tiny_llama().to(base_dtype), config, **wrap_kwargs(settings, batch))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # Full fine-tuning moves every weight: a smaller step keeps its six steps monotone.
    optimizer = torch.optim.AdamW(params, lr=1e-3 if name == "full" else 1e-2)
    losses = []
    for _ in range(6):
        with _autocast():
            loss = model(**batch).loss
        loss.backward()
        if name != "full":
            assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < 0.99 * losses[0], losses
    if name == "full":
        return
    # Adapter parameters and every saved adapter tensor are fp32, on a bf16 base too.
    assert all(p.dtype == torch.float32 for p in params)
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / WEIGHTS_NAME))
    floating = {k: v.dtype for k, v in saved.items() if v.is_floating_point()}
    assert floating and set(floating.values()) == {torch.float32}, floating


def _perturbed_rotations(method: str):
    settings = {k: v for k, v in METHODS[method].items()}
    batch = model_inputs("llama", batch=2, length=12)
    model = hyft.wrap(tiny_llama().to(BF16), hyft.AdapterConfig(**settings), **wrap_kwargs(settings, batch))
    model.train()
    layers = list(model.adapted_layers().values())
    rotations = [layer.boft if method == "hybrid" else layer for layer in layers]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for rotation in rotations:
            rotation.boft_R.add_(0.3 * torch.randn(rotation.boft_R.shape, generator=generator))
    return layers, rotations


def _orthogonality_error(blocks: torch.Tensor) -> float:
    eye = torch.eye(blocks.shape[-1], dtype=torch.float64)
    blocks = blocks.detach().double()
    return float((blocks @ blocks.transpose(-1, -2) - eye).abs().max())


@pytest.mark.parametrize("method", ["boft", "hybrid"])
def test_rotation_blocks_stay_fp32_and_orthogonal_under_autocast(method):
    layers, rotations = _perturbed_rotations(method)
    reference = [rotation.operator_blocks().detach() for rotation in rotations]  # no autocast
    assert max(_orthogonality_error(r) for r in reference) < 1e-5
    with _autocast():
        prepare_rotation_blocks(layers)  # the batched path (HyftModel.forward runs it inside autocast)
        batched = [rotation.operator_blocks() for rotation in rotations]
        own = [rotation.operator_blocks() for rotation in rotations]  # each layer's own computation
    for blocks, ref in zip(batched + own, reference + reference, strict=True):
        assert blocks.dtype == torch.float32
        assert _orthogonality_error(blocks) < 1e-5  # bf16 blocks are off by ~1e-2
        assert torch.allclose(blocks, ref, atol=1e-6)


def test_fused_rotated_linear_runs_the_frozen_gemm_in_the_autocast_dtype():
    # fp32 base under autocast: the fused op (rotated W0 plus the hybrid's LoRA term) must behave like the
    # base layer would: bf16 output close to the fp32 result, fp32 gradients for the fp32 adapter tensors.
    torch.manual_seed(0)
    base = nn.Linear(64, 48)
    base.requires_grad_(False)
    config = hyft.AdapterConfig(method="boft", boft_block_size=8)
    rotation = BoftLinear(nn.Linear(64, 48), config)
    with torch.no_grad():
        rotation.boft_R.normal_(0, 0.2)
    blocks = rotation.rotation_blocks()[0].detach().requires_grad_(True)  # (8, 8, 8)
    lora_A = (0.1 * torch.randn(4, 64)).requires_grad_(True)
    lora_B = (0.1 * torch.randn(48, 4)).requires_grad_(True)
    A0, B0 = 0.1 * torch.randn(4, 64), 0.1 * torch.randn(48, 4)
    x = torch.randn(96, 64)  # more tokens than d_out rows: the weight-side path
    weights = torch.linspace(-1, 1, 48)

    def run(autocast: bool):
        with torch.autocast("cpu", dtype=BF16, enabled=autocast):
            y = rotated_frozen_linear(x, blocks, base.weight, base.bias, (lora_A, lora_B, A0, B0, 2.0))
        grads = torch.autograd.grad((y.float() * weights).sum(), [blocks, lora_A, lora_B])
        return y, grads

    y32, g32 = run(False)
    y16, g16 = run(True)
    # Oracle from explicit dense matrices (fp64): y = x·blockdiag(M)·W0ᵀ + b + 2(BA − B0A0)x.
    dense = torch.block_diag(*blocks.detach().double().unbind(0))
    delta = 2.0 * (lora_B.detach().double() @ lora_A.detach().double() - B0.double() @ A0.double())
    oracle = x.double() @ dense @ base.weight.double().T + base.bias.double() + x.double() @ delta.T
    assert y32.dtype == torch.float32 and torch.allclose(y32.double(), oracle, atol=1e-5)
    assert y16.dtype == BF16
    assert float((y16.double() - oracle).abs().max() / oracle.abs().max()) < 2e-2
    for a, b in zip(g16, g32, strict=True):
        assert a.dtype == torch.float32
        assert float((a - b).norm() / b.norm()) < 2e-2


def test_lora_ga_branch_stays_fp32_under_autocast():
    # BA and B0A0 are large and nearly cancel (methods.md §2.2): computed in bf16 their difference would
    # be mostly rounding noise. Under autocast the branch must still match the fp64 oracle to fp32 accuracy.
    torch.manual_seed(0)
    zeta = 2.0
    A0 = zeta * torch.linalg.qr(torch.randn(64, 4)).Q.T  # (4, 64), orthonormal rows × ζ
    B0 = zeta * torch.linalg.qr(torch.randn(48, 4)).Q  # (48, 4)
    layer = LoraLinear(nn.Linear(64, 48), hyft.AdapterConfig(method="lora_ga", r=4, alpha=8), init=(A0, B0))
    with torch.no_grad():  # one small training step's worth of change
        layer.lora_A.add_(1e-3 * torch.randn(4, 64))
        layer.lora_B.add_(1e-3 * torch.randn(48, 4))
    x = torch.randn(32, 64)
    oracle = 2.0 * x.double() @ (layer.lora_B.double() @ layer.lora_A.double() - B0.double() @ A0.double()).T
    with _autocast():
        delta = layer.add_delta(torch.zeros(32, 48), x, layer.delta_scale())
    assert delta.dtype == torch.float32
    assert float((delta.double() - oracle).norm() / oracle.norm()) < 1e-4
