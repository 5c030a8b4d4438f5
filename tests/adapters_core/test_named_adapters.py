"""Named adapters with PEFT's semantics: add / set / disable / delete / save / load (issue 15, item 2)."""

from __future__ import annotations

import json

import pytest
import torch

import hyft
from hyft.adapters.model import DEFAULT_ADAPTER
from tests.conftest import minilm_classifier, model_inputs, tiny_llama

LORA = dict(method="lora", r=4, alpha=8)
HYBRID = dict(
    method="hybrid", r=4, alpha=8, boft_block_size=8, boft_n_butterfly_factor=2, lambda_warmup_steps=0
)


def _perturb(model: hyft.HyftModel, seed: int, scale: float = 0.05) -> None:
    """Add seeded noise to every trainable tensor of the active adapter, in name order, so that an
    adapter is not the identity at init and the same seed moves the same adapter on another model alike."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * scale)


def _alone(factory, config: dict, seed: int, inputs) -> hyft.HyftModel:
    """The adapter wrapped alone on a fresh base, built from the same RNG state and perturbed alike."""
    base = factory()
    torch.manual_seed(0)  # the state the layers' default init draws from, as before add_adapter below
    model = hyft.wrap(base, hyft.AdapterConfig(**config), init_batches=[inputs])
    _perturb(model, seed)
    return model.eval()


def _two_adapters(inputs) -> hyft.HyftModel:
    """A tiny Llama with a perturbed LoRA ("default", active) and a perturbed hybrid ("hybrid")."""
    base = tiny_llama()
    torch.manual_seed(0)
    model = hyft.wrap(base, hyft.AdapterConfig(**LORA), init_batches=[inputs])
    _perturb(model, 1)
    torch.manual_seed(0)
    model.add_adapter("hybrid", hyft.AdapterConfig(**HYBRID), init_batches=[inputs])
    assert model.active_adapter == DEFAULT_ADAPTER  # added, not activated (PEFT's add_adapter)
    model.set_adapter("hybrid")
    _perturb(model, 2)
    model.set_adapter(DEFAULT_ADAPTER)
    return model.eval()


def _logits(model, forward) -> torch.Tensor:
    with torch.no_grad():
        return model(**forward).logits


@pytest.fixture(scope="module")
def llama_inputs():
    inputs = model_inputs("llama")
    return inputs, {k: v for k, v in inputs.items() if k != "labels"}


def test_each_active_adapter_equals_it_wrapped_alone_and_disabled_is_the_base(llama_inputs):
    inputs, forward = llama_inputs
    model = _two_adapters(inputs)
    base = _logits(tiny_llama(), forward)
    lora_alone = _logits(_alone(tiny_llama, LORA, 1, inputs), forward)
    hybrid_alone = _logits(_alone(tiny_llama, HYBRID, 2, inputs), forward)
    # Non-trivial adapters: each moves the output away from the base and from the other.
    assert (lora_alone - base).abs().max() > 1e-2 and (hybrid_alone - base).abs().max() > 1e-2
    assert (lora_alone - hybrid_alone).abs().max() > 1e-2

    lora = _logits(model, forward)
    assert torch.allclose(lora, lora_alone, atol=1e-6, rtol=0), (lora - lora_alone).abs().max()
    model.set_adapter("hybrid")
    assert model.active_adapter == "hybrid" and model.active_adapters == ["hybrid"]
    assert model.adapter_config.method == "hybrid"
    assert set(model.mixing_weights()) == set(
        model.adapted_layers()
    )  # the hybrid's layers are the ones in use
    hybrid = _logits(model, forward)
    assert torch.allclose(hybrid, hybrid_alone, atol=1e-6, rtol=0), (hybrid - hybrid_alone).abs().max()

    with model.disable_adapter():
        assert torch.equal(_logits(model, forward), base)
        with model.disable_adapter():  # nested: still the base, and the outer block restores
            assert torch.equal(_logits(model, forward), base)
        assert torch.equal(_logits(model, forward), base)
    assert torch.equal(_logits(model, forward), hybrid)  # the adapter is back after the block
    model.set_adapter(DEFAULT_ADAPTER)
    assert torch.equal(_logits(model, forward), lora)


def test_one_adapter_keeps_its_module_tree_and_state_dict_keys(llama_inputs):
    inputs, _ = llama_inputs
    alone = _alone(tiny_llama, LORA, 1, inputs)
    model = _two_adapters(inputs)
    assert list(model.state_dict()) == list(alone.state_dict())  # the inactive hybrid adds no key
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in alone.named_parameters()]
    assert model.trainable_parameters() == alone.trainable_parameters()
    assert model.adapter_state_dict().keys() == alone.adapter_state_dict().keys()
    assert list(model.adapter_configs) == [DEFAULT_ADAPTER, "hybrid"]


def test_training_moves_only_the_active_adapter(llama_inputs):
    inputs, _ = llama_inputs
    model = _two_adapters(inputs)

    def snapshot(name):
        layers = model.adapted_layers(name)
        params = {
            f"{t}.{n}": p.detach().clone()
            for t, layer in layers.items()
            for n, p in layer.named_parameters()
            if not n.startswith("base_layer.")
        }
        updates = {t: int(layer.mixer.updates) for t, layer in layers.items() if hasattr(layer, "mixer")}
        return params, updates

    def step():
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        model.train()
        model(**inputs).loss.backward()
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad()
        model.eval()

    def own(name):
        return [
            p
            for layer in model.adapted_layers(name).values()
            for n, p in layer.named_parameters()
            if not n.startswith("base_layer.")
        ]

    assert all(p.requires_grad for p in own(DEFAULT_ADAPTER))
    assert not any(p.requires_grad for p in own("hybrid"))
    lora_before, _ = snapshot(DEFAULT_ADAPTER)
    hybrid_before, hybrid_updates = snapshot("hybrid")
    assert hybrid_updates and set(hybrid_updates.values()) == {0}
    step()
    lora_after, _ = snapshot(DEFAULT_ADAPTER)
    hybrid_after, updates_after = snapshot("hybrid")
    assert any(not torch.equal(lora_before[k], lora_after[k]) for k in lora_before)
    assert all(torch.equal(hybrid_before[k], hybrid_after[k]) for k in hybrid_before)
    assert updates_after == hybrid_updates  # after_backward did not move the inactive hybrid's λ
    assert all(p.grad is None for p in own("hybrid"))

    model.set_adapter("hybrid")  # the hybrid's flags come back as they were; LoRA's go off
    assert all(p.requires_grad for p in own("hybrid"))
    assert not any(p.requires_grad for p in own(DEFAULT_ADAPTER))
    step()
    _, updates = snapshot("hybrid")
    assert set(updates.values()) == {1}  # λ updated once per layer, now that the hybrid is active
    with model.disable_adapter():
        model.after_backward()  # no adapter ran: zero gradient norms must not move λ
    assert snapshot("hybrid")[1] == updates
    assert all(torch.equal(lora_after[k], v) for k, v in snapshot(DEFAULT_ADAPTER)[0].items())


def test_delete_leaves_the_other_adapter_intact(llama_inputs):
    inputs, forward = llama_inputs
    model = _two_adapters(inputs)
    lora = _logits(model, forward)
    model.set_adapter("hybrid")
    hybrid = _logits(model, forward)
    hybrid_params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    model.delete_adapter(DEFAULT_ADAPTER)  # inactive: deleted quietly
    assert list(model.adapter_configs) == ["hybrid"]
    assert torch.equal(_logits(model, forward), hybrid)
    params = dict(model.named_parameters())
    assert hybrid_params.keys() <= params.keys()
    assert all(torch.equal(params[n], v) and params[n].requires_grad for n, v in hybrid_params.items())
    assert {type(layer).__name__ for layer in model.adapted_layers().values()} == {"HybridLinear"}
    with pytest.raises(ValueError, match="only adapter"):
        model.delete_adapter("hybrid")

    # Deleting the active adapter activates the first remaining one, with a warning.
    model = _two_adapters(inputs)
    model.set_adapter("hybrid")
    with pytest.warns(UserWarning, match="'hybrid' was the active adapter; 'default' is active now"):
        model.delete_adapter("hybrid")
    assert model.active_adapter == DEFAULT_ADAPTER and list(model.adapter_configs) == [DEFAULT_ADAPTER]
    assert torch.equal(_logits(model, forward), lora)
    assert not any(hasattr(layer, "mixer") for layer in model.adapted_layers().values())


def test_save_pretrained_writes_peft_layout_and_load_reads_it_back(tmp_path, llama_inputs):
    inputs, forward = llama_inputs
    model = _two_adapters(inputs)
    lora = _logits(model, forward)
    model.set_adapter("hybrid")
    hybrid = _logits(model, forward)
    model.save_pretrained(tmp_path / "both")
    assert sorted(p.relative_to(tmp_path / "both").as_posix() for p in (tmp_path / "both").rglob("*")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "hybrid",
        "hybrid/adapter_config.json",
        "hybrid/adapter_model.safetensors",
    ]
    assert (
        json.loads((tmp_path / "both" / "adapter_config.json").read_text())["hyft"]["adapter"]["method"]
        == "lora"
    )

    loaded = hyft.load(tiny_llama(), tmp_path / "both")
    loaded.load_adapter(tmp_path / "both" / "hybrid", adapter_name="hybrid")
    assert loaded.active_adapter == DEFAULT_ADAPTER and list(loaded.adapter_configs) == [
        DEFAULT_ADAPTER,
        "hybrid",
    ]
    assert torch.allclose(_logits(loaded, forward), lora, atol=1e-6, rtol=0)
    loaded.set_adapter("hybrid")
    assert torch.allclose(_logits(loaded, forward), hybrid, atol=1e-6, rtol=0)
    assert loaded.trainable_parameters() == 0  # is_trainable=False, for both adapters

    # A named first adapter: hyft.load(..., adapter_name=...) names it.
    named = hyft.load(tiny_llama(), tmp_path / "both" / "hybrid", adapter_name="hybrid")
    assert named.active_adapter == "hybrid" and torch.allclose(
        _logits(named, forward), hybrid, atol=1e-6, rtol=0
    )

    # A subset: only the sub-folder; the top level of an existing folder is kept.
    model.save_pretrained(tmp_path / "subset", selected_adapters=["hybrid"])
    assert sorted(p.name for p in (tmp_path / "subset").iterdir()) == ["hybrid"]
    with pytest.raises(FileNotFoundError, match=r"sub-folders \['hybrid'\] hold adapters"):
        hyft.load(tiny_llama(), tmp_path / "subset")
    before = (tmp_path / "both" / "adapter_model.safetensors").read_bytes()
    model.save_pretrained(tmp_path / "both", selected_adapters=["hybrid"])
    assert (tmp_path / "both" / "adapter_model.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match=r"no adapter named 'nope'; this model has \['default', 'hybrid'\]"):
        model.save_pretrained(tmp_path / "x", selected_adapters=["nope"])


def test_peft_reads_a_lora_pair_hyft_wrote(tmp_path, llama_inputs):
    peft = pytest.importorskip("peft")
    inputs, forward = llama_inputs
    torch.manual_seed(0)
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(**LORA))
    _perturb(model, 1)
    torch.manual_seed(1)
    model.add_adapter(
        "second", hyft.AdapterConfig(method="lora", r=2, alpha=4, target_modules=["q_proj", "v_proj"])
    )
    model.set_adapter("second")
    _perturb(model, 2)
    second = _logits(model.eval(), forward)
    model.set_adapter(DEFAULT_ADAPTER)
    first = _logits(model, forward)
    assert (first - second).abs().max() > 1e-2
    model.save_pretrained(tmp_path)

    theirs = peft.PeftModel.from_pretrained(tiny_llama(), tmp_path, adapter_name=DEFAULT_ADAPTER)
    theirs.load_adapter(tmp_path / "second", adapter_name="second")
    theirs.eval()
    assert torch.allclose(_logits(theirs, forward), first, atol=1e-5, rtol=0)
    theirs.set_adapter("second")
    assert torch.allclose(_logits(theirs, forward), second, atol=1e-5, rtol=0)


def test_heads_are_per_adapter_and_disabled_shows_the_base_head(tmp_path):
    inputs = model_inputs("minilm")
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    boft = dict(method="boft", boft_block_size=8, boft_n_butterfly_factor=2)
    base = _logits(minilm_classifier(), forward)
    lora_alone = _logits(_alone(minilm_classifier, LORA, 1, inputs), forward)
    boft_alone = _logits(_alone(minilm_classifier, boft, 2, inputs), forward)

    model = minilm_classifier()
    torch.manual_seed(0)
    model = hyft.wrap(model, hyft.AdapterConfig(**LORA))
    _perturb(model, 1)  # also the model's own classifier, trained in place by the first adapter
    torch.manual_seed(0)
    model.add_adapter("boft", hyft.AdapterConfig(**boft))
    assert model.head_names("boft") == ["classifier"]
    assert model.head_module("boft", "classifier") is not model.head_module(DEFAULT_ADAPTER, "classifier")
    model.set_adapter("boft")
    _perturb(model, 2)
    model.eval()
    assert torch.allclose(_logits(model, forward), boft_alone, atol=1e-6, rtol=0)
    with model.disable_adapter():
        assert torch.equal(_logits(model, forward), base)  # the classifier as it was before any training
    model.set_adapter(DEFAULT_ADAPTER)
    assert torch.allclose(_logits(model, forward), lora_alone, atol=1e-6, rtol=0)

    model.save_pretrained(tmp_path)
    loaded = hyft.load(minilm_classifier(), tmp_path)
    loaded.load_adapter(tmp_path / "boft", adapter_name="boft")
    assert torch.allclose(_logits(loaded, forward), lora_alone, atol=1e-6, rtol=0)
    loaded.set_adapter("boft")
    assert torch.allclose(_logits(loaded, forward), boft_alone, atol=1e-6, rtol=0)


def test_inactive_adapters_move_with_to(llama_inputs):
    inputs, forward = llama_inputs
    model = _two_adapters(inputs)
    model.set_adapter("hybrid")
    hybrid = _logits(model, forward)
    model.set_adapter(DEFAULT_ADAPTER)
    model.double()  # the hybrid is outside the module tree now; _apply converts it too

    def hybrid_dtypes():
        return {
            t.dtype
            for layer in model.adapted_layers("hybrid").values()
            for t in [*layer.parameters(), *layer.buffers()]
            if t.is_floating_point()
        }

    assert hybrid_dtypes() == {torch.float64}
    model.float()
    assert hybrid_dtypes() == {torch.float32}
    model.set_adapter("hybrid")
    assert torch.equal(_logits(model, forward), hybrid)  # fp32 → fp64 → fp32 is exact


def test_refusals_say_what_to_do(llama_inputs):
    inputs, _ = llama_inputs
    model = _two_adapters(inputs)
    with pytest.raises(ValueError, match=r"no adapter named 'nope'; this model has \['default', 'hybrid'\]"):
        model.set_adapter("nope")
    with pytest.raises(ValueError, match="exists already"):
        model.add_adapter("hybrid", hyft.AdapterConfig(**LORA))
    with pytest.raises(ValueError, match="full fine-tuning .* cannot be one of several named adapters"):
        model.add_adapter("full", hyft.AdapterConfig(method="full"))
    with pytest.raises(ValueError, match="adapter name 'a/b'"):
        model.add_adapter("a/b", hyft.AdapterConfig(**LORA))
    model.merge_adapter()
    for action in (
        lambda: model.add_adapter("third", hyft.AdapterConfig(**LORA)),
        lambda: model.set_adapter("hybrid"),
        lambda: model.delete_adapter(DEFAULT_ADAPTER),
    ):
        with pytest.raises(ValueError, match="merged into the base weights.*unmerge_adapter"):
            action()
    with pytest.raises(ValueError, match="merged"), model.disable_adapter():
        pass
    model.unmerge_adapter()
    with model.disable_adapter(), pytest.raises(ValueError, match="disable_adapter"):
        model.set_adapter("hybrid")

    full = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="full"))
    with pytest.raises(ValueError, match="full fine-tuning .* cannot be one of several named adapters"):
        full.add_adapter("lora", hyft.AdapterConfig(**LORA))
