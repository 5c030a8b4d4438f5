"""Whole models: identity at init, merge = forward, save → load exact, frozen base untouched by training."""

from __future__ import annotations

import hashlib

import pytest
import torch

import hyft
from tests.conftest import MODEL_FACTORIES, model_inputs

CONFIGS = {
    "boft": {"method": "boft", "boft_block_size": 4, "boft_n_butterfly_factor": 3},
    "oft": {"method": "oft", "boft_block_size": 8},
    "boft_output_scaled": {
        "method": "boft",
        "boft_block_size": 2,
        "boft_n_butterfly_factor": 2,
        "rotation_side": "output",
        "boft_scale": True,
        "cayley": "neumann",
    },
    "unitary": {"method": "unitary"},
    "unitary_random_adjacent": {
        "method": "unitary",
        "unitary_permutation": "random",
        "unitary_pairing": "adjacent",
    },
}


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


def weights_hash(model) -> str:
    """Hash of every frozen tensor, named as in the unwrapped model (adapters and trained heads left out)."""
    digest = hashlib.sha256()
    state = {
        name.replace(".base_layer", ""): t
        for name, t in model.state_dict().items()
        if not any(k in name for k in ("boft_", "unitary_", "classifier", "score"))
    }
    for name, tensor in sorted(state.items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("model_name", ["minilm", "bloom", "llama"])
@pytest.mark.parametrize("method", ["boft", "unitary"])
def test_wrapped_model_equals_the_base_at_init(model_name, method):
    inputs = model_inputs(model_name)
    reference = logits(MODEL_FACTORIES[model_name](), inputs)
    size = 8 if model_name != "minilm" else 16  # 4b must divide every adapted d_in
    settings = CONFIGS[method] | ({"boft_block_size": size} if method == "boft" else {})
    wrapped = hyft.wrap(MODEL_FACTORIES[model_name](), hyft.AdapterConfig(**settings)).eval()
    assert len(wrapped.adapted_layers()) >= 6
    out = logits(wrapped, inputs)
    if method == "boft":
        assert torch.equal(out, reference)  # R = I exactly: bit for bit
    else:
        assert torch.allclose(out, reference, atol=1e-6, rtol=0)


def train_a_few_steps(model, name: str, steps: int = 3) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=0.05)
    model.train()
    for step in range(steps):
        batch = model_inputs(name, batch=4, length=10, seed=10 + step)
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()


@pytest.mark.parametrize(
    ("model_name", "method"),
    [
        ("llama", "boft"),
        ("bloom", "oft"),
        ("llama", "boft_output_scaled"),
        ("bloom", "unitary"),
        ("llama", "unitary_random_adjacent"),
    ],
)
def test_train_merge_save_load(tmp_path, model_name, method):
    base = MODEL_FACTORIES[model_name]()
    before = weights_hash(base)
    model = hyft.wrap(base, hyft.AdapterConfig(**CONFIGS[method]))
    train_a_few_steps(model, model_name)
    inputs = model_inputs(model_name, batch=3, length=9, seed=5)
    adapted = logits(model, inputs)
    assert (
        adapted - logits(MODEL_FACTORIES[model_name](), inputs)
    ).abs().max() > 1e-3  # training did something
    assert weights_hash(model.base_model) == before  # W0 (and every other frozen weight) untouched

    model.save_pretrained(tmp_path)
    loaded = hyft.load(MODEL_FACTORIES[model_name](), tmp_path)
    assert torch.equal(logits(loaded, inputs), adapted)
    for name, layer in model.adapted_layers().items():
        for key, tensor in layer.adapter_state().items():
            assert torch.equal(loaded.adapted_layers()[name].adapter_state()[key], tensor)

    merged = model.merge_and_unload()
    assert not any(type(m).__name__.endswith(("BoftLinear", "UnitaryLinear")) for m in merged.modules())
    merged_out = logits(merged, inputs)
    assert torch.allclose(merged_out, adapted, rtol=1e-5, atol=1e-5 * adapted.abs().max())
