"""``hyft estimate``: trainable parameters, peak memory and step time per cell, before anything heavy runs.

Parameters are exact: the adapters are built on a meta-device copy of the model (no weights load).
Memory and time follow the formulas of docs/estimate.md, computed from the model config, the adapter
and the batch shape; measured against real training in bench/results/estimate-accuracy.md.

Memory (bytes) = weights + trainable · (4 gradient + 8 AdamW) + saved activations + backward transient,
or the LoRA-GA initialisation's peak when that is higher (weights + fp32 gradient accumulators of every
target + the activations of a forward/backward over the base). Saved activations are counted per token
per layer for the architecture's family (:data:`FAMILIES`), plus the logits for a causal LM and each
adapter's own saved tensors.

Time per optimizer step = matmul FLOPs of the step / (the rate this machine reaches now × efficiency).
On CPU the rate comes from a short probe (:func:`measure_layer_rate`, ~0.2 s) that runs a frozen MLP
block of the model's widths forward and backward (plus :func:`measure_block_rate` for BOFT's block
matmuls), so a loaded or throttled machine is seen as it is; on CUDA from a GEMM probe. The FLOPs count
the frozen base's forward and input-gradient GEMMs (no weight gradients), the attention products, the
LM head and the adapters' own products.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from hyft.experiments.config import RunConfig

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_BYTES = 4 + 8  # per trainable fp32 parameter: its gradient + AdamW's two moments


# -- Saved activations: values autograd keeps per token per layer ---------------------------------------
@dataclass(frozen=True)
class Family:
    """Values (each of the activation dtype) one transformer layer saves for backward per token, with
    every linear layer adapted (frozen base): ``hidden · h + mlp · d_ff`` per token, plus ``scores``
    per token per key per head where the attention materialises its probabilities (eager or the math
    SDPA path), 0 where a fused SDPA kernel keeps only q, k, v, out and the log-sum-exp.

    The counts were taken with :func:`hyft.footprint.saved_tensor_bytes` (exact, deduplicated by storage)
    on the bench configs and two MLP widths each (tests/experiments_runner/test_estimate.py checks them):
    BERT saves the block input, q, k, v, context, the attention-output dropout mask and LayerNorm
    input/output twice (~10.4 h) and the GELU input and output (2 d_ff); its probabilities with dropout
    are 3 values per score (softmax output, dropout mask, dropped copy). BLOOM: ~8.4 h, 2 d_ff, softmax
    output (1 per score, always eager). Llama-like (RMSNorm, SwiGLU): ~8.4 h, 4 d_ff (gate, up, SiLU
    output, product), fused SDPA without attention dropout.
    """

    hidden: float
    mlp: float
    scores_materialised: float  # per token · key · head when the attention runs eagerly / on the math path
    always_eager: bool = False  # the model has its own attention code (no SDPA)


FAMILIES: dict[str, Family] = {
    "bert": Family(hidden=10.4, mlp=2.0, scores_materialised=3.0),
    "bloom": Family(hidden=8.4, mlp=2.0, scores_materialised=1.0, always_eager=True),
    "llama": Family(hidden=8.4, mlp=4.0, scores_materialised=3.0),
}
FAMILY_OF_MODEL_TYPE = {
    **dict.fromkeys(
        ["bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "mpnet"], "bert"
    ),
    "bloom": "bloom",
    **dict.fromkeys(
        ["llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo"], "llama"
    ),
}
# Unknown architectures: the largest of the known counts, so the estimate errs towards more memory.
FALLBACK_FAMILY = Family(hidden=10.4, mlp=4.0, scores_materialised=3.0)
# Outside the layers, per token: embedding LayerNorm/dropout (~0.5 h, measured 0.45 h on MiniLM).
EMBEDDING_HIDDEN = 0.5
# A causal LM's loss upcasts the logits to fp32 and saves the log-softmax: one fp32 row of V per token
# (measured 0.99 · 4V bytes per token on the BLOOM- and Llama-like configs).
LOGIT_SAVED_COPIES = 1.0

# -- The transient at the peak (inside the backward, on top of what is saved) --------------------------
# A causal LM's loss and its backward hold several (T, V) fp32 buffers at once: the logits, the shifted
# contiguous copy transformers makes, the log-softmax (saved), its gradient and the logits' gradient.
# Calibrated once on the BLOOM-/Llama-like CPU configs (bench/results/estimate-accuracy.md).
LOGIT_TRANSIENT_COPIES = 3.0
# Besides the logits, the backward holds gradients of activations next to what is still saved. On CPU
# the process RSS also keeps freed heap blocks (glibc arenas: after the first large frees its mmap
# threshold rises and later activations come from a heap it rarely trims), so the peak RSS exceeds the
# live bytes by a share of the saved activations: 0.65, calibrated once on the three CPU configs (needed
# 0.62–0.68 there; bench/results/estimate-accuracy.md). On CUDA the figure is the allocator's live
# tensors: a layer's backward holds about one more layer of activation gradients and temporaries, so two
# layers' worth (an assumption: no GPU measurement yet).
BACKWARD_TRANSIENT_SHARE_CPU = 0.65
BACKWARD_TRANSIENT_LAYERS_CUDA = 2.0
# Per-process runtime that the training window adds beyond the model (oneDNN/BLAS workspaces, thread
# pools, autograd bookkeeping): measured ~60–90 MiB on CPU; on CUDA the allocator figure excludes it.
RUNTIME_BYTES_CPU = 80 * 2**20

# -- Adapter-specific saved tensors ---------------------------------------------------------------------
# BOFT/OFT (and the hybrid's BOFT branch) keep the folded g×g rotation blocks and the Cayley factors'
# intermediates: ≈ 5.4 · d_in · g fp32 values per layer, whatever the tokens (measured 681–692 bytes per
# input feature per layer at g = 32 on the three CPU configs).
BOFT_SAVED_BLOCK_COPIES = 5.4

# -- Time -------------------------------------------------------------------------------------------------
# CPU: the probe (:func:`measure_layer_rate`) runs a frozen MLP block's forward and input backward at the
# model's widths, so its rate already pays the elementwise work, autograd's bookkeeping and, on a shared
# machine, the cost of every thread barrier when another job holds a core (a plain GEMM probe read 100+
# GFLOP/s there while training steps reached 10–40). What the block lacks: the vocabulary-wide loss,
# AdamW, the adapters' small ops (materialised attention scores are probed apart, see
# SCORE_PROBE_ELEMENTS). STEP_EFFICIENCY is the share of the probed rate a whole step reaches, calibrated
# once on the three CPU configs under load, before the score term existed (MiniLM reached 0.59 of the
# probe, with its materialised attention and three dropouts per layer; BLOOM- and Llama-like 0.90 and
# 0.95): 0.75 is their geometric middle, kept unchanged (not refit) when the score term came.
# CUDA: the probe is a plain bf16/fp32 GEMM (a small block would measure launch latency, not the GPU);
# 0.45 is an assumption until measured (small kernels and unfused elementwise work of a training step).
STEP_EFFICIENCY = {"cpu": 0.75, "cuda": 0.45}
# CUDA (or a given rate): BOFT's g-wide block matmuls run at about a third of the GEMM rate
# (bench/results/adapters.md), so their FLOPs count three times; on CPU they are probed themselves.
BLOCK_MATMUL_COST = 3.0
PROBE_SECONDS = 0.2
# CPU: where the attention materialises its probabilities (eager, or SDPA's math path under dropout), the
# scores' elementwise work (mask add, softmax, dropout; forward and backward) is paid per score, B·n·L² per
# layer, and is probed (:func:`measure_score_rate`) rather than folded into STEP_EFFICIENCY: on MiniLM
# (16 × 128, dropout 0.1) it is ~0.2 s of a 1.4 s step, on the Llama-like config (SDPA, no dropout) 0.
SCORE_PROBE_ELEMENTS = 1 << 21
PROBE_FLOPS_PER_REPEAT = 4e9  # sets the probe's tokens: a few repeats fit in PROBE_SECONDS on 2 cores


@dataclass(frozen=True)
class Architecture:
    """What the estimate reads from a transformers config and the meta-device model."""

    model_type: str
    kind: str  # "encoder" (sequence classification) or "decoder" (causal LM)
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    attention_dropout: float
    # Σ d_in·d_out of the nn.Linear modules applied to every token / to one token per sequence (pooler,
    # classifier), and the weights of the linear layers a quantized load would pack.
    token_linear_params: int
    sequence_linear_params: int
    quantizable_params: int


@dataclass
class TrainingEstimate:
    """One cell's estimate; every byte figure is for one process (one device)."""

    trainable: int
    total: int
    weight_bytes: float
    trainable_state_bytes: float
    activation_bytes: float
    transient_bytes: float
    init_peak_bytes: float  # LoRA-GA / hybrid gradient pass; 0 for other methods
    peak_bytes: float
    flops_per_step: float
    matmul_rate: float  # FLOP/s the probe measured (CPU: the MLP-block probe; CUDA: GEMM) or the rate given
    step_seconds: float
    device: str
    notes: list[str] = field(default_factory=list)

    def parts_gib(self) -> dict[str, float]:
        """The memory terms in GiB, for tables."""
        return {
            "weights": self.weight_bytes / GIB,
            "trainable_state": self.trainable_state_bytes / GIB,
            "activations": self.activation_bytes / GIB,
            "transient": self.transient_bytes / GIB,
            "init": self.init_peak_bytes / GIB,
            "peak": self.peak_bytes / GIB,
        }


# -- The model on the meta device ----------------------------------------------------------------------
def meta_model(model_config: Any, kind: str) -> torch.nn.Module:
    """The transformers model of ``model_config`` on the meta device (shapes only, no memory)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    factory = AutoModelForSequenceClassification if kind == "encoder" else AutoModelForCausalLM
    with torch.device("meta"):
        return factory.from_config(model_config)


def _meta_model(entry, num_labels):
    from transformers import AutoConfig

    from hyft.models import resolve_model_path

    model_config = AutoConfig.from_pretrained(resolve_model_path(entry.name_or_path))
    if entry.kind == "encoder":
        model_config.num_labels = num_labels
    return meta_model(model_config, entry.kind), model_config


def count_adapter_parameters(model, adapter_config) -> tuple[int, int]:
    """(trainable, total) after putting ``adapter_config`` on a meta-device ``model`` (no gradient pass)."""
    wrapped = _wrap_on_meta(model, adapter_config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in wrapped.parameters())


def _wrap_on_meta(model, adapter_config):
    """The adapters on a meta model; LoRA-GA's layers get their default init
    (shapes do not need the gradient)."""
    from hyft.adapters.model import HyftModel, install_layers, wrap
    from hyft.adapters.registry import NEEDS_GRADIENT_INIT
    from hyft.adapters.targeting import find_heads, find_targets

    if adapter_config.method not in NEEDS_GRADIENT_INIT:
        return wrap(model, adapter_config)
    targets = find_targets(model, adapter_config.target_modules, adapter_config.exclude_modules)
    heads = find_heads(model, adapter_config.modules_to_save)
    targets = [name for name in targets if not any(name == h or name.startswith(h + ".") for h in heads)]
    install_layers(model, adapter_config, targets, heads)
    return HyftModel(model, adapter_config)


def architecture(model: torch.nn.Module, model_config: Any, kind: str) -> Architecture:
    """Read the shapes the formulas need from the (unwrapped, meta) model and its config."""
    from hyft.models import UNQUANTIZED_MODULES

    token = sequence = quantizable = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        size = module.in_features * module.out_features
        leaf = name.rsplit(".", 1)[-1]
        # Sequence-classification heads (BERT's pooler and classifier) see one token per sequence.
        if kind == "encoder" and (name.startswith(("classifier", "score")) or ".pooler." in f".{name}."):
            sequence += size
        else:
            token += size
        if leaf not in UNQUANTIZED_MODULES:
            quantizable += size
    hidden = _first(model_config, "hidden_size", "n_embd", "d_model")
    heads = _first(model_config, "num_attention_heads", "n_head")
    return Architecture(
        model_type=getattr(model_config, "model_type", ""),
        kind=kind,
        hidden=hidden,
        layers=_first(model_config, "num_hidden_layers", "n_layer"),
        heads=heads,
        intermediate=_first(model_config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)
        or 4 * hidden,
        vocab=getattr(model_config, "vocab_size", 0),
        attention_dropout=float(
            _first(model_config, "attention_probs_dropout_prob", "attention_dropout", default=0.0) or 0.0
        ),
        token_linear_params=token,
        sequence_linear_params=sequence,
        quantizable_params=quantizable,
    )


def _first(config: Any, *names: str, default: Any = 0) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _adapted(wrapped: torch.nn.Module) -> list[tuple[int, int, torch.nn.Module]]:
    """(d_in, d_out, layer) of every outermost adapted linear layer of a wrapped meta model (a hybrid
    layer's own LoRA/BOFT branches are parts of it, not layers of their own)."""
    from hyft.adapters.layer import AdaptedLinear

    found = []
    inner: set[int] = set()
    for module in wrapped.modules():
        if isinstance(module, AdaptedLinear) and id(module) not in inner:
            inner.update(id(sub) for sub in module.modules() if sub is not module)
            base = module.base_layer
            found.append((base.in_features, base.out_features, module))
    return found


@dataclass(frozen=True)
class LayerParts:
    """The adapter branches of one adapted layer: LoRA ranks (forward, trainable), BOFT's g, unitary."""

    lora_forward_rank: int = 0
    lora_rank: int = 0
    boft_group: int = 0
    unitary: bool = False


def layer_parts(layer: torch.nn.Module, adapter_config: Any, d_in: int) -> LayerParts:
    """What one adapted layer runs: LoRA-GA (its own or the hybrid's branch) runs the frozen B0·A0 half
    beside the trainable rank r (rank 2r in the forward); BOFT/OFT rotate with g = b·2^(m−1) blocks."""
    from hyft.adapters.boft import BoftLinear
    from hyft.adapters.butterfly import group_size
    from hyft.adapters.hybrid import HybridLinear
    from hyft.adapters.lora import LoraLinear
    from hyft.adapters.unitary import UnitaryLinear

    r = adapter_config.r
    m = 1 if adapter_config.method == "oft" else adapter_config.boft_n_butterfly_factor
    block = adapter_config.boft_block_size or max(d_in // (adapter_config.boft_block_num or 1), 1)
    group = min(group_size(block, m), d_in)
    if isinstance(layer, HybridLinear):
        return LayerParts(2 * r, r, group, layer.unitary is not None)
    if isinstance(layer, LoraLinear):
        return LayerParts(2 * r if adapter_config.method == "lora_ga" else r, r)
    if isinstance(layer, BoftLinear):
        return LayerParts(boft_group=group)
    if isinstance(layer, UnitaryLinear):
        return LayerParts(unitary=True)
    return LayerParts()


# -- The probes -------------------------------------------------------------------------------------------
_PROBES: dict[tuple, float] = {}


def _median_rate(key: tuple, run: Any, flops: float, device: str, seconds: float) -> float:
    """Median FLOP/s of ``run()`` over repeats for ``seconds`` (at least 3) after one untimed warm-up
    (thread pools, kernel selection); cached per ``key`` within a process."""
    if key in _PROBES:
        return _PROBES[key]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    run()
    sync()
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        start = time.perf_counter()
        run()
        sync()
        rates.append(flops / max(time.perf_counter() - start, 1e-9))
    _PROBES[key] = statistics.median(rates)
    return _PROBES[key]


def clear_probe_cache() -> None:
    """Forget the measured rates (the next estimate probes again, e.g. after the load changed)."""
    _PROBES.clear()


def measure_matmul_rate(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    m: int = 1024,
    k: int = 512,
    n: int = 2048,
    seconds: float = PROBE_SECONDS,
) -> float:
    """FLOP/s of (m×k)·(k×n) GEMMs on ``device`` now (the GPU probe)."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    return _median_rate(("gemm", device, dtype, m, k, n), lambda: a @ b, 2 * m * k * n, device, seconds)


def _probe_tokens(tokens: int, hidden: int, intermediate: int) -> int:
    return max(64, min(tokens, 512, int(PROBE_FLOPS_PER_REPEAT / (8 * hidden * intermediate))))


def measure_layer_rate(
    tokens: int,
    hidden: int,
    intermediate: int,
    dtype: torch.dtype = torch.float32,
    seconds: float = PROBE_SECONDS,
) -> float:
    """Matmul FLOP/s a frozen MLP block reaches on this CPU now: ``LayerNorm(x + W2·GELU(W1·x))`` forward
    and backward to x (as a frozen base under an adapter), widths capped at 1024 / 4096 so the probe
    stays small; 8·t·h·f matmul FLOPs per repeat."""
    h, f = min(hidden, 1024), min(intermediate, 4096)
    t = _probe_tokens(tokens, h, f)
    generator = torch.Generator().manual_seed(0)
    w1 = (torch.randn(f, h, generator=generator) / h**0.5).to(dtype)
    w2 = (torch.randn(h, f, generator=generator) / f**0.5).to(dtype)
    x = torch.randn(t, h, generator=generator).to(dtype).requires_grad_(True)
    grad = torch.ones(t, h, dtype=dtype)

    def run() -> None:
        x.grad = None
        y = torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(x, w1)), w2)
        torch.nn.functional.layer_norm(x + y, (h,)).backward(grad)

    return _median_rate(("layer", dtype, t, h, f), run, 8 * t * h * f, "cpu", seconds)


def measure_block_rate(tokens: int, width: int, group: int, seconds: float = PROBE_SECONDS / 2) -> float:
    """FLOP/s of BOFT's backward block matmuls on this CPU now (hyft's own kernels): ∂x = u·blockdiag(Mᵀ)
    and ∂M = Σ_t x_tᵀ u_t over (t, d) activations with (d/g, g, g) blocks; 4·t·d·g FLOPs."""
    from hyft.adapters.butterfly import apply_blocks, block_gradient

    d = min(width, 1024) // group * group or group
    t = max(64, min(tokens, 2048, int(PROBE_FLOPS_PER_REPEAT / 8 / (4 * d * group))))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(t, d, generator=generator)
    u = torch.randn(t, d, generator=generator)
    blocks = torch.randn(d // group, group, group, generator=generator)

    def run() -> None:
        with torch.no_grad():
            apply_blocks(u, blocks.transpose(-1, -2))
            block_gradient(x, u, d // group)

    return _median_rate(("block", t, d, group), run, 4 * t * d * group, "cpu", seconds)


def measure_score_rate(length: int, dropout: float, seconds: float = PROBE_SECONDS / 2) -> float:
    """Attention scores per second this CPU handles now where the attention materialises them: scores +
    mask → softmax → dropout (when ``dropout`` > 0), forward and backward, over rows of ``length`` keys;
    one unit per score."""
    rows = max(64, SCORE_PROBE_ELEMENTS // max(length, 1))
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(rows, length, generator=generator).requires_grad_(True)
    mask = torch.zeros(length)
    grad = torch.ones(rows, length)

    def run() -> None:
        scores.grad = None
        probabilities = torch.softmax(scores + mask, dim=-1)
        torch.nn.functional.dropout(probabilities, dropout, training=dropout > 0).backward(grad)

    return _median_rate(("scores", rows, length, dropout), run, rows * length, "cpu", seconds)


# -- The estimate -----------------------------------------------------------------------------------------
def estimate_training(
    model_config: Any,
    kind: str,
    adapter_config: Any,
    batch_size: int,
    length: int,
    *,
    dtype: str = "float32",
    quantization: Any = None,
    mixed_precision: str = "no",
    gradient_checkpointing: bool = False,
    init_batches: int = 4,
    device: str | None = None,
    matmul_rate: float | None = None,
) -> TrainingEstimate:
    """Peak memory and step time of training ``adapter_config`` on the model of ``model_config``.

    kind: "encoder" (sequence classification, ``model_config.num_labels`` set) or "decoder" (causal LM);
    batch_size × length: tokens of one micro-batch (an upper bound: batches are padded to their longest
    row); dtype / quantization: how the base is loaded (``hyft.models.Quantization`` or None);
    mixed_precision: the trainer's autocast ("no", "bf16", "fp16"); init_batches: LoRA-GA's gradient
    batches; device: "cpu" or "cuda[:N]" (default: cuda when available); matmul_rate: FLOP/s to use
    instead of probing. Formulas: docs/estimate.md.
    """
    from hyft.adapters.registry import NEEDS_GRADIENT_INIT

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.startswith("cuda")
    notes: list[str] = []
    model = meta_model(model_config, kind)
    arch = architecture(model, model_config, kind)
    full = adapter_config.method == "full"
    if full:
        wrapped, adapted = model, []
        model.requires_grad_(True)
    else:
        wrapped = _wrap_on_meta(model, adapter_config)
        adapted = _adapted(wrapped)
    params = list(wrapped.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    adapter_params = sum(
        p.numel()
        for _, _, layer in adapted
        for n, p in layer.named_parameters()
        if not n.startswith("base_layer.")
    )
    base_params = total - adapter_params

    # Weights: the base in its dtype (linear layers packed when quantized), adapters in fp32.
    weight_bytes_per = DTYPE_BYTES[dtype]
    if quantization is not None:
        packed = _quantized_bytes_per_weight(quantization)
        weight_bytes = (
            arch.quantizable_params * packed + (base_params - arch.quantizable_params) * weight_bytes_per
        )
    else:
        weight_bytes = base_params * weight_bytes_per
    weight_bytes += adapter_params * 4
    trainable_state = trainable * OPTIMIZER_BYTES if not full else trainable * (weight_bytes_per + 8)

    # Activations. The dtype they are saved in: the compute dtype (autocast, a half base, a 4-bit base's
    # compute dtype); LayerNorm statistics and the loss stay fp32 (small, or counted apart below).
    act_bytes = _activation_bytes_per_value(dtype, quantization, mixed_precision)
    tokens = batch_size * length
    family = FAMILIES.get(FAMILY_OF_MODEL_TYPE.get(arch.model_type, ""), FALLBACK_FAMILY)
    if family is FALLBACK_FAMILY:
        notes.append(
            f"model type {arch.model_type!r}: no measured activation profile, the largest known one used"
        )
    eager_scores = family.always_eager or (not on_cuda and arch.attention_dropout > 0)
    score_values = family.scores_materialised if eager_scores else 0.0
    per_layer = (
        tokens
        * (family.hidden * arch.hidden + family.mlp * arch.intermediate + score_values * arch.heads * length)
        * act_bytes
    )
    logits = tokens * arch.vocab * 4 if kind == "decoder" else 0
    outside = tokens * EMBEDDING_HIDDEN * arch.hidden * act_bytes + LOGIT_SAVED_COPIES * logits
    adapter_saved = _adapter_saved_bytes(adapter_config, adapted, tokens, quantization is not None)
    if gradient_checkpointing:
        # Only each layer's input stays; one layer's activations are rebuilt at a time in the backward.
        layer_activations = arch.layers * tokens * arch.hidden * act_bytes + per_layer
    else:
        layer_activations = arch.layers * per_layer
    activations = layer_activations + outside + adapter_saved
    layer_transient = _backward_transient(on_cuda, per_layer, layer_activations + adapter_saved, arch.layers)
    transient = LOGIT_TRANSIENT_COPIES * logits + layer_transient
    runtime = 0 if on_cuda else RUNTIME_BYTES_CPU
    train_peak = weight_bytes + trainable_state + activations + transient + runtime

    init_peak = 0.0
    if adapter_config.method in NEEDS_GRADIENT_INIT:
        # The gradient pass runs on the unwrapped base with only the target weights requiring grad: the
        # base's activations (no adapter tensors), one target's weight gradient at a time, and (with
        # more than one batch) fp32 accumulators for every target in host memory (the CPU on a GPU run).
        targets = sum(d_in * d_out for d_in, d_out, _ in adapted)
        largest = max((d_in * d_out for d_in, d_out, _ in adapted), default=0)
        accumulators = 4 * targets if init_batches > 1 else 0
        base_activations = arch.layers * per_layer + outside
        init_transient = LOGIT_TRANSIENT_COPIES * logits + _backward_transient(
            on_cuda, per_layer, arch.layers * per_layer, arch.layers
        )
        init_peak = (
            weight_bytes
            - adapter_params * 4
            + base_activations
            + init_transient
            + 4 * largest
            + runtime
            + (0 if on_cuda else accumulators)
        )
        if on_cuda and accumulators:
            notes.append(f"LoRA-GA keeps {accumulators / GIB:.2f} GiB of fp32 gradient sums in host memory")
    peak = max(train_peak, init_peak)

    # Time: the step's FLOPs over the probed rates × efficiency.
    flops, block_flops = _step_flops(
        arch,
        adapter_config,
        adapted,
        batch_size,
        length,
        full,
        gradient_checkpointing,
        quantization is not None,
    )
    compute_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    if compute_dtype is None:
        compute_dtype = torch.float32 if dtype == "float32" else getattr(torch, dtype)
    if quantization is not None and not on_cuda:
        compute_dtype = torch.float32  # hyft dequantises 4-bit layers for the CPU GEMM (adapters.quantized)
    efficiency = STEP_EFFICIENCY["cuda" if on_cuda else "cpu"]
    groups = [layer_parts(layer, adapter_config, d_in).boft_group for d_in, _, layer in adapted]
    if matmul_rate is not None or on_cuda:
        if matmul_rate is None:
            matmul_rate = measure_matmul_rate(
                device, compute_dtype, min(tokens, 2048), arch.hidden, max(arch.intermediate, arch.hidden)
            )
        step_seconds = (flops + BLOCK_MATMUL_COST * block_flops) / (matmul_rate * efficiency)
    else:
        matmul_rate = measure_layer_rate(
            tokens, arch.hidden, max(arch.intermediate, arch.hidden), compute_dtype
        )
        step_seconds = flops / (matmul_rate * efficiency)
        if block_flops:
            block_rate = measure_block_rate(tokens, arch.hidden, max(g for g in groups if g))
            step_seconds += block_flops / (block_rate * efficiency)
        if eager_scores:
            # One pass forward and one backward per score; a checkpointed layer runs its forward twice.
            score_passes = 1.5 if gradient_checkpointing else 1.0
            scores = batch_size * arch.heads * length * length * arch.layers * score_passes
            step_seconds += scores / measure_score_rate(length, arch.attention_dropout)
    flops += block_flops
    return TrainingEstimate(
        trainable=trainable,
        total=total,
        weight_bytes=weight_bytes,
        trainable_state_bytes=trainable_state,
        activation_bytes=activations,
        transient_bytes=transient + runtime,
        init_peak_bytes=init_peak,
        peak_bytes=peak,
        flops_per_step=flops,
        matmul_rate=matmul_rate,
        step_seconds=step_seconds,
        device=device,
        notes=notes,
    )


def _backward_transient(on_cuda: bool, per_layer: float, saved: float, layers: int) -> float:
    """Bytes above the saved activations inside the backward (without the logits' buffers)."""
    if on_cuda:
        return BACKWARD_TRANSIENT_LAYERS_CUDA * per_layer
    return BACKWARD_TRANSIENT_SHARE_CPU * saved


def _quantized_bytes_per_weight(quantization: Any) -> float:
    """Bytes per weight of a bitsandbytes layer: 4-bit codes + one fp32 absmax per block of 64 (double
    quantization: an 8-bit absmax + one fp32 per 256 blocks); 8-bit: int8 + one fp32 scale per row,
    counted as per 4096 weights (rows are long)."""
    bits = getattr(quantization, "bits", None) or quantization["bits"]
    double = getattr(quantization, "double_quant", False)
    if bits == 4:
        return 0.5 + ((1 + 4 / 256) / 64 if double else 4 / 64)
    return 1 + 4 / 4096


def _activation_bytes_per_value(dtype: str, quantization: Any, mixed_precision: str) -> int:
    if mixed_precision in ("bf16", "fp16") or dtype in ("bfloat16", "float16"):
        return 2
    if quantization is not None:
        compute = getattr(quantization, "compute_dtype", None)
        return 4 if compute == "fp32" or (compute is None and dtype == "float32") else 2
    return 4


def _adapter_saved_bytes(
    adapter_config: Any, adapted: list[tuple[int, int, torch.nn.Module]], tokens: int, quantized: bool
) -> float:
    """What the adapters save beyond the base layer's own input (fp32 adapter tensors)."""
    saved = 0.0
    for d_in, _d_out, layer in adapted:
        parts = layer_parts(layer, adapter_config, d_in)
        if parts.lora_forward_rank:
            saved += tokens * parts.lora_forward_rank * 4  # the (T, r) or (T, 2r) product A·x
            if adapter_config.dropout > 0:  # the dropped input copy and its mask
                saved += tokens * d_in * (4 + 1)
        if parts.boft_group:
            saved += BOFT_SAVED_BLOCK_COPIES * d_in * parts.boft_group * 4
            if quantized:  # a packed W0 cannot be rotated: the rotated input (fp32) feeds the 4-bit GEMM
                saved += tokens * d_in * 4
        if parts.unitary:
            saved += tokens * d_in * 4  # the rotated copy of the input
    return saved


def _step_flops(
    arch: Architecture,
    adapter_config: Any,
    adapted: list,
    batch_size: int,
    length: int,
    full: bool,
    gradient_checkpointing: bool,
    quantized: bool = False,
) -> tuple[float, float]:
    """(GEMM FLOPs, BOFT block-matmul FLOPs) of one micro-batch's forward + backward."""
    tokens = batch_size * length
    # Forward: 2 FLOPs per weight per token; attention: QKᵀ and PV, 2·2·T·L·h per layer.
    forward = 2 * tokens * arch.token_linear_params + 2 * batch_size * arch.sequence_linear_params
    forward += 4 * tokens * length * arch.hidden * arch.layers
    # Backward: the input gradients of every GEMM (as many FLOPs as its forward); weight gradients only
    # when the base trains (full fine-tuning).
    backward = forward * (2 if full else 1)
    adapter = blocks = 0.0
    for d_in, d_out, layer in adapted:
        parts = layer_parts(layer, adapter_config, d_in)
        if parts.lora_forward_rank:
            # Forward x·Aᵀ·Bᵀ (rank 2r with LoRA-GA's frozen half); backward ∂x, ∂A, ∂B at rank r.
            adapter += 2 * tokens * (d_in + d_out) * (parts.lora_forward_rank + 2 * parts.lora_rank)
        if parts.boft_group:
            g = parts.boft_group
            # Rotating W0 (2·d_out·d_in·g; the T tokens instead on a packed base) in the forward; ∂x and
            # ∂R: two g-wide block matmuls over the tokens.
            blocks += (2 * tokens * d_in * g if quantized else 2 * d_out * d_in * g) + 2 * (
                2 * tokens * d_in * g
            )
        if parts.unitary:
            adapter += 3 * 2 * tokens * d_in * 2  # a 2×2-block rotation of the input, forward and backward
    recompute = forward if gradient_checkpointing else 0.0
    return forward + backward + adapter + recompute, blocks


# -- Rows and the table of ``hyft estimate`` --------------------------------------------------------------
def estimate_rows(config: RunConfig) -> list[dict]:
    """One row per cell, then one per search trial (``search/<model>__<task>__<method>/<point>/seed<s>``)."""
    from hyft.experiments.cells import plan_cells
    from hyft.experiments.search import grid_points, plan_searches, point_name

    rows = [
        _estimate_row(config, cell.cell_id, cell.model, cell.method, cell.task, cell.k_shot, config.train)
        for cell in plan_cells(config)
    ]
    for key in plan_searches(config):
        for point in grid_points(config, key.method):
            train = config.train.model_copy(update=point)
            for seed in config.search_seeds():
                rows.append(
                    _estimate_row(
                        config,
                        f"search/{key.key_id}/{point_name(point)}/seed{seed}",
                        key.model,
                        key.method,
                        key.task,
                        config.search_k_shot(),
                        train,
                    )
                )
    return rows


def _estimate_row(
    config: RunConfig, label: str, model_name: str, method: str, task_name: str, k_shot: int, train
) -> dict:
    from transformers import AutoConfig

    from hyft.models import resolve_model_path
    from hyft.tasks.registry import get_task

    task = get_task(task_name)
    languages = config.languages_for(task)
    entry = next(m for m in config.models if m.name == model_name)
    model_config = AutoConfig.from_pretrained(resolve_model_path(entry.name_or_path))
    if entry.kind == "encoder":
        model_config.num_labels = len(task.labels)
    batch, length = train.batch_size, config.data.max_length
    examples = k_shot * len(languages)
    steps = (
        0
        if k_shot == 0
        else train.max_steps or train.epochs * math.ceil(examples / (batch * train.grad_accum))
    )
    if k_shot == 0:  # zero-shot: no training; the model's parameters only
        total = sum(p.numel() for p in meta_model(model_config, entry.kind).parameters())
        return {
            "cell": label,
            "trainable": 0,
            "total": total,
            "memory_gib": 0.0,
            "step_s": 0.0,
            "steps": 0,
            "minutes": 0.0,
        }
    result = estimate_training(
        model_config,
        entry.kind,
        config.adapter_config(method),
        batch,
        length,
        dtype=entry.dtype,
        quantization=entry.quantization,
        mixed_precision=train.mixed_precision,
        gradient_checkpointing=train.gradient_checkpointing,
        init_batches=train.init_batches,
    )
    step_s = result.step_seconds * train.grad_accum
    return {
        "cell": label,
        "trainable": result.trainable,
        "total": result.total,
        "memory_gib": result.peak_bytes / GIB,
        "step_s": step_s,
        "steps": steps,
        "minutes": steps * step_s / 60,
        "notes": result.notes,
    }


def estimate_table(config: RunConfig) -> str:
    """The Markdown table ``hyft estimate`` prints."""
    rows = estimate_rows(config)
    lines = [
        "| cell | trainable params | total params | est. peak memory (GiB) | est. s/step | steps | "
        "est. train minutes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['cell']} | {row['trainable']:,} | {row['total']:,} | {row['memory_gib']:.2f} | "
            f"{row['step_s']:.2f} | {row['steps']} | {row['minutes']:.1f} |"
        )
    notes = sorted({note for row in rows for note in row.get("notes", [])})
    lines.append(
        f"\nTotal estimated training time: {sum(r['minutes'] for r in rows):.1f} min. Memory: peak of "
        "one process (CPU: RSS above the loaded libraries; GPU: allocated tensors), the LoRA-GA "
        "initialisation included (zero-shot cells train nothing: 0); time: this machine's speed, "
        "probed now, so a busy machine gives longer times. Formulas and accuracy: docs/estimate.md."
    )
    lines.extend(f"Note: {note}" for note in notes)
    return "\n".join(lines)
