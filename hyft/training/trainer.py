"""The training loop: one readable function, built on ``accelerate`` (1 CPU, 1 GPU or N GPUs).

Per optimizer step: forward/backward over ``grad_accum`` micro-batches → per-layer gradient norms of
every adapter branch (before clipping) → ``model.after_backward()`` (the hybrid's λ update) → clip →
AdamW step → LR schedule. Every step is logged to ``progress.jsonl`` (loss, LR, norms, λ, ETA) and, with
``train.report_to``, to accelerate's trackers (TensorBoard, W&B, MLflow); checkpoints every N steps make the
same command resume where it stopped, bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from torch import nn
from tqdm.auto import tqdm

from hyft.adapters.layer import adapted_layers
from hyft.adapters.targeting import find_heads
from hyft.distributed import deepspeed_requested, global_squared_norms, process_state
from hyft.footprint import FootprintMeter
from hyft.io import atomic_write_text
from hyft.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from hyft.training.config import TrainConfig
from hyft.training.data import collate, epoch_order, micro_batches
from hyft.training.seeding import seed_everything


@dataclass
class TrainResult:
    """What a run produced: per-step and per-epoch history plus the footprint figures."""

    history: dict[str, list[dict[str, Any]]]
    step_time_median_s: float
    peak_memory_bytes: int
    trainable_parameters: int
    total_parameters: int
    steps: int
    extra: dict[str, Any] = field(default_factory=dict)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups, each at :meth:`TrainConfig.branch_lr`: one per adapter branch kind, as the layers
    declare it (:meth:`AdaptedLinear.lr_group`: lora, lora_ga, rotation, unitary), the task heads
    (``head``), the base weights under full fine-tuning (``full``), and anything else trainable (``other``,
    at ``lr``)."""
    assigned: dict[int, str] = {}
    for layer in adapted_layers(model).values():
        for branch, params in layer.branch_parameters().items():
            for p in params:
                assigned[id(p)] = layer.lr_group(branch)
    adapter_config = getattr(model, "adapter_config", None)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    modules_to_save = adapter_config.modules_to_save if adapter_config is not None else None
    for head in find_heads(base, modules_to_save):
        for p in base.get_submodule(head).parameters():
            assigned.setdefault(id(p), "head")
    rest = "full" if adapter_config is not None and adapter_config.method == "full" else "other"
    groups: dict[str, list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(assigned.get(id(p), rest), []).append(p)
    return [
        {"params": params, "lr": config.branch_lr(name), "name": name}
        for name, params in sorted(groups.items())
    ]


def make_accelerator(
    mixed_precision: str, log_with: Sequence[str] = (), project_dir: Path | None = None
) -> Accelerator:
    """accelerate's Accelerator for this run (``log_with``: its trackers, writing under ``project_dir``).
    accelerate keeps one process-wide state and refuses a second precision; in one process (a grid of cells,
    a test session) the state is reset so each run gets its own. Under a distributed launch every rank runs
    the same cells, and a clash is a real error: it is raised."""
    # ``cpu=True`` would silently turn off a DeepSpeed launch (``accelerate launch --use_deepspeed``), which
    # runs on CPU too (DeepSpeed's CPU accelerator, gloo): leave the device to accelerate then.
    deepspeed = deepspeed_requested()
    cpu = not torch.cuda.is_available() and not deepspeed
    if deepspeed:
        process_state()  # on CPU it needs gloo, chosen before the Accelerator starts the process state
    options: dict[str, Any] = {"cpu": cpu, "mixed_precision": mixed_precision}
    if log_with:
        options |= {"log_with": list(log_with), "project_dir": str(project_dir)}
    try:
        return Accelerator(**options)
    except ValueError as error:
        if "already been initialized" not in str(error) or PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**options)


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def configure_deepspeed(accelerator: Accelerator, config: TrainConfig) -> None:
    """Fill the DeepSpeed config's micro-batch, accumulation and clipping from ``config`` where it says
    ``auto`` or nothing (hyft forms its own micro-batches, so accelerate cannot read them from a dataloader);
    a DeepSpeed config file that sets a different value is an error that names both."""
    settings = accelerator.state.deepspeed_plugin.deepspeed_config
    wanted = {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "train_batch_size": config.batch_size * config.grad_accum * accelerator.num_processes,
        "gradient_clipping": float(config.max_grad_norm or 0.0),
    }
    for key, value in wanted.items():
        current = settings.get(key, "auto")
        if current == "auto":
            settings[key] = value
        elif current != value:
            raise ValueError(
                f"the DeepSpeed config sets {key}: {current!r} but the train config asks for {value!r} "
                f"(train.batch_size, train.grad_accum, train.max_grad_norm): set it to 'auto' there"
            )
    accelerator.gradient_accumulation_steps = config.grad_accum


def tracker_values(row: dict[str, Any]) -> dict[str, float]:
    """The scalars a logged step sends to the trackers: loss, LR, total gradient norm and the mean λ."""
    values = {"train/loss": row["loss"], "train/lr": row["lr"], "train/grad_norm": row["grad_norm"]}
    if row.get("lambda"):
        values["train/lambda_mean"] = statistics.fmean(row["lambda"].values())
    return values


def start_trackers(accelerator: Accelerator, config: TrainConfig) -> None:
    """``init_trackers`` with the scalar train settings as the run's hyper-parameters (TensorBoard's hparams
    take numbers, strings and booleans only)."""
    settings = {
        key: value
        for key, value in config.model_dump().items()
        if isinstance(value, bool | int | float | str)
    }
    accelerator.init_trackers(config.tracker_project, config=settings)


def is_collapsed(mean_loss: float, uniform_loss: float, tolerance: float) -> bool:
    """True when an epoch's mean loss sits at the loss of predicting every class equally (ln C)."""
    return abs(mean_loss - uniform_loss) <= tolerance * uniform_loss


def no_improvement(epochs: Sequence[dict[str, Any]], patience: int | None) -> bool:
    """Whether the last ``patience`` epochs' validation losses all failed to beat the best before them
    (every epoch's, also those before a resume: they are in the history)."""
    losses = [e["val_loss"] for e in epochs if e.get("val_loss") is not None]
    if patience is None or len(losses) <= patience:
        return False
    return min(losses[-patience:]) >= min(losses[:-patience])


def enable_gradient_checkpointing(model: nn.Module, reentrant: bool) -> None:
    """transformers' activation recomputation on the wrapped model. The reentrant variant needs an input
    that requires grad, or a frozen embedding cuts the graph: ``enable_input_require_grads`` adds it."""
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise ValueError(
            f"{type(model).__name__} has no gradient_checkpointing_enable (not a transformers model)"
        )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    if reentrant and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()


def warmup_then_decay(total_steps: int, config: TrainConfig) -> Callable[[int], float]:
    """The LR multiplier per optimizer step (for ``LambdaLR``): a linear warm-up over
    ``warmup_ratio × total_steps`` steps, then ``config.scheduler`` (constant, linear or cosine to 0)."""
    warmup = int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class BranchNorms:
    """Per-layer gradient norm of each adapter branch, computed in one fused call per step.

    The parameters are looked up at each step (FSDP2's ``fully_shard`` replaces them by DTensors in
    ``accelerator.prepare``); under torch.distributed the norms are those of the full gradients, the same
    on every rank, from one all-reduce (:func:`hyft.distributed.global_squared_norms`).
    """

    def __init__(self, model: nn.Module):
        self.layers = [
            (name.removeprefix("base_model."), layer) for name, layer in adapted_layers(model).items()
        ]

    def compute(self) -> dict[str, dict[str, float]]:
        keys: list[tuple[str, str]] = []
        groups: list[list[nn.Parameter]] = []
        for name, layer in self.layers:
            for branch, params in layer.branch_parameters().items():
                keys.append((name, branch))
                groups.append(params)
        if not groups:
            return {}
        squares = global_squared_norms(groups).cpu().tolist()
        result: dict[str, dict[str, float]] = {}
        for (layer, branch), square in zip(keys, squares, strict=True):
            result.setdefault(layer, {})[branch] = math.sqrt(square)
        return result


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, examples: Sequence[dict], batch_size: int, pad_token_id: int, device
) -> float:
    """Mean loss over ``examples`` (weighted by batch size), model in eval mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_token_id).items()}
        total += float(model(**batch).loss) * len(chunk)
        count += len(chunk)
    model.train(was_training)
    return total / max(count, 1)


def train(
    model: nn.Module,
    train_examples: Sequence[dict],
    config: TrainConfig,
    output_dir: str | Path | None = None,
    eval_examples: Sequence[dict] | None = None,
    pad_token_id: int = 0,
    resume: bool = True,
    stop_after_steps: int | None = None,
    show_progress: bool = True,
    uniform_loss: float | None = None,
) -> TrainResult:
    """Train ``model`` (a :class:`hyft.HyftModel` or any module returning ``.loss``) on tokenised examples.

    ``train_examples``: dicts as :func:`hyft.training.data.collate` takes them. ``output_dir`` gets
    ``progress.jsonl``, ``history.json`` and ``checkpoints/``; with ``resume`` the latest checkpoint is
    loaded first. ``stop_after_steps`` stops early after that global step (an interruption, for tests
    and time-boxed runs) after writing a checkpoint. ``uniform_loss`` (ln C for a C-way classifier) turns
    on collapse detection: an epoch whose mean loss stays within ``config.collapse_tolerance`` of it is
    flagged ``collapsed`` in the history and reported on stderr, never passed over silently.
    """
    out = Path(output_dir) if output_dir is not None else None
    if config.report_to and out is None:
        raise ValueError(
            "train.report_to needs an output_dir: the trackers write under <output_dir>/trackers"
        )
    accelerator = make_accelerator(
        config.mixed_precision, config.report_to, out / "trackers" if out else None
    )
    if config.report_to:
        start_trackers(accelerator, config)
    rank, world = accelerator.process_index, accelerator.num_processes
    seed_everything(config.seed)
    unwrapped = model
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay
    )
    batches_per_epoch = len(micro_batches(list(range(len(train_examples))), config.batch_size, rank, world))
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay(total_steps, config))
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model, reentrant=config.gradient_checkpointing_reentrant)
    if uses_deepspeed(accelerator):
        configure_deepspeed(accelerator, config)
    model, optimizer = accelerator.prepare(model, optimizer)
    step = OptimizerStep(
        model,
        unwrapped,
        accelerator,
        optimizer,
        scheduler,
        BranchNorms(unwrapped),
        train_examples,
        pad_token_id,
        config.max_grad_norm,
    )

    position = {"step": 0, "epoch": 0, "batch": 0}
    history: dict[str, list[dict[str, Any]]] = {"steps": [], "epochs": []}
    checkpoint_dir = out / "checkpoints" if out else None
    if uses_deepspeed(accelerator) and checkpoint_dir is not None:
        # ZeRO keeps each rank's part of the optimizer state (and under ZeRO-3 of the weights): a checkpoint
        # of the main process alone would resume the other ranks wrongly. Finished cells still resume.
        if resume and latest_checkpoint(checkpoint_dir) is not None:
            raise ValueError(
                f"{checkpoint_dir} holds a checkpoint, but a DeepSpeed run cannot resume from one: "
                "remove it or resume without DeepSpeed"
            )
        if accelerator.is_main_process:
            tqdm.write(
                "hyft: under DeepSpeed no mid-run checkpoints are written (resume is per finished cell)"
            )
        checkpoint_dir = None
    if checkpoint_dir is not None and resume and (found := latest_checkpoint(checkpoint_dir)) is not None:
        position, history = load_checkpoint(found, unwrapped, optimizer, scheduler)
    if out and accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    def checkpoint() -> None:
        if checkpoint_dir is not None and accelerator.is_main_process:
            save_checkpoint(
                checkpoint_dir, unwrapped, optimizer, scheduler, position, history, config.keep_checkpoints
            )
        accelerator.wait_for_everyone()

    model.train()
    bar = tqdm(
        total=total_steps,
        initial=position["step"],
        desc="train",
        unit="step",
        disable=not (show_progress and accelerator.is_main_process),
    )
    if config.early_stopping_patience is not None and not eval_examples and accelerator.is_main_process:
        tqdm.write(
            "hyft: train.early_stopping_patience is set but there are no validation rows "
            "(data.val_examples = 0): training runs to the end"
        )
    run_start = time.perf_counter()
    interrupted = early_stopped = False
    with FootprintMeter(accelerator.device) as meter:  # its window covers every step of this process
        while position["step"] < total_steps and not interrupted and not early_stopped:
            order = epoch_order(len(train_examples), config.seed, position["epoch"])
            epoch_batches = micro_batches(order, config.batch_size, rank, world)
            while position["batch"] < len(epoch_batches) and position["step"] < total_steps:
                group = epoch_batches[position["batch"] : position["batch"] + config.grad_accum]
                with meter.step():
                    row = step(group)
                position["step"] += 1
                position["batch"] += len(group)
                row = {
                    "step": position["step"],
                    "epoch": position["epoch"],
                    **row,
                    "step_time_s": meter.step_times_s[-1],
                }
                history["steps"].append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                if out and accelerator.is_main_process and position["step"] % config.log_every == 0:
                    _log_progress(out, row, total_steps, time.perf_counter() - run_start, bar)
                if config.report_to and position["step"] % config.log_every == 0:
                    accelerator.log(
                        tracker_values(row), step=position["step"]
                    )  # a no-op off the main process
                if stop_after_steps is not None and position["step"] >= stop_after_steps:
                    interrupted = True
                    break
                if config.checkpoint_every and position["step"] % config.checkpoint_every == 0:
                    checkpoint()
            if interrupted:
                break
            if position["batch"] >= len(epoch_batches):
                summary = summarise_epoch(
                    position["epoch"],
                    history["steps"],
                    meter,
                    uniform_loss,
                    config,
                    announce=accelerator.is_main_process,
                )
                if eval_examples:
                    summary["val_loss"] = evaluate_loss(
                        model, eval_examples, config.batch_size, pad_token_id, accelerator.device
                    )
                history["epochs"].append(summary)
                if config.report_to and summary.get("val_loss") is not None:
                    accelerator.log({"val/loss": summary["val_loss"]}, step=position["step"])
                position["epoch"] += 1
                position["batch"] = 0
                early_stopped = no_improvement(history["epochs"], config.early_stopping_patience)
                if early_stopped:
                    summary["early_stopped"] = True
                    if accelerator.is_main_process:
                        tqdm.write(
                            f"hyft: stopped early after epoch {summary['epoch']}: validation loss has not "
                            f"improved for {config.early_stopping_patience} epoch(s)"
                        )
    bar.close()
    if config.report_to:
        accelerator.end_training()  # flushes and closes the event files / runs
    checkpoint()  # the last step's state, also when interrupted (stop_after_steps): the rerun resumes there
    if out and accelerator.is_main_process:
        atomic_write_text(out / "history.json", json.dumps(history, indent=1))
    measured = meter.step_times_s[1:] or meter.step_times_s  # the first step pays one-off costs
    trainable = sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)
    return TrainResult(
        history=history,
        step_time_median_s=statistics.median(measured) if measured else float("nan"),
        peak_memory_bytes=meter.summary().peak_memory_bytes,
        trainable_parameters=trainable,
        total_parameters=sum(p.numel() for p in unwrapped.parameters()),
        steps=position["step"],
        extra={"stopped_early": interrupted, "early_stopped": early_stopped},
    )


@dataclass
class OptimizerStep:
    """One optimizer step, called with the micro-batches (lists of example indices) it accumulates over:
    forward/backward over each → per-branch gradient norms (before clipping: the hybrid's λ reads the raw
    norms) → ``after_backward`` (λ) → clip → AdamW step → schedule step. Returns the step's log row."""

    model: nn.Module  # as accelerate prepared it (DDP/FSDP wrapper, or the DeepSpeed engine)
    unwrapped: nn.Module  # the hyft model: λ, mixing weights
    accelerator: Accelerator
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    norms: BranchNorms
    examples: Sequence[dict]
    pad_token_id: int
    max_grad_norm: float | None

    def __call__(self, group: Sequence[Sequence[int]]) -> dict[str, Any]:
        device = self.accelerator.device
        step_loss = torch.zeros((), device=device)
        deepspeed = uses_deepspeed(self.accelerator)
        for index, ids in enumerate(group):
            batch = {
                k: v.to(device)
                for k, v in collate([self.examples[i] for i in ids], self.pad_token_id).items()
            }
            # Gradients are all-reduced only on the last micro-batch of the step.
            last = index == len(group) - 1
            if deepspeed:
                # The engine itself, not accelerator.backward: that one steps before λ reads the gradients.
                self.model.set_gradient_accumulation_boundary(last)
                loss = self.model(**batch).loss / len(group)
                self.model.backward(loss, scale_wrt_gas=False)
            else:
                with contextlib.nullcontext() if last else self.accelerator.no_sync(self.model):
                    loss = self.model(**batch).loss / len(group)
                    self.accelerator.backward(loss)
            step_loss += loss.detach()
        branch_norms = self.norms.compute()  # global norms: one all-reduce per step under torch.distributed
        self._after_backward(branch_norms)
        if deepspeed:
            # Clips at gradient_clipping (= max_grad_norm), steps AdamW, frees the gradient partitions.
            self.model.step()
            grad_norm = self.model.get_global_grad_norm() or 0.0
        else:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            grad_norm = self.accelerator.clip_grad_norm_(trainable, self.max_grad_norm or float("inf"))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        row = {
            "loss": float(self.accelerator.reduce(step_loss, "mean")),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "branch_grad_norms": branch_norms,
        }
        if hasattr(self.unwrapped, "mixing_weights") and (lam := self.unwrapped.mixing_weights()):
            row["lambda"] = lam
        return row

    def _after_backward(self, branch_norms: dict[str, dict[str, float]]) -> None:
        after_backward = getattr(self.unwrapped, "after_backward", None)
        if after_backward is None:
            return
        if "branch_norms" in inspect.signature(after_backward).parameters:
            after_backward(branch_norms=branch_norms)  # λ from the norms just computed, not a second pass
        else:
            after_backward()


def summarise_epoch(
    epoch: int,
    steps: Sequence[dict[str, Any]],
    meter: FootprintMeter,
    uniform_loss: float | None,
    config: TrainConfig,
    announce: bool,
) -> dict[str, Any]:
    """An epoch's history row: mean train loss and grad norm, time, peak memory so far and, with
    ``uniform_loss`` (ln C), whether the epoch collapsed to uniform predictions (said on stderr too)."""
    rows = [r for r in steps if r["epoch"] == epoch]
    summary: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": statistics.fmean(r["loss"] for r in rows) if rows else None,
        "grad_norm": statistics.fmean(r["grad_norm"] for r in rows) if rows else None,
        "epoch_time_s": sum(r["step_time_s"] for r in rows),
        "peak_memory_bytes": meter.current_peak_bytes(),
    }
    if uniform_loss is not None and summary["train_loss"] is not None:
        summary["collapsed"] = is_collapsed(summary["train_loss"], uniform_loss, config.collapse_tolerance)
        if summary["collapsed"] and announce:
            tqdm.write(
                f"hyft: epoch {epoch}: mean train loss {summary['train_loss']:.4f} is at the "
                f"uniform-prediction loss {uniform_loss:.4f}: nothing learned yet (if it stays there to the "
                "last epoch, check the learning rates: train.lr, lr_lora_ga, lr_full)"
            )
    return summary


def _log_progress(out: Path, row: dict[str, Any], total: int, elapsed: float, bar: tqdm) -> None:
    done = row["step"]
    rate = bar.format_dict.get("rate") or (done / elapsed if elapsed > 0 else None)
    remaining = (total - done) / rate if rate else None
    line = {
        **row,
        "total": total,
        "percent": round(100 * done / total, 2),
        "elapsed_s": round(elapsed, 3),
        "remaining_s": round(remaining, 3) if remaining is not None else None,
    }
    with (out / "progress.jsonl").open("a") as handle:
        handle.write(json.dumps(line) + "\n")
