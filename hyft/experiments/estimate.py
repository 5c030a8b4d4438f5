"""``hyft estimate``: trainable parameters, memory and time per cell, from the model config alone.

Parameters are exact (the adapters are built on a meta-device copy of the model: no weights load).
Memory = weights + (parameter + gradient + two AdamW moments) for trainable tensors + activations,
with activations ≈ batch · length · hidden · layers · 34 bytes (fp32; the usual transformer figure
for saved activations without recomputation). Time = 6 · total parameters · tokens per step over an
assumed throughput (50 GFLOP/s per CPU core thread, 200 TFLOP/s on a GPU): an order of magnitude,
not a promise. Compare with the measured figures the report prints after a run.
"""

from __future__ import annotations

import math

import torch

from hyft.experiments.config import RunConfig

ACTIVATION_BYTES_PER_UNIT = 34


def _meta_model(entry, num_labels):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from hyft.models import resolve_model_path

    model_config = AutoConfig.from_pretrained(resolve_model_path(entry.name_or_path))
    if entry.kind == "encoder":
        model_config.num_labels = num_labels
    with torch.device("meta"):
        factory = AutoModelForSequenceClassification if entry.kind == "encoder" else AutoModelForCausalLM
        return factory.from_config(model_config), model_config


def count_adapter_parameters(model, adapter_config) -> tuple[int, int]:
    """(trainable, total) after putting ``adapter_config`` on a meta-device ``model`` (no gradient pass)."""
    from hyft.adapters.model import wrap
    from hyft.adapters.registry import NEEDS_GRADIENT_INIT

    if adapter_config.method in NEEDS_GRADIENT_INIT:
        # The init only sets values; shapes (and so counts) do not depend on the gradient.
        adapter_config = adapter_config.model_copy(update={"method": adapter_config.method})
        wrapped = _wrap_without_gradient(model, adapter_config)
    else:
        wrapped = wrap(model, adapter_config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in wrapped.parameters())


def _wrap_without_gradient(model, adapter_config):
    from hyft.adapters.model import HyftModel, install_layers
    from hyft.adapters.targeting import find_heads, find_targets

    targets = find_targets(model, adapter_config.target_modules, adapter_config.exclude_modules)
    heads = find_heads(model, adapter_config.modules_to_save)
    targets = [name for name in targets if not any(name == h or name.startswith(h + ".") for h in heads)]
    install_layers(model, adapter_config, targets, heads)  # default init: shapes do not need the gradient
    return HyftModel(model, adapter_config)


def estimate_rows(config: RunConfig) -> list[dict]:
    """One row per cell, then one per search trial (``search/<model>__<task>__<method>/<point>/seed<s>``)."""
    from hyft.experiments.cells import plan_cells
    from hyft.experiments.search import grid_points, plan_searches, point_name

    rows = [_estimate_row(config, cell.cell_id, cell.model, cell.method, cell.task, cell.k_shot, config.train)
            for cell in plan_cells(config)]
    for key in plan_searches(config):
        for point in grid_points(config, key.method):
            train = config.train.model_copy(update=point)
            for seed in config.search_seeds():
                rows.append(_estimate_row(config, f"search/{key.key_id}/{point_name(point)}/seed{seed}", key.model,
                                          key.method, key.task, config.search_k_shot(), train))
    return rows


def _estimate_row(config: RunConfig, label: str, model_name: str, method: str, task_name: str, k_shot: int,
                  train) -> dict:
    from hyft.tasks.registry import get_task

    task = get_task(task_name)
    languages = config.languages_for(task)
    entry = next(m for m in config.models if m.name == model_name)
    model, model_config = _meta_model(entry, len(task.labels))
    total = sum(p.numel() for p in model.parameters())
    if k_shot == 0:
        trainable = 0
    else:
        trainable, total = count_adapter_parameters(model, config.adapter_config(method))
    bytes_per = {"float32": 4, "bfloat16": 2, "float16": 2}[entry.dtype]
    if entry.quantization is not None:  # rough: every weight at bits/8 plus an fp32 scale per 64
        bytes_per = entry.quantization.bits / 8 + 4 / 64
    hidden = getattr(model_config, "hidden_size", 0)
    layers = getattr(model_config, "num_hidden_layers", getattr(model_config, "n_layer", 0))
    batch, length = train.batch_size, config.data.max_length
    activations = batch * length * hidden * layers * ACTIVATION_BYTES_PER_UNIT
    memory = total * bytes_per + trainable * 16 + activations
    examples = k_shot * len(languages)
    steps = train.max_steps or train.epochs * math.ceil(examples / (batch * train.grad_accum))
    if k_shot == 0:
        steps = 0
    flops_per_step = 6 * total * batch * length * train.grad_accum
    throughput = 200e12 if torch.cuda.is_available() else 50e9 * torch.get_num_threads()
    return {"cell": label, "trainable": trainable, "total": total,
            "memory_gib": memory / 2**30, "steps": steps, "minutes": steps * flops_per_step / throughput / 60}


def estimate_table(config: RunConfig) -> str:
    rows = estimate_rows(config)
    lines = ["| cell | trainable params | total params | est. peak memory (GiB) | steps | est. train minutes |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['cell']} | {row['trainable']:,} | {row['total']:,} | {row['memory_gib']:.2f} | "
                     f"{row['steps']} | {row['minutes']:.1f} |")
    lines.append(f"\nTotal estimated training time: {sum(r['minutes'] for r in rows):.1f} min "
                 "(rough: see hyft/experiments/estimate.py for the formula).")
    return "\n".join(lines)
