"""GPU check (not a test): the adapters on CUDA with a bf16 base, against PEFT-LoRA on the same model.

1. Agreement: the hybrid's fused weight-side path (rotate W0, one GEMM) against its activation path
   (rotate the tokens), same parameters, on a bf16 and an fp32 base: loss and per-tensor gradients.
2. Cost: every method built on a copy of one Llama-shaped base (bf16 weights, adapters in fp32 as PEFT
   keeps them), timed round-robin with CUDA synchronised around each optimizer step (median of the
   timed rounds), and the step's peak CUDA memory above what the model holds. Ratios to PEFT-LoRA.

    python3 bench/gpu_adapters.py --out $OUT/gpu_adapters.md      # on the lent GPU machine
    .venv/bin/python bench/gpu_adapters.py --device cpu --tiny     # the script's own smoke run here
"""

from __future__ import annotations

import argparse
import copy
import datetime
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from adapters import builders  # noqa: E402
from harness import train_step  # noqa: E402

from hyft.adapters.input_operator import InputOperator  # noqa: E402

METHODS = ["peft-lora", "hyft-lora", "hyft-lora-ga", "hyft-boft", "hyft-hybrid"]
# (name, hidden, intermediate, layers, heads, batch, length): Llama-7B's layer shapes at the bottom.
SHAPES = [("llama-h2048", 2048, 5632, 8, 16, 8, 1024), ("llama-h4096", 4096, 11008, 4, 32, 4, 1024)]
TINY = [("llama-tiny", 256, 704, 2, 4, 4, 256)]


def build_base(hidden: int, intermediate: int, layers: int, heads: int, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
    )
    with torch.device(device):  # initialised where it runs: a CPU init of 1B parameters takes minutes
        return LlamaForCausalLM(config).to(dtype=dtype)


def make_batch(batch: int, length: int, device: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    ids = torch.randint(5, 32000, (batch, length), generator=generator).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def step(net, optimizer, batch: dict, device: str) -> float:
    """Seconds of one optimizer step, the device synchronised on both sides."""
    return train_step(net, optimizer, batch, torch.cuda.synchronize if device == "cuda" else None)


def loss_and_grads(net, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    net.zero_grad(set_to_none=True)
    loss = net(**batch).loss
    loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    return float(loss), grads


def agreement(shape: tuple, device: str, dtype: torch.dtype) -> str:
    """Weight-side against activation-side hybrid, same (perturbed) parameters: one table row."""
    name, hidden, intermediate, layers, heads, batch_size, length = shape
    base = build_base(hidden, intermediate, min(layers, 2), heads, device, dtype)
    batch = make_batch(batch_size, length, device)
    net = builders("llama")["hyft-hybrid"](base, batch)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # move off the identity init so every branch contributes
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn(p.shape, generator=generator).to(p.device, p.dtype))
    fused_loss, fused = loss_and_grads(net, batch)
    saved = InputOperator.rotates_weight
    InputOperator.rotates_weight = lambda operator, base: False  # the activation path everywhere
    try:
        plain_loss, plain = loss_and_grads(net, batch)
    finally:
        InputOperator.rotates_weight = saved
    cosines = [
        torch.nn.functional.cosine_similarity(fused[k].flatten(), plain[k].flatten(), dim=0).item()
        for k in plain
        if plain[k].norm() > 0
    ]
    relative = [((fused[k] - plain[k]).norm() / plain[k].norm()).item() for k in plain if plain[k].norm() > 0]
    weight_side = "yes" if batch_size * length >= max(hidden, intermediate) else "no"
    return (
        f"| {str(dtype).removeprefix('torch.')} | {name} (2 layers, {batch_size}×{length}) | {weight_side} | "
        f"{fused_loss:.6f} | {plain_loss:.6f} | {abs(fused_loss - plain_loss) / abs(plain_loss):.1e} | "
        f"{len(cosines)} | {min(cosines):.5f} | {statistics.median(relative):.1e} | {max(relative):.1e} |"
    )


def cost(shape: tuple, device: str, steps: int, warmup: int) -> list[dict]:
    name, hidden, intermediate, layers, heads, batch_size, length = shape
    proto = build_base(hidden, intermediate, layers, heads, device, torch.bfloat16)
    proto.train()
    batch = make_batch(batch_size, length, device)
    make = builders("llama")
    nets, info = {}, {}
    for method in METHODS:
        try:
            net = make[method](copy.deepcopy(proto), batch)
        except Exception as error:  # a method that cannot run here is reported, not hidden
            info[method] = {"error": f"{type(error).__name__}: {error}"[:200]}
            continue
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        nets[method] = (net, torch.optim.AdamW(params, lr=1e-4))
        info[method] = {
            "trainable": sum(p.numel() for p in params),
            "times": [],
            "adapter_dtype": str(params[0].dtype).removeprefix("torch."),
        }
    del proto
    for method, (net, optimizer) in nets.items():  # warm-up, then the step's peak above the resident
        for _ in range(warmup):
            step(net, optimizer, batch, device)
        if device == "cuda":
            torch.cuda.empty_cache()
            resident = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step(net, optimizer, batch, device)
            info[method]["peak"] = torch.cuda.max_memory_allocated() - resident
    methods = list(nets)
    for round_index in range(steps):
        shift = round_index % len(methods)
        for method in methods[shift:] + methods[:shift]:
            info[method]["times"].append(step(*nets[method], batch, device))
    rows = []
    for method in METHODS:
        row = {"shape": name, "method": method, **info[method]}
        if "times" in row:
            row["median"] = statistics.median(row["times"])
        rows.append(row)
    return rows


def render(rows: list[dict], agreement_rows: list[str], environment: str, steps: int, warmup: int) -> str:
    lines = [
        "# Adapters on a GPU (bf16 base)",
        "",
        f"- {environment}",
        f"- {steps} timed rounds after {warmup} warm-up steps per method, methods interleaved with the order "
        "rotated each round; CUDA synchronised around every optimizer step (zero_grad, forward, backward, "
        "λ update, AdamW). Peak = the step's peak CUDA memory above what the model and optimizer hold.",
        "",
        "## Hybrid: fused weight-side path against the activation path",
        "",
        "| base dtype | model | tokens ≥ every d_out (weight side taken) | loss fused | loss activation | "
        "Δ loss rel. | grad tensors | min cosine | median rel. diff | max rel. diff |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *agreement_rows,
        "",
    ]
    for shape in dict.fromkeys(r["shape"] for r in rows):
        spec = next(s for s in SHAPES + TINY if s[0] == shape)
        group = [r for r in rows if r["shape"] == shape]
        ref = next(r for r in group if r["method"] == "peft-lora")
        lines += [
            f"## {shape}: hidden {spec[1]}, intermediate {spec[2]}, {spec[3]} layers, batch {spec[5]} × "
            f"{spec[6]} tokens",
            "",
            "| method | trainable params | adapter dtype | step median ms | × PEFT-LoRA | step peak MiB "
            "| × PEFT-LoRA |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for r in group:
            if "error" in r:
                lines.append(f"| {r['method']} | – | – | – | – | – | failed: {r['error']} |")
                continue
            peak = f"{r['peak'] / 2**20:,.0f} | {r['peak'] / ref['peak']:.2f}" if "peak" in r else "– | –"
            lines.append(
                f"| {r['method']} | {r['trainable']:,} | {r['adapter_dtype']} | {1e3 * r['median']:.1f} | "
                f"{r['median'] / ref['median']:.2f} | {peak} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer toy model (smoke run of the script)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "gpu_adapters.md"))
    args = parser.parse_args()
    import peft
    import transformers

    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    environment = (
        f"{datetime.date.today()}; {gpu}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, peft {peft.__version__}"
    )
    print(environment, flush=True)
    shapes = TINY if args.tiny else SHAPES
    agreement_rows = [agreement(shapes[0], args.device, dtype) for dtype in (torch.bfloat16, torch.float32)]
    print("\n".join(agreement_rows), flush=True)
    rows = []
    for shape in shapes:
        rows += cost(shape, args.device, args.steps, args.warmup)
        text = render(rows, agreement_rows, environment, args.steps, args.warmup)
        Path(args.out).write_text(
            text + "\n", encoding="utf-8"
        )  # written after each shape: a timeout keeps it
        print(text, flush=True)


if __name__ == "__main__":
    main()
