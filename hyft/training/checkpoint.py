"""Step checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint holds the trainable tensors and adapter buffers (e.g. the hybrid's λ), the optimizer and
scheduler state, every RNG state, the data position and the history so far, so that resuming replays
the uninterrupted run exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hyft.adapters.layer import adapted_layers
from hyft.io import fsync_dir, fsync_tree
from hyft.training.seeding import rng_state, set_rng_state

STATE_FILE = "trainer_state.json"


def training_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus persistent adapter buffers (not the frozen base weights)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {}
    adapter_prefixes = [n + "." for n in adapted_layers(model)]
    for name, tensor in model.state_dict().items():
        in_adapter = any(
            name.startswith(p) and ".base_layer." not in name[len(p) - 1 :] for p in adapter_prefixes
        )
        if name in trainable or in_adapter:
            state[name] = tensor.detach().cpu().contiguous()
    return state


def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    raw = optimizer.state_dict()
    tensors, state_meta = {}, {}
    for index, values in raw["state"].items():
        state_meta[str(index)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                state_meta[str(index)][key] = value
    return tensors, {"state": state_meta, "param_groups": raw["param_groups"]}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["state"].items()}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: dict[str, int],
    history: dict[str, Any],
    keep: int = 1,
) -> Path:
    """Write ``directory/step-<N>`` atomically (a temp folder renamed) and prune older ones."""
    step_dir = directory / f"step-{position['step']:08d}"
    tmp = directory / f".tmp-step-{position['step']:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(training_state(model), str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _split_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng_tensors, rng_meta = rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    meta = {
        "position": position,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "rng": rng_meta,
        "history": history,
    }
    (tmp / STATE_FILE).write_text(json.dumps(meta))
    fsync_tree(tmp)  # the bytes are on disk before the rename makes the checkpoint visible
    shutil.rmtree(step_dir, ignore_errors=True)
    tmp.rename(step_dir)
    fsync_dir(directory)
    for old in sorted(directory.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return step_dir


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(p for p in directory.glob("step-*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def load_checkpoint(
    step_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Restore everything :func:`save_checkpoint` wrote; returns (position, history)."""
    meta = json.loads((step_dir / STATE_FILE).read_text())
    state = load_file(str(step_dir / "model.safetensors"))
    missing = [k for k in state if k not in model.state_dict()]
    if missing:
        raise ValueError(f"{step_dir}: checkpoint tensors {missing[:3]} do not exist in this model")
    model.load_state_dict(state, strict=False)
    optimizer.load_state_dict(
        _join_optimizer(load_file(str(step_dir / "optimizer.safetensors")), meta["optimizer"])
    )
    scheduler.load_state_dict(meta["scheduler"])
    set_rng_state(load_file(str(step_dir / "rng.safetensors")), meta["rng"])
    return meta["position"], meta["history"]
