"""hyft OFT/BOFT saved in PEFT's own format: ``peft.PeftModel.from_pretrained`` reproduces hyft's logits.

The generators are random (well away from the identity init), so a wrong Cayley sign, key, shape or
butterfly order changes the logits far beyond the tolerance. BOFT m > 1 runs in PEFT only through its
CUDA kernel; on CPU the pure-torch block-diagonal of ``bench/harness.py`` stands in for it, as in
``test_peft_fidelity.py``. Reached on CPU: max |Δlogit| ≤ 1e-6 for every case (asserted at 1e-5).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

import hyft
from bench.harness import install_peft_boft_shim
from hyft.adapters.model import CONFIG_NAME, PEFT_PREFIX, WEIGHTS_NAME
from tests.conftest import minilm_classifier, model_inputs, tiny_llama

TARGETS = ["q_proj", "v_proj", "down_proj"]
TOLERANCE = 1e-5

CASES = {
    "oft_exact": ({"method": "oft", "boft_block_size": 8}, "OFT"),
    "oft_neumann": (
        {"method": "oft", "boft_block_size": 8, "cayley": "neumann", "cayley_neumann_terms": 5},
        "OFT",
    ),
    "oft_block_num": ({"method": "oft", "boft_block_num": 16}, "OFT"),
    "oft_scaled": ({"method": "oft", "boft_block_size": 8, "boft_scale": True}, "BOFT"),  # PEFT BOFT m = 1
    "boft_m1": ({"method": "boft", "boft_block_size": 4, "boft_scale": True}, "BOFT"),
    "boft_m3": ({"method": "boft", "boft_block_size": 4, "boft_n_butterfly_factor": 3}, "BOFT"),
    "boft_m3_scaled": (
        {"method": "boft", "boft_block_size": 4, "boft_n_butterfly_factor": 3, "boft_scale": True},
        "BOFT",
    ),
}


def perturb(model: hyft.HyftModel, seed: int = 0) -> None:
    """Random generators (‖Q‖ ~ 0.3–1, inside the Neumann series' range only for the Neumann case)
    and scales."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.adapted_layers().values():
            std = 0.02 if layer.cayley_form == "neumann" else 0.2
            layer.boft_R.copy_(std * torch.randn(layer.boft_R.shape, generator=generator))
            if layer.boft_s is not None:
                layer.boft_s.copy_(1 + 0.1 * torch.randn(layer.boft_s.shape, generator=generator))


def peft_load(base, directory):
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(base, str(directory)).eval()


@pytest.mark.parametrize("case", list(CASES))
def test_peft_loads_hyft_oft_and_boft_with_the_same_logits(tmp_path, monkeypatch, case):
    settings, peft_type = CASES[case]
    if settings.get("boft_n_butterfly_factor", 1) > 1:
        install_peft_boft_shim(monkeypatch.setattr)
    ours = hyft.wrap(tiny_llama(), hyft.AdapterConfig(target_modules=TARGETS, **settings))
    perturb(ours)
    ours.eval()
    ours.save_pretrained(tmp_path)

    saved = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert saved["peft_type"] == peft_type
    if peft_type == "OFT":  # the exact Cayley map is recorded as such, not PEFT's default Neumann series
        assert saved["use_cayley_neumann"] is (settings.get("cayley") == "neumann")
    theirs = peft_load(tiny_llama(), tmp_path)
    adapted = {
        n for n, m in theirs.base_model.model.named_modules() if hasattr(m, "oft_R") or hasattr(m, "boft_R")
    }
    assert adapted == set(ours.adapted_layers())
    if peft_type == "BOFT":  # PEFT really runs the saved depth (it silently drops to m = 1 without a kernel)
        layer = theirs.base_model.model.get_submodule(next(iter(adapted)))
        assert layer.boft_R["default"].shape[0] == settings.get("boft_n_butterfly_factor", 1)

    inputs = model_inputs("llama", batch=3, length=10)
    with torch.no_grad():
        out = ours(input_ids=inputs["input_ids"]).logits
        ref = theirs(input_ids=inputs["input_ids"]).logits
        base = tiny_llama()(input_ids=inputs["input_ids"]).logits
    assert (out - base).abs().max() > 1e-2  # the adapter changes the logits: the comparison means something
    assert (out - ref).abs().max() < TOLERANCE

    # hyft reads its PEFT-format folder back bit for bit.
    loaded = hyft.load(tiny_llama(), tmp_path)
    for name, layer in ours.adapted_layers().items():
        for key, tensor in layer.adapter_state().items():
            assert torch.equal(loaded.adapted_layers()[name].adapter_state()[key], tensor), (name, key)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=inputs["input_ids"]).logits, out)


def test_keys_and_config_fields_are_the_ones_peft_writes(tmp_path):
    from peft import OFTConfig, get_peft_model

    ours = hyft.wrap(
        tiny_llama(), hyft.AdapterConfig(method="oft", boft_block_size=8, target_modules=TARGETS)
    )
    ours.save_pretrained(tmp_path / "hyft")
    native = get_peft_model(
        tiny_llama(), OFTConfig(oft_block_size=8, r=0, target_modules=TARGETS, use_cayley_neumann=False)
    )
    native.save_pretrained(tmp_path / "peft")
    ours_state, their_state = (load_file(str(tmp_path / d / WEIGHTS_NAME)) for d in ("hyft", "peft"))
    assert {k: v.shape for k, v in ours_state.items()} == {k: v.shape for k, v in their_state.items()}
    ours_cfg, their_cfg = (json.loads((tmp_path / d / CONFIG_NAME).read_text()) for d in ("hyft", "peft"))
    for field in (
        "peft_type",
        "r",
        "oft_block_size",
        "use_cayley_neumann",
        "module_dropout",
        "coft",
        "block_share",
        "bias",
        "init_weights",
    ):
        assert ours_cfg[field] == their_cfg[field], field


def test_only_the_adapted_layers_are_targeted(tmp_path):
    # exclude_modules leaves one q_proj out: PEFT must not put a (zero) rotation on it.
    config = hyft.AdapterConfig(
        method="oft",
        boft_block_size=8,
        target_modules=TARGETS,
        exclude_modules=["model.layers.1.self_attn.q_proj"],
    )
    ours = hyft.wrap(tiny_llama(), config)
    perturb(ours)
    ours.save_pretrained(tmp_path)
    theirs = peft_load(tiny_llama(), tmp_path)
    adapted = {n for n, m in theirs.base_model.model.named_modules() if hasattr(m, "oft_R")}
    assert adapted == set(ours.adapted_layers()) and "model.layers.1.self_attn.q_proj" not in adapted


def test_classifier_head_travels_to_peft(tmp_path):
    ours = hyft.wrap(
        minilm_classifier(),
        hyft.AdapterConfig(method="oft", boft_block_size=16, target_modules=["query", "value"]),
    )
    perturb(ours)
    with torch.no_grad():
        ours.base_model.classifier.weight.add_(0.5)
    ours.eval()
    ours.save_pretrained(tmp_path)
    theirs = peft_load(minilm_classifier(), tmp_path)
    inputs = model_inputs("minilm", batch=3, length=10)
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    with torch.no_grad():
        out, ref = ours(**batch).logits, theirs(**batch).logits
    assert (out - ref).abs().max() < TOLERANCE


def test_old_hyft_type_folders_still_load(tmp_path):
    # The layout written before OFT/BOFT used PEFT's: peft_type HYFT_BOFT, hyft's own keys and sign.
    ours = hyft.wrap(
        tiny_llama(),
        hyft.AdapterConfig(method="boft", boft_block_size=4, boft_scale=True, target_modules=TARGETS),
    )
    perturb(ours)
    ours.eval()
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / CONFIG_NAME).read_text())
    old = {
        key: saved[key]
        for key in (
            "base_model_name_or_path",
            "task_type",
            "target_modules",
            "modules_to_save",
            "inference_mode",
            "hyft",
        )
    }
    old["peft_type"] = "HYFT_BOFT"
    del old["hyft"]["tensor_layout"]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(old))
    state = {
        f"{PEFT_PREFIX}{name}.{key}": tensor.contiguous()
        for name, layer in ours.adapted_layers().items()
        for key, tensor in layer.adapter_state().items()
    }
    save_file(state, str(tmp_path / WEIGHTS_NAME))
    loaded = hyft.load(tiny_llama(), tmp_path)
    inputs = model_inputs("llama")
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=inputs["input_ids"]).logits, ours(input_ids=inputs["input_ids"]).logits
        )


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"method": "unitary"}, "no PEFT method computes it"),
        ({"method": "boft", "boft_block_size": 4, "cayley": "neumann"}, "no Cayley-Neumann map"),
        ({"method": "oft", "boft_block_size": 8, "rotation_side": "output"}, "output side"),
    ],
)
def test_a_peft_user_is_told_what_to_do_with_a_hyft_only_adapter(tmp_path, settings, reason):
    from peft import PeftModel

    hyft.wrap(tiny_llama(), hyft.AdapterConfig(target_modules=TARGETS, **settings)).save_pretrained(tmp_path)
    with pytest.raises(KeyError) as failure:
        PeftModel.from_pretrained(tiny_llama(), str(tmp_path))
    message = str(failure.value)
    assert reason in message and "hyft.load" in message and "hyft export" in message
    hyft.load(tiny_llama(), tmp_path)  # hyft itself still loads it
