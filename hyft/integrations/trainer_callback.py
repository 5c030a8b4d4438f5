"""``HyftCallback``: train a hyft adapter with ``transformers.Trainer`` or a TRL trainer (``SFTTrainer``, …).

What the callback does, and when (transformers' inner loop, checked on transformers 5.x):

    for each micro-batch: forward, backward       (no gradient sync except on the last one)
    [Trainer clips here when args.max_grad_norm > 0]
    on_pre_optimizer_step  ← HyftCallback: model.after_backward() (the hybrid's λ update), then the clip
    optimizer.step(); lr_scheduler.step(); zero_grad

``on_pre_optimizer_step`` is the first event after the last micro-batch's backward and the gradient
all-reduce, but transformers clips *before* it. hyft's λ reads the branch gradient norms before clipping
(the EMA of clipped norms is not the EMA of raw norms: the clip factor changes from step to step), so
with ``args.max_grad_norm > 0`` the callback takes the clip over: at ``on_train_begin`` it keeps the
value and sets ``args.max_grad_norm = 0`` (the Trainer then only measures and logs the same pre-clip
norm it would have logged), and at ``on_pre_optimizer_step`` it updates λ and then clips with the same
rule as ``torch.nn.utils.clip_grad_norm_`` on the global norm (DDP, FSDP1 and FSDP2 gradients through
:func:`hyft.distributed.global_squared_norms`). ``args.max_grad_norm`` is restored at ``on_train_end``.
That is the order of hyft's own loop (:func:`hyft.training.train`): norms → λ → clip → AdamW → schedule.

LoRA-GA's initialisation is not the callback's job: it happens in :func:`hyft.wrap`, which takes the
batches (``init_batches=``: any iterable of model-input dicts with labels — a list, or the first n
batches of a DataLoader built with the Trainer's collator, ``itertools.islice(loader, n)``) before the
Trainer is built, so the Trainer's optimizer is created on the initialised adapter. A method that needs
the init (``lora_ga``, ``hybrid``) refuses to wrap without batches, so a model cannot reach the Trainer
uninitialised.

Not supported: DeepSpeed (its engine clips and steps inside ``optimizer.step``; the callback refuses it)
and fp16 GradScaler training with clipping (the gradients are still loss-scaled at the event; the
callback refuses it — use bf16, or ``max_grad_norm=0``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


def _hyft_model(model: nn.Module | None) -> nn.Module:
    """The :class:`hyft.HyftModel` in ``model`` (itself, or the first module inside that is one)."""
    from hyft.adapters.model import HyftModel

    if model is None:
        raise ValueError("HyftCallback: the Trainer passed no model; give it one: HyftCallback(model)")
    if isinstance(model, HyftModel):
        return model
    for module in model.modules():
        if isinstance(module, HyftModel):
            return module
    raise ValueError(
        f"HyftCallback needs a hyft.HyftModel (from hyft.wrap or hyft.load); the Trainer's model "
        f"is a {type(model).__name__} with none inside"
    )


@torch.no_grad()
def clip_global_grad_norm_(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients so that their global norm is at most ``max_norm`` (the rule of
    ``torch.nn.utils.clip_grad_norm_``: factor ``min(1, max_norm / (norm + 1e-6))``);
    returns the norm before."""
    from hyft.distributed import global_squared_norms, local_gradient

    total = global_squared_norms([parameters])[0].sqrt()
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for param in parameters:
        if param.grad is None:
            continue
        grad, _ = local_gradient(param)
        if grad is not None:
            grad.mul_(factor.to(grad.device, grad.dtype))
    return total


class HyftCallback(TrainerCallback):
    """Runs ``model.after_backward()`` (the hybrid's λ update from the raw branch gradient norms) once per
    optimizer step, after the last micro-batch's backward and gradient sync, before clipping and the
    optimizer step. Usage::

        model = hyft.wrap(base, config, init_batches=batches)      # LoRA-GA init happens here
        trainer = Trainer(model=model, args=args, ..., callbacks=[HyftCallback()])

    ``model``: the :class:`hyft.HyftModel` to update; by default the Trainer's model (or the HyftModel
    inside it). ``take_over_clipping`` (default True): move the Trainer's gradient clipping after the λ
    update (module docstring); False leaves clipping to the Trainer, and λ then reads clipped norms.
    """

    def __init__(self, model: nn.Module | None = None, take_over_clipping: bool = True):
        self.model = model
        self.take_over_clipping = take_over_clipping
        self.max_grad_norm: float | None = None  # the clip this callback applies (taken from args)
        self._target: nn.Module | None = None

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        self._target = _hyft_model(self.model if self.model is not None else model)
        if getattr(args, "deepspeed", None):
            raise ValueError(
                "HyftCallback does not support DeepSpeed: its engine clips and steps inside "
                "optimizer.step, where no callback can run the λ update before the clip"
            )
        clip = args.max_grad_norm
        if self.take_over_clipping and clip is not None and clip > 0 and math.isfinite(clip):
            if args.fp16:
                raise ValueError(
                    "HyftCallback cannot clip fp16 (GradScaler) gradients at on_pre_optimizer_step: "
                    "they are still loss-scaled there; train in bf16, or set max_grad_norm=0"
                )
            self.max_grad_norm = float(clip)
            args.max_grad_norm = 0.0

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model = self._target if self._target is not None else _hyft_model(self.model or kwargs.get("model"))
        model.after_backward()
        if self.max_grad_norm is not None:
            clip_global_grad_norm_([p for p in model.parameters() if p.requires_grad], self.max_grad_norm)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.max_grad_norm is not None:
            args.max_grad_norm = self.max_grad_norm
            self.max_grad_norm = None
