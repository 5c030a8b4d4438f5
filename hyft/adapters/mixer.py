"""The hybrid's λ controller (methods.md §6.3): per-layer mixing weight from branch gradient norms.

λ is a buffer, never a Parameter: it is set under no-grad after the backward of step t and used by
the forward of step t+1, so no gradient can flow into it. Rules (``AdapterConfig.mixer``):

- ``paper``: λ = g_L / (g_L + g_B) on the raw norms. Because ∇A, ∇B scale with λ and ∇Q with μ = 1−λ,
  the odds λ/μ get multiplied by a/b at every update: λ runs to the clamp (positive feedback).
- ``descaled`` (default): divide each norm by its own branch weight first, ĝ_L = g_L / λ,
  ĝ_B = g_B / μ (the norm the branch would have at weight 1), then λ = ĝ_L / (ĝ_L + ĝ_B). The fixed
  point is a/(a+b) — "which branch has more signal" — instead of 0 or 1.
- ``fixed``: λ = ``fixed_lambda`` (ablations).
Both adaptive rules smooth the norms with an EMA (β), hold λ at ``lambda_init`` for a warm-up while the
EMA fills, clamp to [λ_min, λ_max] and skip non-finite steps. ``lambda_norm="rms"`` divides each norm
by √(its parameter count) first (LoRA and BOFT counts differ by 3–20×; L2 favours the bigger branch).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hyft.adapters.config import AdapterConfig

EPS = 1e-12


class LambdaController(nn.Module):
    """λ and its EMA state for one layer (all persistent buffers: they are saved with the adapter)."""

    def __init__(self, config: AdapterConfig, lora_count: int, rotation_count: int, device=None):
        super().__init__()
        self.config = config
        start = config.fixed_lambda if config.mixer == "fixed" else config.lambda_init
        self.register_buffer("mixing_weight", torch.tensor(float(start), device=device))
        self.register_buffer("ema_lora", torch.tensor(0.0, device=device))
        self.register_buffer("ema_rotation", torch.tensor(0.0, device=device))
        self.register_buffer("updates", torch.tensor(0, dtype=torch.long, device=device))
        self.lora_count = lora_count
        self.rotation_count = rotation_count

    @torch.no_grad()
    def update(self, lora_norm: torch.Tensor | float, rotation_norm: torch.Tensor | float) -> None:
        """Set λ for the next forward from this step's branch gradient norms (before clipping).

        Written without host synchronisation (no ``.item()``): on a GPU the controller stays on the device.
        """
        config = self.config
        if config.mixer == "fixed":
            return
        device = self.mixing_weight.device
        g_lora = torch.as_tensor(lora_norm, dtype=torch.float32, device=device)
        g_rot = torch.as_tensor(rotation_norm, dtype=torch.float32, device=device)
        finite = torch.isfinite(g_lora) & torch.isfinite(g_rot)
        g_lora, g_rot = torch.where(finite, g_lora, 0.0), torch.where(finite, g_rot, 0.0)
        if config.lambda_norm == "rms":
            g_lora = g_lora / math.sqrt(max(self.lora_count, 1))
            g_rot = g_rot / math.sqrt(max(self.rotation_count, 1))
        lam = self.mixing_weight
        if config.mixer == "descaled":
            g_lora = g_lora / lam.clamp_min(1e-3)
            g_rot = g_rot / (1 - lam).clamp_min(1e-3)
        beta = config.lambda_ema
        first = self.updates == 0
        ema_lora = torch.where(first, g_lora, beta * self.ema_lora + (1 - beta) * g_lora)
        ema_rot = torch.where(first, g_rot, beta * self.ema_rotation + (1 - beta) * g_rot)
        self.ema_lora.copy_(torch.where(finite, ema_lora, self.ema_lora))
        self.ema_rotation.copy_(torch.where(finite, ema_rot, self.ema_rotation))
        self.updates += finite.long()
        proposal = (self.ema_lora / (self.ema_lora + self.ema_rotation + EPS)).clamp(
            config.lambda_min, config.lambda_max
        )
        ready = finite & (self.updates > config.lambda_warmup_steps)
        self.mixing_weight.copy_(torch.where(ready, proposal, self.mixing_weight))

    def extra_repr(self) -> str:
        return f"mixer={self.config.mixer}, lambda={float(self.mixing_weight):.4f}"
