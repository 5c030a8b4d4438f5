"""Peak memory of LoRA-GA's gradient estimate on an fp32, an NF4 and an int8 base (one process each).

    python bench/lora_ga_quantized.py            # writes bench/results/lora-ga-quantized-memory.md

A tiny random Llama (hidden 512, 4 layers) is saved once; each child process loads it one way, and the
estimate's window reports its peak memory (CUDA max allocated on a GPU, else the process's peak RSS
after a reset at the window start). ``before`` is the memory right before the estimate (model loaded).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, torch
from transformers import AutoModelForCausalLM
import hyft
from hyft.adapters.lora_ga import estimate_lora_ga_init
from hyft.adapters.quantized import prepare_quantized_model
from hyft.adapters.targeting import find_targets
from hyft.evaluation.footprint import FootprintMeter
from hyft.models import Quantization

path, kind = sys.argv[1], sys.argv[2]
device = "cuda" if torch.cuda.is_available() else "cpu"
options = {"dtype": torch.float32}
if kind != "fp32":
    q = Quantization(bits=4, compute_dtype="fp32") if kind == "nf4" else Quantization(bits=8)
    options.update(quantization_config=q.to_bitsandbytes(), device_map={"": 0} if device == "cuda" else "cpu")
model = AutoModelForCausalLM.from_pretrained(path, **options)
if kind == "fp32":
    model = model.to(device)
prepare_quantized_model(model)
generator = torch.Generator().manual_seed(0)
ids = torch.randint(0, 1000, (4, 128), generator=generator)
batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
meter = FootprintMeter(torch.device(device))
with meter:
    pass
before = meter.summary().baseline_memory_bytes
config = hyft.AdapterConfig(method="lora_ga", r=8, alpha=16)
_, report = estimate_lora_ga_init(model, find_targets(model, None), [batch], config)
print(json.dumps({"kind": kind, "device": device, "before": before, "peak": report.peak_memory_bytes,
                  "memory_kind": meter.summary().memory_kind}))
"""


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = LlamaConfig(
            hidden_size=512,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=8,
            vocab_size=1000,
            max_position_embeddings=256,
        )
        model = LlamaForCausalLM(config)
        linear = sum(
            m.weight.numel()
            for n, m in model.named_modules()
            if type(m).__name__ == "Linear" and n != "lm_head"
        )
        model.save_pretrained(tmp)
        for kind in ("fp32", "nf4", "int8"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, tmp, kind], capture_output=True, text=True, check=True
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mib = 2**20
    lines = [
        "# LoRA-GA gradient estimate: peak memory on quantized bases",
        "",
        f"Tiny random Llama: hidden 512, 4 layers, {linear / 1e6:.1f} M parameters in the 28 adapted "
        "linears (fp32 weights "
        f"{linear * 4 / mib:.0f} MiB); one batch of 4 × 128 tokens, r = 8. "
        "Produced by `python bench/lora_ga_quantized.py`.",
        "",
        "| base | device | memory kind | before the estimate (MiB) | peak in the estimate (MiB) "
        "| added (MiB) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['kind']} | {row['device']} | {row['memory_kind']} | {row['before'] / mib:.1f} | "
            f"{row['peak'] / mib:.1f} | {(row['peak'] - row['before']) / mib:.1f} |"
        )
    out = Path(__file__).parent / "results" / "lora-ga-quantized-memory.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
