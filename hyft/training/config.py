"""``TrainConfig``: the optimisation settings of one training run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Optimiser, schedule, batching, logging and checkpoint settings (one run = one cell)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(16, ge=1, description="Examples per device per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(2e-4, gt=0, description="Learning rate of adapter parameters (and of full fine-tuning).")
    lr_lora: float | None = Field(None, gt=0, description="LR of LoRA/LoRA-GA branches (η_LoRA); None: lr.")
    lr_rotation: float | None = Field(None, gt=0, description="LR of BOFT/OFT/unitary parameters (η_BOFT); None: lr.")
    lr_head: float | None = Field(None, gt=0, description="LR of a trained task head; None: lr.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with linear LR warm-up.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="LR decay after warm-up.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the total gradient norm; None: no clipping.")
    seed: int = Field(0, description="Seeds Python, NumPy, torch and the data order.")
    log_every: int = Field(1, ge=1, description="Write a progress.jsonl row every N optimizer steps.")
    checkpoint_every: int | None = Field(None, ge=1, description="Checkpoint every N optimizer steps; None: at the end only.")
    keep_checkpoints: int = Field(1, ge=1, description="How many recent checkpoints to keep on disk.")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="Autocast dtype for the base model.")
    init_batches: int = Field(4, ge=1, description="Batches for the LoRA-GA gradient estimate (N in methods.md §2).")
