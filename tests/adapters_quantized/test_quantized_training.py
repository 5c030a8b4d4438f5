"""Every adapter method trains on a 4-bit NF4 and an 8-bit base; the quantized weights never change."""

from __future__ import annotations

import hashlib

import pytest
import torch

import hyft
from hyft.adapters.quantized import is_quantized_linear
from tests.adapters_quantized.tiny import METHODS, batch, load_quantized, wrap_kwargs

STEPS = 8


def _storage_hashes(model) -> dict[str, str]:
    """Hash of every quantized layer's stored state (packed codes and scales), as it would be saved."""
    hashes = {}
    for name, module in model.named_modules():
        if is_quantized_linear(module):
            digest = hashlib.sha256()
            for key, tensor in sorted(module.state_dict().items()):
                digest.update(
                    key.encode() + tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                )
            hashes[name.removesuffix(".base_layer")] = digest.hexdigest()
    return hashes


@pytest.mark.parametrize("kind", ["nf4", "int8"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_eight_steps_lower_the_loss_on_a_quantized_base(llama_dir, kind, method):
    settings = METHODS[method]
    inputs = batch()
    base = load_quantized(llama_dir, kind)
    with torch.no_grad():
        base_loss = base(**inputs).loss.item()  # the quantized model alone, before any adapter
    stored = _storage_hashes(base)
    assert len(stored) == 14
    model = hyft.wrap(base, hyft.AdapterConfig(**settings), **wrap_kwargs(settings, batch(seed=2)))
    first_layer = model.adapted_layers()["model.layers.0.self_attn.q_proj"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    model.train()
    losses = []
    for step in range(STEPS):
        loss = model(**inputs).loss
        loss.backward()
        if step == 0:  # the gradient reaches the first layer's adapter through every quantized layer after it
            grads = [p.grad for params in first_layer.branch_parameters().values() for p in params]
            assert all(g is not None for g in grads) and sum(float(g.norm()) for g in grads) > 0
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    # Every adapter is the identity at init (LoRA-GA through its frozen B0A0 offset).
    assert losses[0] == pytest.approx(base_loss, abs=1e-4)
    assert losses[-1] < losses[0] - 0.05, losses
    assert _storage_hashes(model.base_model) == stored  # W0 stays frozen, bit for bit
