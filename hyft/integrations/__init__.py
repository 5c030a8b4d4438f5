"""Integrations with the tools users already train with: ``transformers.Trainer`` and TRL trainers."""

from hyft.integrations.trainer_callback import HyftCallback, clip_global_grad_norm_

__all__ = ["HyftCallback", "clip_global_grad_norm_"]
