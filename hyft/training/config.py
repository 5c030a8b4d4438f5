"""``TrainConfig``: the optimisation settings of one training run."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# One `lr` suits every method (issue 13; measured in docs/evidence/lr-defaults.md): LoRA-GA's init makes
# its first step follow the full gradient's top singular directions with both factors non-zero, so the same
# Adam LR moves W several times further than LoRA's (B0 = 0) does: at LoRA's 1e-3 it collapsed to chance on
# XNLI, at a quarter of it it learns (methods.md §2.4); full fine-tuning moves every weight and wants ~1/20.
LORA_GA_LR_RATIO = 0.25
FULL_LR_RATIO = 0.05

Tracker = Literal["tensorboard", "wandb", "mlflow"]
# The module each tracker needs (accelerate's own availability checks look for the same ones).
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class TrainConfig(BaseModel):
    """Optimiser, schedule, batching, logging and checkpoint settings (one run = one cell)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1, description="Passes over the training data.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_size: int = Field(16, ge=1, description="Examples per device per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(
        2e-4,
        gt=0,
        description="The one learning rate to set: adapters (LoRA, BOFT/OFT, unitary) train at lr; LoRA-GA "
        f"branches at lr × {LORA_GA_LR_RATIO} and full fine-tuning at lr × {FULL_LR_RATIO} unless set below.",
    )
    lr_lora: float | None = Field(None, gt=0, description="LR of plain LoRA branches; None: lr.")
    lr_lora_ga: float | None = Field(
        None,
        gt=0,
        description=f"LR of LoRA-GA branches (lora_ga, the hybrid's η_LoRA); None: lr × {LORA_GA_LR_RATIO}.",
    )
    lr_rotation: float | None = Field(
        None, gt=0, description="LR of BOFT/OFT/unitary parameters (η_BOFT); None: lr."
    )
    lr_full: float | None = Field(
        None, gt=0, description=f"LR of every base weight under full fine-tuning; None: lr × {FULL_LR_RATIO}."
    )
    lr_head: float | None = Field(None, gt=0, description="LR of a trained task head; None: lr.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with linear LR warm-up.")
    scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="LR decay after warm-up."
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the total gradient norm; None: no clipping."
    )
    seed: int = Field(0, description="Seeds Python, NumPy, torch and the data order.")
    log_every: int = Field(1, ge=1, description="Write a progress.jsonl row every N optimizer steps.")
    report_to: list[Tracker] = Field(
        default_factory=list,
        description="Experiment trackers fed through accelerate at every logged step (loss, lr, grad_norm, λ "
        "mean): tensorboard (event files under <train dir>/trackers/), wandb, mlflow; pip install "
        "'hyft[trackers]' for tensorboard. Off by default.",
    )
    tracker_project: str = Field(
        "hyft",
        min_length=1,
        description="Project name given to the trackers (wandb "
        "project, mlflow experiment, TensorBoard sub-folder).",
    )
    checkpoint_every: int | None = Field(
        None, ge=1, description="Checkpoint every N optimizer steps; None: at the end only."
    )
    keep_checkpoints: int = Field(1, ge=1, description="How many recent checkpoints to keep on disk.")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast dtype for the base model."
    )
    init_batches: int = Field(
        4, ge=1, description="Batches for the LoRA-GA gradient estimate (N in methods.md §2)."
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward (transformers' "
        "switch): less memory, ~30 % more time.",
    )
    gradient_checkpointing_reentrant: bool = Field(
        False, description="Use torch's reentrant checkpoint (older models); default: non-reentrant."
    )
    collapse_tolerance: float = Field(
        0.01,
        ge=0,
        description="An epoch whose mean train loss is within this share of the uniform-prediction loss "
        "(ln C for C classes) is reported as a collapse: the model predicts nothing.",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop when the per-epoch validation loss has not improved on its best for this many "
        "epochs (needs validation rows, data.val_examples > 0); the last weights "
        "are kept. None: never stop early.",
    )

    @field_validator("report_to")
    @classmethod
    def _trackers_installed(cls, trackers: list[str]) -> list[str]:
        if len(set(trackers)) != len(trackers):
            raise ValueError(f"report_to repeats a tracker: {trackers}")
        missing = [name for name in trackers if importlib.util.find_spec(TRACKER_MODULES[name]) is None]
        if missing:
            raise ValueError(
                f"report_to names {', '.join(missing)}, but the package is not installed: "
                f"pip install {' '.join(TRACKER_MODULES[name] for name in missing)} (tensorboard also "
                "comes with pip install 'hyft[trackers]'), or remove it from train.report_to"
            )
        return trackers

    def branch_lr(self, group: str) -> float:
        """The learning rate of one parameter group: lora, lora_ga, rotation, unitary, full, head."""
        explicit = {
            "lora": self.lr_lora,
            "lora_ga": self.lr_lora_ga,
            "rotation": self.lr_rotation,
            "unitary": self.lr_rotation,
            "full": self.lr_full,
            "head": self.lr_head,
        }.get(group)
        if explicit is not None:
            return explicit
        if group == "lora_ga":
            return self.lr * LORA_GA_LR_RATIO
        if group == "full":
            return self.lr * FULL_LR_RATIO
        return self.lr
