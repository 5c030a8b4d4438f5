"""Fidelity to the anchor: hyft BOFT/OFT effective weights equal PEFT's for the same generators.

Sign convention: PEFT's exact Cayley computes ``(I − S)(I + S)^{-1}`` (S = skew part of its parameter),
the transpose of the paper's ``(I + Q)(I − Q)^{-1}`` that hyft uses everywhere; so PEFT's S maps to
hyft's ``Q = −S``. PEFT's Cayley–Neumann path already has the paper's sign: same parameter, same R.

PEFT BOFT needs its CUDA extension for m > 1 and silently drops to m = 1 on a CPU torch; for m = 3 a
small pure-torch block-diagonal stands in for it (``PeftBlockDiagShim``, installed by
``bench/harness.py: install_peft_boft_shim`` as the benchmarks do).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import hyft
from bench.harness import install_peft_boft_shim
from hyft.adapters.cayley import upper_from_skew
from tests.conftest import model_inputs, tiny_llama

TARGETS = ["q_proj", "v_proj", "down_proj"]


def peft_merged(model) -> dict[str, torch.Tensor]:
    merged = copy.deepcopy(model).merge_and_unload()
    return {n: m.weight.detach() for n, m in merged.named_modules() if n.split(".")[-1] in TARGETS}


@pytest.mark.parametrize("factors", [1, 3])
def test_boft_effective_weight_equals_pefts(monkeypatch, factors):
    from peft import BOFTConfig, get_peft_model

    if factors > 1:
        install_peft_boft_shim(monkeypatch.setattr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = get_peft_model(
            tiny_llama(),
            BOFTConfig(boft_block_size=4, boft_n_butterfly_factor=factors, target_modules=TARGETS),
        )
    ours = hyft.wrap(
        tiny_llama(),
        hyft.AdapterConfig(
            method="boft",
            boft_block_size=4,
            boft_scale=True,
            boft_n_butterfly_factor=factors,
            target_modules=TARGETS,
        ),
    )
    generator = torch.Generator().manual_seed(0)
    for name, layer in ours.adapted_layers().items():
        peft_layer = theirs.base_model.model.get_submodule(name)
        assert peft_layer.boft_R["default"].shape[0] == factors  # PEFT really ran the requested depth
        raw = torch.randn(peft_layer.boft_R["default"].shape, generator=generator) * 0.3
        scale = 1 + 0.1 * torch.randn(peft_layer.boft_s["default"].shape, generator=generator)
        with torch.no_grad():
            peft_layer.boft_R["default"].copy_(raw)
            peft_layer.boft_s["default"].copy_(scale)
            peft_skew = 0.5 * (raw - raw.transpose(-1, -2))
            layer.boft_R.copy_(upper_from_skew(-peft_skew))  # the documented sign mapping
            layer.boft_s.copy_(scale)
    expected = peft_merged(theirs)
    for name, layer in ours.adapted_layers().items():
        assert torch.allclose(layer.merged_weight(), expected[name], atol=1e-5)
    inputs = model_inputs("llama")
    with torch.no_grad():
        out, ref = ours(input_ids=inputs["input_ids"]).logits, theirs(input_ids=inputs["input_ids"]).logits
    assert torch.allclose(out, ref, atol=1e-5)
    # Without the sign mapping the weights differ (guards the convention, not just the structure).
    layer = next(iter(ours.adapted_layers().values()))
    with torch.no_grad():
        layer.boft_R.neg_()
    assert (layer.merged_weight() - expected[next(iter(ours.adapted_layers()))]).abs().max() > 1e-2


@pytest.mark.parametrize("neumann", [True, False])
def test_oft_effective_weight_equals_pefts(neumann):
    from peft import OFTConfig, get_peft_model

    theirs = get_peft_model(
        tiny_llama(),
        OFTConfig(
            oft_block_size=8,
            r=0,
            target_modules=TARGETS,
            use_cayley_neumann=neumann,
            num_cayley_neumann_terms=5,
        ),
    )
    ours = hyft.wrap(
        tiny_llama(),
        hyft.AdapterConfig(
            method="oft",
            boft_block_size=8,
            target_modules=TARGETS,
            cayley="neumann" if neumann else "exact",
            cayley_neumann_terms=5,
        ),
    )
    generator = torch.Generator().manual_seed(1)
    for name, layer in ours.adapted_layers().items():
        rotation = theirs.base_model.model.get_submodule(name).oft_R["default"]
        weight = torch.randn(rotation.weight.shape, generator=generator) * 0.03
        with torch.no_grad():
            rotation.weight.copy_(weight)
            # PEFT's Neumann path has the paper's sign (same tensor); its exact path is the transpose.
            layer.load_adapter_state({"oft_R.weight": weight if neumann else -weight})
    expected = peft_merged(theirs)
    for name, layer in ours.adapted_layers().items():
        assert torch.allclose(layer.merged_weight(), expected[name], atol=1e-5)
    inputs = model_inputs("llama")
    with torch.no_grad():
        out, ref = ours(input_ids=inputs["input_ids"]).logits, theirs(input_ids=inputs["input_ids"]).logits
    assert torch.allclose(out, ref, atol=1e-5)
