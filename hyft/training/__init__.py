"""Training: the loop (``train``), its config, checkpoints, seeding and batching."""

from hyft.training.config import TrainConfig
from hyft.training.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
