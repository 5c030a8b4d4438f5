"""Parameter-efficient adapters: LoRA, LoRA-GA, BOFT/OFT, unitary, hybrid; plus full fine-tuning."""

from hyft.adapters.config import AdapterConfig
from hyft.adapters.model import HyftModel, load, wrap

__all__ = ["AdapterConfig", "HyftModel", "load", "wrap"]
