"""LoRA (and the frozen-init LoRA-GA form): y = W0 x + b + κ·s·[B(Ax) − B0(A0x)].

Plain LoRA has no B0/A0 (B starts at zero). LoRA-GA keeps its gradient-aligned init B0, A0 as frozen
buffers so that W0 is never mutated (methods.md §2.2); it saves as a standard rank-2r LoRA
(A' = [A; A0], B' = [B, −B0], α' = 2α) that PEFT loads on the untouched base model.
κ is the optional Frobenius norm cap (methods.md §1), computed under no-grad from the factors alone.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

from hyft.adapters.config import AdapterConfig
from hyft.adapters.layer import ADAPTER_DTYPE, AdaptedLinear, check_shape, is_plain_linear
from hyft.adapters.quantized import dequantized_weight


def lowrank_frobenius_norm(B: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """‖B A‖_F for B (d_out, k), A (k, d_in) via tr((BᵀB)(AAᵀ)), never forming B A: O(k²(d_in + d_out))."""
    gram = (B.T @ B) * (A @ A.T)
    return gram.sum().clamp_min(0).sqrt()


class LoraLinear(AdaptedLinear):
    """LoRA on one nn.Linear. ``A`` (r, d_in), ``B`` (d_out, r); optional frozen ``A0``, ``B0``."""

    method = "lora"

    def __init__(
        self,
        base_layer: nn.Linear,
        config: AdapterConfig,
        init: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        super().__init__(base_layer, config)
        r, device = config.r, base_layer.weight.device
        self.scaling = config.scaling
        self.frozen_init = init is not None or config.method in ("lora_ga", "hybrid")
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=device, dtype=ADAPTER_DTYPE))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=device, dtype=ADAPTER_DTYPE))
        if self.frozen_init:
            A0, B0 = (
                init if init is not None else (torch.zeros_like(self.lora_A), torch.zeros_like(self.lora_B))
            )
            self.register_buffer("lora_A0", A0.to(device, ADAPTER_DTYPE).clone(), persistent=True)
            self.register_buffer("lora_B0", B0.to(device, ADAPTER_DTYPE).clone(), persistent=True)
            with torch.no_grad():
                self.lora_A.copy_(self.lora_A0)
                self.lora_B.copy_(self.lora_B0)
        else:
            # PEFT's default: A Kaiming-uniform, B = 0, so the model is unchanged at init.
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.norm_cap = config.norm_cap
        if self.norm_cap is not None:
            w0_norm = dequantized_weight(base_layer).norm()  # one layer dequantised on a quantized base
            self.register_buffer("w0_norm", w0_norm, persistent=False)
        self.cap_active_steps = 0

    # -- forward -------------------------------------------------------------------------------
    def delta_scale(self) -> torch.Tensor | float:
        """κ·s: the LoRA scale times the norm-cap factor κ = min(1, ρ‖W0‖ / (s‖ΔW‖)), no-grad."""
        if self.norm_cap is None:
            return self.scaling
        with torch.no_grad():
            B, A = self.factors()
            delta_norm = self.scaling * lowrank_frobenius_norm(B, A)
            kappa = torch.clamp(self.norm_cap * self.w0_norm / (delta_norm + 1e-12), max=1.0)
            if self.training and bool(kappa < 1):
                self.cap_active_steps += 1
        return kappa * self.scaling

    def add_delta(
        self, result: torch.Tensor, x: torch.Tensor, scale: torch.Tensor | float, in_place: bool = False
    ) -> torch.Tensor:
        """``result + scale·[B(Ax) − B0(A0x)]``: result (..., d_out), x (..., d_in) → (..., d_out).

        The scale goes onto the (d_out, r) factor instead of the activations. With ``in_place``, an fp32
        2-D ``result`` that is not a view gets the last product accumulated into it (one ``addmm_``, no
        extra pass over (tokens, d_out)); only for outputs autograd has not saved, such as a plain
        ``nn.Linear``'s. In place on a view would be slower: its backward copies the whole gradient.
        The frozen-init form runs as one rank-2r product ([B, −B0] · [A; A0] x): x is read once.

        Under autocast, plain LoRA's products follow it (PEFT's behaviour); the frozen-init form runs in
        fp32 with autocast off, as methods.md §2.2 asks: BA and B0A0 are large and nearly cancel, and
        rounding each to bf16 would leave noise of their size (ζ²·s, ~8 at d_out = 4096) in the output.
        """
        with torch.autocast(device_type=x.device.type, enabled=False) if self.frozen_init else nullcontext():
            B, A = self.factors()
            hidden = self.dropout(x.to(ADAPTER_DTYPE)) @ A.T
            scaled_B = B * scale
            if result.dtype != ADAPTER_DTYPE:
                return result + (hidden @ scaled_B.T).to(result.dtype)
            if in_place and result.dim() == 2 and result._base is None:
                return result.addmm_(hidden, scaled_B.T)
            return result + hidden @ scaled_B.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not is_plain_linear(self.base_layer):  # other layers may save their output for backward
            return self.add_delta(self.base_layer(x), x, self.delta_scale())
        flat = x.reshape(-1, self.in_features)
        result = self.add_delta(self.base_layer(flat), flat, self.delta_scale(), in_place=True)
        return result.view(*x.shape[:-1], self.out_features)

    # -- merge / save --------------------------------------------------------------------------
    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B', A') with B'A' = BA − B0A0: the rank-2r form for LoRA-GA, (B, A) for plain LoRA."""
        if not self.frozen_init:
            return self.lora_B, self.lora_A
        return torch.cat([self.lora_B, -self.lora_B0], dim=1), torch.cat([self.lora_A, self.lora_A0], dim=0)

    def delta_weight(self) -> torch.Tensor:
        """κ·s·(BA − B0A0), (d_out, d_in) fp32."""
        B, A = self.factors()
        return (B @ A) * self.delta_scale()

    def merged_weight(self) -> torch.Tensor:
        return self.base_weight() + self.delta_weight()

    def lr_group(self, branch: str) -> str:
        # A branch that starts from LoRA-GA's (A0, B0) makes a full fine-tuning step at once and wants its
        # smaller LR (methods.md §2.4; docs/evidence/lr-defaults.md); a zero-initialised B does not.
        return "lora_ga" if branch == "lora" and self.frozen_init else branch

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"lora": [self.lora_A, self.lora_B]}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        B, A = self.factors()
        kappa_scale = self.delta_scale()
        # Fold the norm cap into B so a plain-LoRA loader (PEFT) reproduces the capped output.
        factor = kappa_scale / self.scaling if self.norm_cap is not None else 1.0
        return {"lora_A.weight": A.detach().contiguous(), "lora_B.weight": (B.detach() * factor).contiguous()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        r = self.config.r
        rank = 2 * r if self.frozen_init else r
        A = check_shape("lora_A.weight", state["lora_A.weight"], (rank, self.in_features))
        B = check_shape("lora_B.weight", state["lora_B.weight"], (self.out_features, rank))
        with torch.no_grad():
            self.lora_A.copy_(A[:r])
            self.lora_B.copy_(B[:, :r])
            if self.frozen_init:
                self.lora_A0.copy_(A[r:])
                self.lora_B0.copy_(-B[:, r:])
