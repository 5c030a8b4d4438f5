"""``hyft estimate``'s formulas: exact parameter counts, saved activations against autograd's own count,
the scaling properties a user plans with. No timings: the step time is checked with a given GEMM rate.
The estimate's accuracy against measured training is bench/estimate_accuracy.py's job."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BloomConfig, LlamaConfig

import hyft
from hyft.experiments.estimate import (
    DTYPE_BYTES,
    FAMILIES,
    STEP_EFFICIENCY,
    _quantized_bytes_per_weight,
    architecture,
    estimate_training,
    meta_model,
)
from hyft.footprint import count_parameters, saved_tensor_bytes
from hyft.models import Quantization
from tests.conftest import minilm_classifier

RATE = 1e11  # a fixed GEMM rate: no probe, no timing in these tests


def llama_config(hidden: int = 128, intermediate: int = 352, layers: int = 2) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=1000,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )


def bloom_config(hidden: int = 128) -> BloomConfig:
    return BloomConfig(vocab_size=1000, hidden_size=hidden, n_layer=2, n_head=4)


def bert_config(hidden: int = 128, intermediate: int = 512) -> BertConfig:
    config = BertConfig(
        vocab_size=1000,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
    )
    config.num_labels = 3
    return config


TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "bert": ["query", "key", "value", "dense"],
}
CONFIGS = {
    "llama": (llama_config, "decoder"),
    "bloom": (bloom_config, "decoder"),
    "bert": (bert_config, "encoder"),
}


def adapter(method: str, family: str) -> hyft.AdapterConfig:
    settings = {"method": method, "target_modules": TARGETS[family], "r": 8, "alpha": 16}
    if method in ("boft", "hybrid"):
        settings.update(boft_block_size=4, boft_n_butterfly_factor=2)
    return hyft.AdapterConfig(**settings)


def real_model(family: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    factory, kind = CONFIGS[family]
    torch.manual_seed(0)
    model = (AutoModelForSequenceClassification if kind == "encoder" else AutoModelForCausalLM).from_config(
        factory()
    )
    return model.train()


def batch_for(family: str, batch: int, length: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (batch, length), generator=generator)
    labels = torch.randint(0, 3, (batch,), generator=generator) if family == "bert" else ids.clone()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def estimate(family: str, method: str = "lora", batch: int = 2, length: int = 32, **options):
    factory, kind = CONFIGS[family]
    options = {"device": "cpu", "matmul_rate": RATE, **options}
    return estimate_training(factory(), kind, adapter(method, family), batch, length, **options)


@pytest.mark.parametrize("family", ["llama", "bloom", "bert"])
@pytest.mark.parametrize("method", ["lora", "lora_ga", "boft", "hybrid"])
def test_parameter_counts_equal_the_real_wrapped_model(family, method):
    model = real_model(family)
    init = [batch_for(family, 2, 8)] if method in ("lora_ga", "hybrid") else None
    wrapped = hyft.wrap(model, adapter(method, family), init_batches=init)
    assert (estimate(family, method).trainable, estimate(family, method).total) == count_parameters(wrapped)


@pytest.mark.parametrize("family", ["llama", "bloom", "bert"])
@pytest.mark.parametrize("method", ["lora", "boft"])
def test_saved_activations_match_autograds_own_count(family, method):
    """The per-token-per-layer formula against the exact bytes autograd saves (deduplicated storages) on a
    small model of each family: the family's counts were fit at hidden 384–512, this checks them at 128."""
    model = hyft.wrap(real_model(family), adapter(method, family))
    owned = list(model.parameters()) + list(model.buffers())
    batch = batch_for(family, 4, 64)
    exact = saved_tensor_bytes(lambda: model(**batch).loss, exclude=owned)
    predicted = estimate(family, method, batch=4, length=64).activation_bytes
    assert predicted == pytest.approx(exact, rel=0.2)


def test_activations_grow_linearly_in_tokens_without_materialised_scores():
    """Llama-like (fused attention): activations ∝ batch × length, whichever of the two grows."""
    base = estimate("llama", batch=2, length=32)
    for batch, length in [(4, 32), (2, 64), (8, 16)]:
        assert estimate("llama", batch=batch, length=length).activation_bytes == pytest.approx(
            base.activation_bytes * batch * length / 64
        )
    assert estimate("llama", batch=4, length=32).weight_bytes == base.weight_bytes


def test_materialised_attention_scores_add_a_length_squared_term():
    """BERT with attention dropout on CPU keeps its probabilities: doubling the batch doubles the
    activations, doubling the length more than doubles them (by the heads · L² score term)."""
    base = estimate("bert", batch=2, length=64).activation_bytes
    assert estimate("bert", batch=4, length=64).activation_bytes == pytest.approx(2 * base, rel=1e-3)
    longer = estimate("bert", batch=2, length=128).activation_bytes
    score_term = (
        FAMILIES["bert"].scores_materialised * 4 * 2 * 2 * (128**2 - 2 * 64**2) * 4
    )  # layers · B · heads
    assert longer - 2 * base == pytest.approx(score_term, rel=1e-3)


def test_four_bit_base_weights_are_about_a_quarter_of_bf16():
    config = llama_config(hidden=256, intermediate=704, layers=4)
    model = meta_model(config, "decoder")
    arch = architecture(model, config, "decoder")
    quantization = Quantization(bits=4, compute_dtype="bf16")
    lora = adapter("lora", "llama")
    bf16 = estimate_training(
        config, "decoder", lora, 2, 32, dtype="bfloat16", device="cuda", matmul_rate=RATE
    )
    four = estimate_training(
        config,
        "decoder",
        lora,
        2,
        32,
        dtype="bfloat16",
        quantization=quantization,
        device="cuda",
        matmul_rate=RATE,
    )
    # The packed linear layers: 4.5 bits per weight (4-bit code + fp32 absmax per 64) against 16.
    assert _quantized_bytes_per_weight(quantization) == pytest.approx(0.5625)
    saved = bf16.weight_bytes - four.weight_bytes
    assert saved == pytest.approx(arch.quantizable_params * (2 - 0.5625))
    packed = arch.quantizable_params * 0.5625
    assert packed / (arch.quantizable_params * DTYPE_BYTES["bfloat16"]) == pytest.approx(0.28, abs=0.01)
    # Activations and trainable state do not depend on how the frozen weights are stored.
    assert four.activation_bytes == bf16.activation_bytes
    assert four.trainable_state_bytes == bf16.trainable_state_bytes
    double = Quantization(bits=4, compute_dtype="bf16", double_quant=True)
    assert _quantized_bytes_per_weight(double) < _quantized_bytes_per_weight(quantization)


def test_bf16_halves_activations_and_adam_state_stays_fp32():
    fp32 = estimate("llama", length=64)
    bf16 = estimate("llama", length=64, dtype="bfloat16", device="cuda")
    logits = 2 * 64 * 1000 * 4  # fp32 log-softmax rows, whatever the model's dtype
    assert bf16.activation_bytes - logits == pytest.approx((fp32.activation_bytes - logits) / 2, rel=0.05)
    assert bf16.trainable_state_bytes == fp32.trainable_state_bytes == fp32.trainable * 12


def test_lora_ga_init_peak_counts_fp32_accumulators_for_every_target():
    one = estimate("llama", "lora_ga", init_batches=1)
    four = estimate("llama", "lora_ga", init_batches=4)
    model = meta_model(llama_config(), "decoder")
    targets = sum(
        m.in_features * m.out_features
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in TARGETS["llama"]
    )
    assert four.init_peak_bytes - one.init_peak_bytes == pytest.approx(4 * targets)
    assert estimate("llama", "lora").init_peak_bytes == 0
    assert four.peak_bytes == max(four.init_peak_bytes, four.peak_bytes)


def test_gradient_checkpointing_trades_memory_for_a_recomputed_forward():
    plain = estimate("llama", length=64)
    checkpointed = estimate("llama", length=64, gradient_checkpointing=True)
    assert checkpointed.activation_bytes < plain.activation_bytes
    assert 1.3 < checkpointed.flops_per_step / plain.flops_per_step < 1.6


def test_step_time_is_flops_over_the_rate_and_grows_with_tokens():
    small, large = estimate("bloom", batch=2, length=32), estimate("bloom", batch=4, length=32)
    assert large.flops_per_step > 1.9 * small.flops_per_step
    # With a given rate the step is exactly the FLOPs over rate × efficiency (no BOFT blocks in LoRA).
    assert small.step_seconds == pytest.approx(small.flops_per_step / (RATE * STEP_EFFICIENCY["cpu"]))
    assert small.matmul_rate == RATE
    hybrid = estimate("bloom", "hybrid")
    assert hybrid.flops_per_step > small.flops_per_step  # the adapters' own products count


def test_probed_cpu_step_adds_the_materialised_scores_at_their_own_rate(monkeypatch):
    """On CPU the step is GEMM FLOPs over the probed block rate × E, plus — where the attention
    materialises its probabilities (BERT with attention dropout; BLOOM always) — B·heads·L²·layers
    scores at the probed score rate; Llama-like (SDPA, no dropout) has no score term."""
    from hyft.experiments import estimate as module

    layer_rate, score_rate, probed = 2e10, 5e7, []
    monkeypatch.setattr(module, "measure_layer_rate", lambda *args, **kwargs: layer_rate)

    def fake_score_rate(length, dropout, **kwargs):
        probed.append((length, dropout))
        return score_rate

    monkeypatch.setattr(module, "measure_score_rate", fake_score_rate)
    efficiency = STEP_EFFICIENCY["cpu"]
    for family, dropout in (("bert", 0.1), ("bloom", 0.0), ("llama", None)):
        probed.clear()
        result = estimate(family, batch=2, length=32, matmul_rate=None)
        gemm = result.flops_per_step / (layer_rate * efficiency)
        if dropout is None:
            assert result.step_seconds == pytest.approx(gemm) and not probed
            continue
        scores = 2 * 4 * 32**2 * 2  # batch · heads · L² · layers
        assert result.step_seconds == pytest.approx(gemm + scores / score_rate)
        assert probed == [(32, dropout)]
    checkpointed = estimate("bert", batch=2, length=32, matmul_rate=None, gradient_checkpointing=True)
    gemm = checkpointed.flops_per_step / (layer_rate * efficiency)
    assert checkpointed.step_seconds == pytest.approx(gemm + 1.5 * 2 * 4 * 32**2 * 2 / score_rate)


def test_score_probe_is_a_rate_per_score_cached_per_shape():
    """The probe runs the real softmax (+ dropout) forward and backward and reports scores per second;
    a second call with the same shape returns the cached value (one probe per estimate)."""
    from hyft.experiments.estimate import _PROBES, clear_probe_cache, measure_score_rate

    clear_probe_cache()
    rate = measure_score_rate(128, 0.1)
    assert 0 < rate < float("inf")
    assert measure_score_rate(128, 0.1) == rate
    assert [key for key in _PROBES if key[0] == "scores"] == [("scores", (1 << 21) // 128, 128, 0.1)]


def test_estimate_does_not_touch_the_config():
    config = llama_config()
    before = copy.deepcopy(config.to_dict())
    estimate_training(config, "decoder", adapter("hybrid", "llama"), 2, 16, device="cpu", matmul_rate=RATE)
    assert config.to_dict() == before


def test_hyft_estimate_table_on_the_demo_config():
    """The command's table: a row per cell, zero-shot cells train nothing, trained cells carry a memory
    and time figure; the real MiniLM's parameter count."""
    from pathlib import Path

    from hyft.config import load_config
    from hyft.experiments.config import RunConfig
    from hyft.experiments.estimate import estimate_rows, estimate_table

    demo = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    config = load_config(demo, RunConfig, ["run.seeds=[0]"])
    rows = estimate_rows(config)
    zero = [row for row in rows if row["steps"] == 0]
    trained = [row for row in rows if row["steps"] > 0]
    assert zero and trained
    assert all(row["trainable"] == 0 and row["memory_gib"] == 0 for row in zero)
    minilm = count_parameters(minilm_classifier(num_labels=4))[1]
    assert {row["total"] for row in zero} == {minilm}
    assert all(row["memory_gib"] > 0 and row["step_s"] > 0 and row["trainable"] > 0 for row in trained)
    table = estimate_table(config)
    assert "est. s/step" in table and "docs/estimate.md" in table
