"""The Hybrid adapter (methods.md §6): a LoRA-GA branch and a BOFT branch on the same frozen W0.

    W_eff = W0 + λ·κ·s·(BA − B0A0) + μ·W0(Rᵀ − I),   μ = 1 − λ

computed with one base GEMM on a mixed input (§6.2): ``y = W0·x̃ + b + λ·κ·s·[B(Ax) − B0(A0x)]`` with
``x̃ = x + μ(Rᵀx − x)`` (``hybrid_mix="linear"``, the paper's mix) or ``x̃ = R(μQ)ᵀx`` (``"generator"``,
which keeps the BOFT part an exact rotation). W0 is never modified: Algorithm 2's ``W ← W + ΔW``
every step would re-add the cumulative update and un-freeze W0; adapters merge once, for export.

λ (one per layer) comes from :class:`hyft.adapters.mixer.LambdaController`, updated after each backward
by :meth:`after_backward`. Layers named by ``unitary_modules`` also get the structured unitary adapter
in front (``unitary_mode="add"``: ``W_eff·Ũᵀ``); with ``"replace"`` they get only the unitary adapter.
"""

from __future__ import annotations

import torch
from torch import nn

from hyft.adapters.boft import BoftLinear
from hyft.adapters.config import AdapterConfig
from hyft.adapters.layer import ADAPTER_DTYPE, AdaptedLinear, is_plain_linear
from hyft.adapters.lora import LoraLinear
from hyft.adapters.mixer import LambdaController
from hyft.adapters.registry import register_method
from hyft.adapters.targeting import matches_pattern

MIXER_KEYS = ("mixing_weight", "ema_lora", "ema_rotation", "updates")


def _detached_branch(branch: AdaptedLinear) -> AdaptedLinear:
    """Keep a branch's adapter tensors but not its own reference to the shared base layer."""
    branch.base_layer = None
    return branch


class HybridLinear(AdaptedLinear):
    """LoRA-GA (``lora``) + BOFT (``boft``) branches mixed by λ, optionally after a unitary adapter."""

    method = "hybrid"

    def __init__(
        self,
        base_layer: nn.Linear,
        config: AdapterConfig,
        name: str = "",
        init: tuple[torch.Tensor, torch.Tensor] | None = None,
        with_unitary: bool = False,
    ):
        super().__init__(base_layer, config)
        self.lora = _detached_branch(LoraLinear(base_layer, config, init))
        self.boft = _detached_branch(BoftLinear(base_layer, config, name))
        self.unitary = None
        if with_unitary:
            from hyft.adapters.unitary import UnitaryLinear

            self.unitary = _detached_branch(UnitaryLinear(base_layer, config, name))
        lora_count = sum(p.numel() for p in self.lora.branch_parameters()["lora"])
        rotation_count = sum(p.numel() for p in self.boft.branch_parameters()["rotation"])
        self.mixer = LambdaController(config, lora_count, rotation_count, device=base_layer.weight.device)
        self.mix = config.hybrid_mix

    @property
    def mixing_weight(self) -> torch.Tensor:
        """λ of this layer (0-d fp32 buffer, no gradient)."""
        return self.mixer.mixing_weight

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.mixer.mixing_weight
        mu = 1.0 - lam
        if self.unitary is not None:
            x = self.unitary.transform_input(x).to(x.dtype)
        mix = {"generator_scale": mu} if self.mix == "generator" else {"blend": mu}
        scale = lam * self.lora.delta_scale()
        operator = self.boft.input_operator(**mix)
        if operator.rotates_weight(self.base_layer):
            if isinstance(self.lora.dropout, nn.Identity):
                # One fused op: GEMM on the rotated W0 plus the low-rank path, sharing x and the backward.
                lora = self.lora
                return operator.linear(
                    x, self.base_layer, (lora.lora_A, lora.lora_B, lora.lora_A0, lora.lora_B0, scale)
                )
            return self.lora.add_delta(operator.linear(x, self.base_layer), x, scale)
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)  # 2-D, so that the LoRA product can accumulate in place
        result = self.base_layer(operator.apply(x).to(x.dtype))
        result = self.lora.add_delta(result, x, scale, in_place=is_plain_linear(self.base_layer))
        return result.view(*lead, self.out_features)

    # -- λ ---------------------------------------------------------------------------------------
    def lambda_branches(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(LoRA parameters, BOFT parameters): the two groups whose gradient norms set λ."""
        return self.lora.branch_parameters()["lora"], self.boft.branch_parameters()["rotation"]

    @torch.no_grad()
    def branch_gradient_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(g_LoRA, g_BOFT): L2 norms of the two branches' full gradients (zeros when absent).

        Under torch.distributed (DDP, FSDP1, FSDP2) the norms come from one all-reduce of the local
        squared norms (:func:`hyft.distributed.global_squared_norms`), so every rank gets the same values;
        :meth:`HyftModel.after_backward` does this for all layers in one call.
        """
        from hyft.distributed import global_squared_norms

        squares = global_squared_norms(self.lambda_branches(), self.mixer.mixing_weight.device)
        return squares[0].sqrt(), squares[1].sqrt()

    def after_backward(self) -> None:
        self.mixer.update(*self.branch_gradient_norms())

    # -- merge / save --------------------------------------------------------------------------
    def merged_weight(self) -> torch.Tensor:
        """W0 + μ(W0Rᵀ − W0) + λκs(BA − B0A0) (linear mix) or W0R(μQ)ᵀ + λκsΔW (generator), then ·Ũᵀ."""
        lam = self.mixer.mixing_weight.detach()
        mu = 1.0 - lam
        w0 = self.base_weight().to(ADAPTER_DTYPE)  # dequantised on a quantized base
        if self.mix == "generator":
            rotated = self.boft.rotate(w0, mu, transpose=True)
        else:
            rotated = w0 + mu * (self.boft.rotate(w0, transpose=True) - w0)
        merged = rotated + lam * self.lora.delta_weight()
        if self.unitary is not None:
            # The forward feeds x @ Ũ (per token Ũᵀx) to the hybrid, so W_eff = W_hybrid·Ũᵀ: U applied to
            # each row of W_hybrid (apply_unitary_rows), not Ũ on the right (transform_input computes W·Ũ).
            merged = self.unitary.apply_unitary_rows(merged)
        return merged

    def lr_group(self, branch: str) -> str:
        return self.lora.lr_group(branch) if branch == "lora" else branch

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        groups = {**self.lora.branch_parameters(), **self.boft.branch_parameters()}
        if self.unitary is not None:
            groups.update(self.unitary.branch_parameters())
        return groups

    def adapter_state(self) -> dict[str, torch.Tensor]:
        state = {**self.lora.adapter_state(), **self.boft.adapter_state()}
        state.update({f"hybrid_{k}": getattr(self.mixer, k).detach().clone() for k in MIXER_KEYS})
        if self.unitary is not None:
            state.update({f"unitary.{k}": v for k, v in self.unitary.adapter_state().items()})
        return state

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        self.lora.load_adapter_state({k: v for k, v in state.items() if k.startswith("lora_")})
        self.boft.load_adapter_state({k: v for k, v in state.items() if k.startswith("boft_")})
        with torch.no_grad():
            for key in MIXER_KEYS:
                getattr(self.mixer, key).copy_(state[f"hybrid_{key}"])
        if self.unitary is not None:
            self.unitary.load_adapter_state(
                {k[len("unitary.") :]: v for k, v in state.items() if k.startswith("unitary.")}
            )


def build_hybrid(base: nn.Linear, config: AdapterConfig, name: str, init) -> AdaptedLinear:
    """A HybridLinear, or (for ``unitary_modules`` layers) the unitary adapter instead of / on top of it."""
    selected = config.unitary_modules is not None and matches_pattern(name, config.unitary_modules)
    if selected and config.unitary_mode == "replace":
        from hyft.adapters.unitary import UnitaryLinear

        return UnitaryLinear(base, config, name)
    return HybridLinear(base, config, name, init, with_unitary=selected)


register_method("hybrid", build_hybrid)
