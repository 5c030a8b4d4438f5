"""Gradient checkpointing (reentrant and non-reentrant) for every adapter method (issue 12).

``HyftModel.gradient_checkpointing_enable`` switches the transformers model's checkpointing on. Before,
BOFT and the hybrid raised CheckpointError: their Cayley blocks, prepared for all layers at once before the
forward, could not be found again when a segment was recomputed. With checkpointing on, every layer
computes (and recomputes) its own blocks; the gradients must equal the unchecked run's, which does use
the batched blocks.
"""

from __future__ import annotations

import pytest
import torch

import hyft
import hyft.adapters.batched_rotation as batched_rotation
from tests.adapters_precision.tiny import METHODS, wrap_kwargs
from tests.conftest import model_inputs, tiny_bloom, tiny_llama

FACTORIES = {"llama": tiny_llama, "bloom": tiny_bloom}
BLOOM_UNITARY = ["dense", "dense_4h_to_h"]


def _gradients(name: str, model_name: str, reentrant: bool | None, monkeypatch) -> dict[str, torch.Tensor]:
    settings = dict(METHODS[name])
    if model_name == "bloom" and "unitary_modules" in settings:
        settings["unitary_modules"] = BLOOM_UNITARY
    batch = model_inputs("llama", batch=2, length=12)
    model = hyft.wrap(FACTORIES[model_name](), hyft.AdapterConfig(**settings), **wrap_kwargs(settings, batch))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # away from the init, so that no branch has a trivially zero gradient
        for parameter in model.parameters():
            if parameter.requires_grad and name != "full":
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    batched_calls = []
    original = batched_rotation.batched_operator_blocks
    monkeypatch.setattr(
        batched_rotation,
        "batched_operator_blocks",
        lambda members: batched_calls.append(len(members)) or original(members),
    )
    if reentrant is not None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        assert model.is_checkpointing()
    model.train()
    model(**batch).loss.backward()
    uses_rotation = name in ("boft", "oft", "hybrid", "hybrid_unitary")
    # The unchecked run takes the batched blocks (the path the fix must agree with); checkpointed runs not.
    assert bool(batched_calls) == (uses_rotation and reentrant is None)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "non_reentrant"])
@pytest.mark.parametrize("name", list(METHODS))
def test_checkpointed_gradients_equal_the_unchecked_ones(name, reentrant, monkeypatch):
    reference = _gradients(name, "llama", None, monkeypatch)
    checkpointed = _gradients(name, "llama", reentrant, monkeypatch)
    assert reference.keys() == checkpointed.keys() and len(reference) >= 14
    for key, expected in reference.items():
        assert expected.norm() > 0, key  # every adapter tensor, first layer included, gets a gradient
        error = float((checkpointed[key] - expected).norm() / expected.norm())
        assert error <= 1e-4, (key, error)


@pytest.mark.parametrize("name", ["boft", "hybrid_unitary"])
def test_checkpointing_on_bloom_and_switching_it_off_again(name, monkeypatch):
    reference = _gradients(name, "bloom", None, monkeypatch)
    checkpointed = _gradients(name, "bloom", False, monkeypatch)
    for key, expected in reference.items():
        assert float((checkpointed[key] - expected).norm() / expected.norm()) <= 1e-4, key
    model = hyft.wrap(tiny_bloom(), hyft.AdapterConfig(**METHODS["boft"]))
    model.gradient_checkpointing_enable()
    assert model.is_checkpointing()
    model.gradient_checkpointing_disable()
    assert not model.is_checkpointing()  # the batched blocks are used again


def test_reentrant_checkpointing_makes_the_embedding_output_require_grad():
    # A reentrant segment whose inputs do not require grad passes no gradient to the adapters inside it.
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(**METHODS["lora"]))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()  # idempotent: one hook, not two
    seen = []
    embeddings = model.get_input_embeddings()
    embeddings.register_forward_hook(lambda module, args, output: seen.append(output.requires_grad))
    model.train()
    model(**model_inputs("llama")).loss.backward()
    assert seen == [True]
    assert len(embeddings._forward_hooks) == 2  # transformers' (or hyft's) hook and this test's
