"""LoRA, LoRA-GA and the Hybrid against PEFT's LoRA (and LoRA-GA init), on the anchor's configs.

Step time: every method is built on a copy of one base and timed round-robin in one process (median
of the timed rounds after warm-up, ratios to PEFT-LoRA from the same run). Memory: exact bytes saved
for backward in one step (deterministic; the memory target is judged on these). LoRA-GA init: a fresh
process per (implementation, model) measures the gradient pass + SVD wall time and the process's peak
RSS during the init window (``FootprintMeter``), hyft's streaming estimate against PEFT's
``preprocess_loraga``, both with the same number of batches.

Settings (``--settings fp32,bf16,ckpt,nf4``): the hybrid and PEFT-LoRA (``--methods``, default
``peft-lora,hyft-hybrid``) interleaved in one process per (model, setting), as above, with the base held
and stepped per ``harness.SETTINGS``: fp32, bf16 autocast, gradient checkpointing, an NF4 base (PEFT-LoRA
on it is QLoRA). The tables give ratios to PEFT-LoRA of the same run and are appended to the results
with the date, the load average and the command.

    .venv/bin/python bench/adapters.py   # all models, writes bench/results/adapters.md
    .venv/bin/python bench/adapters.py --models minilm --steps 3 --no-write
    OMP_NUM_THREADS=1 .venv/bin/python bench/adapters.py --settings fp32,bf16,ckpt,nf4 --threads 1   # appends
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from harness import (  # noqa: E402
    SETTINGS,
    SHAPES,
    TARGETS,
    build_base,
    environment_line,
    interleaved,
    make_batch,
    ratio_table,
    train_step,
)

RESULTS = Path(__file__).resolve().parent / "results" / "adapters.md"
SETTING_METHODS = ["peft-lora", "hyft-hybrid"]
METHODS = ["peft-lora", "hyft-lora", "hyft-lora-ga", "hyft-boft", "hyft-hybrid", "hyft-hybrid-unitary"]
UNITARY_TARGETS = {
    "minilm": ["attention.output.dense"],
    "bloom": ["self_attention.dense"],
    "llama": ["o_proj"],
}
INIT_BATCHES = 2


def builders(model_name: str) -> dict:
    """Per method, ``build(base, batch) -> wrapped model`` on the anchor's targets for ``model_name``."""
    import peft

    import hyft

    targets = TARGETS[model_name]
    task = "SEQ_CLS" if model_name == "minilm" else "CAUSAL_LM"
    hybrid = {
        "method": "hybrid",
        "r": 16,
        "alpha": 32,
        "boft_block_size": 8,
        "boft_n_butterfly_factor": 3,
        "target_modules": targets,
    }

    def with_init(settings):
        return lambda base, batch: hyft.wrap(base, hyft.AdapterConfig(**settings), init_batches=[batch])

    return {
        "peft-lora": lambda base, batch: peft.get_peft_model(
            base, peft.LoraConfig(task_type=task, r=16, lora_alpha=32, target_modules=targets)
        ),
        "hyft-lora": lambda base, batch: hyft.wrap(
            base, hyft.AdapterConfig(method="lora", r=16, alpha=32, target_modules=targets)
        ),
        "hyft-lora-ga": with_init({"method": "lora_ga", "r": 16, "alpha": 32, "target_modules": targets}),
        # The hybrid's BOFT branch alone (same b, m): with hyft-lora-ga it splits the hybrid's cost.
        "hyft-boft": lambda base, batch: hyft.wrap(
            base,
            hyft.AdapterConfig(
                method="boft", boft_block_size=8, boft_n_butterfly_factor=3, target_modules=targets
            ),
        ),
        "hyft-hybrid": with_init(hybrid),
        "hyft-hybrid-unitary": with_init({**hybrid, "unitary_modules": UNITARY_TARGETS[model_name]}),
    }


def init_probe(implementation: str, model_name: str) -> dict:
    """LoRA-GA init of one implementation in this (fresh) process: wall time and peak RSS of the window."""
    from hyft.evaluation.footprint import FootprintMeter

    base = build_base(model_name)
    base.train()
    batch = make_batch(model_name, base.config.vocab_size)
    targets = TARGETS[model_name]
    with FootprintMeter("cpu") as meter:
        start = time.perf_counter()
        if implementation == "hyft":
            import hyft

            hyft.wrap(
                base,
                hyft.AdapterConfig(method="lora_ga", r=16, alpha=32, target_modules=targets),
                init_batches=[batch] * INIT_BATCHES,
            )
        else:
            import peft

            task = "SEQ_CLS" if model_name == "minilm" else "CAUSAL_LM"
            config = peft.LoraConfig(
                task_type=task,
                r=16,
                lora_alpha=32,
                target_modules=targets,
                init_lora_weights="lora_ga",
                lora_ga_config=peft.LoraGAConfig(),
            )

            def train_step():
                for _ in range(INIT_BATCHES):
                    base(**batch).loss.backward()

            peft.preprocess_loraga(base, config, train_step)
            peft.get_peft_model(base, config)
        seconds = time.perf_counter() - start
    summary = meter.summary()
    return {
        "seconds": seconds,
        "peak_rss": summary.peak_memory_bytes,
        "baseline_rss": summary.baseline_memory_bytes,
    }


def train_probe(method: str, model_name: str, steps: int = 3) -> dict:
    """Training steps of one method in this (fresh) process: peak RSS of the window and its baseline."""
    from hyft.evaluation.footprint import FootprintMeter

    base = build_base(model_name)
    base.train()
    batch = make_batch(model_name, base.config.vocab_size)
    net = builders(model_name)[method](base, batch)
    net.train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    with FootprintMeter("cpu") as meter:
        for _ in range(steps):
            train_step(net, optimizer, batch)
    summary = meter.summary()
    return {"peak_rss": summary.peak_memory_bytes, "baseline_rss": summary.baseline_memory_bytes}


def median_probe(flag: str, value: str, model_name: str, repeats: int, key: str) -> dict:
    """Run this script's hidden probe ``flag value`` in ``repeats`` fresh processes;
    the run with the median ``key``."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, flag, value, "--models", model_name],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda run: run[key])
    return runs[len(runs) // 2]


def rss_table(models: list[str], methods: list[str], repeats: int) -> str:
    """Peak RSS while training, a fresh process per (model, method, repeat); median of the repeats."""
    lines = [
        f"### Peak RSS while training (fresh process per method, 3 steps; median of {repeats})",
        "",
        "| model | method | peak RSS MiB | × PEFT-LoRA | added in the window MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for model_name in models:
        figures = {}
        for method in methods:
            figures[method] = median_probe("--train-probe", method, model_name, repeats, "peak_rss")
        reference = figures.get("peft-lora")
        for method, fig in figures.items():
            # The ratio is on the whole peak: LoRA-GA's init has already grown the heap before the window
            # opens, so the growth inside the window understates what those methods need.
            added = fig["peak_rss"] - fig["baseline_rss"]
            ratio = f"{fig['peak_rss'] / reference['peak_rss']:.2f}" if reference else "-"
            lines.append(
                f"| {model_name} | {method} | {fig['peak_rss'] / 2**20:.0f} | {ratio} | {added / 2**20:.0f} |"
            )
    return "\n".join(lines) + "\n"


def init_table(models: list[str], repeats: int) -> str:
    """LoRA-GA initialisation of hyft and PEFT, a fresh process per (model, implementation, repeat)."""
    lines = [
        f"### LoRA-GA initialisation (fresh process each, {INIT_BATCHES} batches; median of {repeats})",
        "",
        "| model | implementation | init s | × PEFT | peak RSS in init MiB "
        "| added over baseline MiB | × PEFT (added) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model_name in models:
        figures = {}
        for implementation in ("peft", "hyft"):
            figures[implementation] = median_probe(
                "--init-probe", implementation, model_name, repeats, "seconds"
            )
        peft_fig = figures["peft"]
        for implementation, fig in figures.items():
            added = fig["peak_rss"] - fig["baseline_rss"]
            peft_added = peft_fig["peak_rss"] - peft_fig["baseline_rss"]
            lines.append(
                f"| {model_name} | {implementation} | {fig['seconds']:.2f} "
                f"| {fig['seconds'] / peft_fig['seconds']:.2f} | {fig['peak_rss'] / 2**20:.0f} "
                f"| {added / 2**20:.0f} | {added / max(peft_added, 1):.2f} |"
            )
    return "\n".join(lines) + "\n"


def settings_table(model_name: str, runs: dict[str, dict[str, dict]], reference: str) -> str:
    """One row per (setting, method) of ``runs`` (setting → :func:`harness.interleaved`'s figures), with
    ratios to ``reference`` in the same setting's run."""
    batch, length = SHAPES[model_name]
    lines = [
        f"### {model_name} (batch {batch} × {length}; ratios to {reference} in the same run)",
        "",
        "| setting | method | trainable params | step median s | × ref | saved for backward MiB | × ref "
        "| activations MiB | × ref |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, info in runs.items():
        ref = info[reference]
        for method, r in info.items():
            lines.append(
                f"| {setting} | {method} | {r['trainable']:,} | {r['median']:.3f} "
                f"| {r['median'] / ref['median']:.2f} | {r['saved'] / 2**20:.1f} "
                f"| {r['saved'] / ref['saved']:.3f} | {r['activations'] / 2**20:.1f} "
                f"| {r['activations'] / ref['activations']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def load_line() -> str:
    """The 1/5/15-minute load averages and the core count, for the record of a shared machine's state."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def run_settings(models: list[str], settings: list[str], methods: list[str], args: argparse.Namespace) -> str:
    """The settings section: every (model, setting) interleaved in its own run; returns the Markdown."""
    started, load_before = time.perf_counter(), load_line()
    sections = []
    for model_name in models:
        chosen = {name: build for name, build in builders(model_name).items() if name in methods}
        runs = {
            setting: interleaved(model_name, chosen, args.steps, args.warmup, setting) for setting in settings
        }
        sections.append(settings_table(model_name, runs, methods[0]))
        print(sections[-1], flush=True)
    command = "bench/adapters.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    legend = "\n".join(f"- `{name}`: {SETTINGS[name]}" for name in settings)
    header = (
        f"## Settings: bf16 autocast, gradient checkpointing, NF4 base ({datetime.date.today()})\n\n"
        f"`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} .venv/bin/python {command}`\n\n"
        f"{environment_line(args.threads, ('torch', 'transformers', 'peft', 'bitsandbytes'))}; {args.steps} "
        f"timed rounds after {args.warmup} warm-up, {' / '.join(methods)} interleaved (the order rotates "
        "every round), one process and run per (model, setting); medians; total "
        f"{time.perf_counter() - started:.0f} s. Machine at the start: {load_before}; at the end: "
        f"{load_line()}. Hybrid: r 16, α 32, BOFT b 8, m 3 (LoRA-GA init from one batch, before the "
        "setting's checkpointing is switched on).\n\n"
        f"{legend}\n"
    )
    return header + "\n" + "\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="minilm,bloom,llama")
    parser.add_argument(
        "--methods",
        help=f"default: {','.join(METHODS)}; with --settings {','.join(SETTING_METHODS)} "
        "(the first is the reference)",
    )
    parser.add_argument(
        "--settings",
        help=f"comma-separated of {','.join(SETTINGS)}: run the settings section "
        "(appended to the results) instead of the full fp32 report",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed rounds after warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init-repeats", type=int, default=3)
    parser.add_argument("--rss-repeats", type=int, default=3, help="fresh processes per method for peak RSS")
    parser.add_argument(
        "--rss-only", action="store_true", help="only the peak-RSS table (appended to the results)"
    )
    parser.add_argument("--init-probe", choices=["hyft", "peft"], help=argparse.SUPPRESS)
    parser.add_argument("--train-probe", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    if args.init_probe:
        print(json.dumps(init_probe(args.init_probe, models[0])))
        return
    if args.train_probe:
        print(json.dumps(train_probe(args.train_probe, models[0])))
        return
    started = time.perf_counter()
    if args.settings:
        settings = [s for s in args.settings.split(",") if s]
        unknown = [s for s in settings if s not in SETTINGS]
        if unknown:
            parser.error(f"unknown settings {unknown}; known: {list(SETTINGS)}")
        methods = [m for m in (args.methods or ",".join(SETTING_METHODS)).split(",") if m]
        report = run_settings(models, settings, methods, args)
        print(report)
        if not args.no_write:
            RESULTS.write_text(RESULTS.read_text().rstrip("\n") + "\n\n" + report)
        return
    methods = [m for m in (args.methods or ",".join(METHODS)).split(",") if m]
    if args.rss_only:
        table = rss_table(models, methods, args.rss_repeats)
        print(table)
        if not args.no_write:
            RESULTS.write_text(RESULTS.read_text() + "\n" + table)
        return
    sections = []
    for model_name in models:
        chosen = {name: build for name, build in builders(model_name).items() if name in methods}
        info = interleaved(model_name, chosen, args.steps, args.warmup)
        sections.append(ratio_table(model_name, info, "peft-lora"))
        print(sections[-1], flush=True)
    if args.init_repeats > 0:
        sections.append(init_table(models, args.init_repeats))
    if args.rss_repeats > 0:
        sections.append(rss_table(models, methods, args.rss_repeats))
    header = (
        f"# Adapters on CPU: hyft LoRA / LoRA-GA / Hybrid vs PEFT LoRA ({datetime.date.today()})\n\n"
        f"{environment_line(args.threads)}; {args.steps} timed rounds after {args.warmup} warm-up, "
        f"interleaved; shapes {SHAPES}; total {time.perf_counter() - started:.0f} s. Hybrid: r 16, α 32, "
        "BOFT b 8, m 3; hybrid-unitary adds the unitary adapter on the attention output projection.\n"
    )
    report = header + "\n" + "\n".join(sections)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)


if __name__ == "__main__":
    main()
