"""LoRA-GA initialisation (methods.md §2): stream the gradient of every target weight, then SVD it.

The gradient estimate G = (1/N) Σ_n ∂L_n/∂W0 streams per layer: a post-accumulate hook moves each
target weight's gradient off the device into an fp32 accumulator as soon as it is complete and frees
it, so device memory holds about the model, the activations and one layer's gradient. With a single
batch the layer's SVD init is taken inside the hook and nothing is kept. Under torch.distributed
(DDP/FSDP launches: the model is not wrapped yet, every rank holds the full W0) each rank runs a
contiguous share of the batches, the sums are all-reduced and every rank takes the same seeded SVD:
the same factors as one process on all the batches. Each batch's forward is seeded with seed + its
index, so dropout does not depend on which rank runs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from hyft.adapters.config import AdapterConfig
from hyft.adapters.quantized import dequantized_weight, is_quantized_linear, tap_weight_gradients
from hyft.distributed import all_reduce_sum_, rank_and_world
from hyft.footprint import FootprintMeter


@dataclass
class LoraGaInitReport:
    """What the gradient pass cost: wall time and peak memory
    (CUDA max allocated, else peak RSS of the pass)."""

    n_batches: int
    gradient_seconds: float
    svd_seconds: float
    peak_memory_bytes: int
    layers: int
    extra: dict = field(default_factory=dict)

    @property
    def init_seconds(self) -> float:
        return self.gradient_seconds + self.svd_seconds


def _scale(config: AdapterConfig, G: torch.Tensor, W0: torch.Tensor) -> float:
    """ζ of methods.md §2.1 step 4."""
    s = config.scaling
    if config.lora_ga_scale == "stable":
        return G.shape[0] ** 0.25 / math.sqrt(config.lora_ga_gamma)
    if config.lora_ga_scale == "gd":
        return 1.0 / s
    if config.lora_ga_scale == "unit":
        return 1.0
    sigma = torch.linalg.svdvals(W0.float())[: config.r]
    return float(torch.sqrt(sigma / s).mean())


def lora_ga_factors(
    G: torch.Tensor, W0: torch.Tensor, config: AdapterConfig, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient-aligned (A0 (r, d_in), B0 (d_out, r)) from the gradient G (d_out, d_in), in fp32.

    Reference: A0 = ζ·V[:, :r]ᵀ, B0 = ζ·U[:, r:2r] from a randomized SVD of G (q = min(4r, min(G.shape))).
    ``lora_ga_variant="paper_eq8"`` gives the paper's Eq. 8 split (UΣ^½ / Σ^½Vᵀ, one index set).
    """
    r = config.r
    G = G.float()
    if 2 * r > min(G.shape):
        raise ValueError(
            f"LoRA-GA needs 2r ≤ min(d_out, d_in); got r={r} for a weight of shape {tuple(G.shape)}"
        )
    q = min(4 * r, min(G.shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        U, S, V = torch.svd_lowrank(G.cpu(), q=q, niter=config.lora_ga_niter)
    if config.lora_ga_variant == "paper_eq8":
        root = S[:r].sqrt()
        return (root[:, None] * V[:, :r].T).contiguous(), (U[:, :r] * root[None, :]).contiguous()
    zeta = _scale(config, G, W0)
    direction = config.lora_ga_direction
    if direction == "ArB2r":
        a_idx, b_idx = torch.arange(r), torch.arange(r, 2 * r)
    elif direction == "A2rBr":
        a_idx, b_idx = torch.arange(r, 2 * r), torch.arange(r)
    elif direction == "ArBr":
        a_idx, b_idx = torch.arange(0, 2 * r, 2), torch.arange(1, 2 * r, 2)
    else:
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(2 * r, generator=generator)
        a_idx, b_idx = perm[:r], perm[r:]
    A0 = zeta * V[:, a_idx].T
    B0 = zeta * U[:, b_idx]
    return A0.contiguous(), B0.contiguous()


def estimate_lora_ga_init(
    model: nn.Module,
    target_names: list[str],
    batches: Iterable[Mapping[str, torch.Tensor]],
    config: AdapterConfig,
    seed: int = 0,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], LoraGaInitReport]:
    """Run the gradient pass on ``model`` (not yet wrapped) and return {layer name: (A0, B0)}.

    ``batches``: model-input dicts with labels (the model must return ``.loss``). Only the target weights
    get gradients; every requires_grad flag is restored afterwards and W0 is never modified.

    Quantized bases (bitsandbytes 4-/8-bit targets): G is the gradient on the dequantised weight Ŵ, per
    layer, taken as ``Σ_t g_tᵀ x_t`` from the layer's input x and output gradient g (exactly ∂L/∂Ŵ for
    ``y = x·Ŵᵀ + b``); no full-precision model is materialised: a layer's Ŵ is dequantised alone and
    transiently when its factors are taken (ζ's weight spectrum, ``lora_ga_scale="weightS"``, reads it).
    Peak memory on a tiny Llama: bench/results/lora-ga-quantized-memory.md.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("LoRA-GA needs init_batches: at least one batch of training inputs with labels")
    modules = dict(model.named_modules())
    weights = {name: modules[name].weight for name in target_names}
    # Quantized (bitsandbytes) weights are frozen integers: their gradient, on the dequantised weight, is
    # formed from each layer's input and output gradient (quantized.tap_weight_gradients), and W0 is
    # dequantised one layer at a time, only where ζ needs its spectrum.
    quantized = {name: modules[name] for name in target_names if is_quantized_linear(modules[name])}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    device = next(model.parameters()).device
    accumulators: dict[str, torch.Tensor] = {}
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    # Under torch.distributed each rank takes a contiguous share of the batches; the summed gradients are
    # all-reduced below, so every rank SVDs the one-process G (bit for bit with 2 ranks: a + b = b + a).
    total = len(batches)
    rank, world = rank_and_world()
    mine = list(enumerate(batches))[rank * total // world : (rank + 1) * total // world]
    single = total == 1 and world == 1
    svd_seconds = 0.0

    def consume(name: str, grad: torch.Tensor) -> None:
        nonlocal svd_seconds
        if single:
            start = time.perf_counter()
            factors[name] = lora_ga_factors(grad, dequantized_weight(modules[name]).cpu(), config, seed)
            svd_seconds += time.perf_counter() - start
        elif name in accumulators:
            accumulators[name] += grad
        else:
            accumulators[name] = grad.clone()

    def make_hook(name: str):
        def hook(param: torch.Tensor) -> None:
            grad = param.grad.detach().to("cpu", torch.float32)
            param.grad = None
            consume(name, grad)

        return hook

    handles = []
    meter = FootprintMeter(device)
    try:
        model.requires_grad_(False)
        for name, weight in weights.items():
            if name not in quantized:
                weight.requires_grad_(True)
                handles.append(weight.register_post_accumulate_grad_hook(make_hook(name)))
        handles.extend(tap_weight_gradients(model, quantized, consume))
        model.train()
        start = time.perf_counter()
        with meter, torch.random.fork_rng(devices=[]):
            for index, batch in tqdm(mine, desc="LoRA-GA gradient estimate", unit="batch", leave=False):
                torch.manual_seed(seed + index)  # per batch: its dropout masks do not depend on the rank
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                loss = model(**batch).loss
                if loss is None:
                    raise ValueError(
                        "LoRA-GA init batches must contain labels so that the model returns a loss"
                    )
                loss.backward()
        gradient_seconds = time.perf_counter() - start - svd_seconds
        peak = meter.summary().peak_memory_bytes
    finally:
        for handle in handles:
            handle.remove()
        for name, param in model.named_parameters():
            param.requires_grad_(flags[name])
            param.grad = None
        model.train(was_training)
    if not single:
        start = time.perf_counter()
        for name in target_names:
            grad = accumulators.pop(name, None)
            if grad is None:  # a rank without batches (fewer batches than ranks) adds zeros
                grad = torch.zeros(modules[name].out_features, modules[name].in_features, dtype=torch.float32)
            grad = all_reduce_sum_(grad) / total
            factors[name] = lora_ga_factors(grad, dequantized_weight(modules[name]).cpu(), config, seed)
        svd_seconds += time.perf_counter() - start
    factors = {name: (A0.to(device), B0.to(device)) for name, (A0, B0) in factors.items()}
    report = LoraGaInitReport(total, gradient_seconds, svd_seconds, peak, len(target_names))
    if world > 1:
        report.extra.update(world_size=world, local_batches=len(mine))
    return factors, report
