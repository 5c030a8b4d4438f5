"""``AdapterConfig``: every adapter method's settings in one validated model (PEFT field names).

Every numeric convention that changes what a saved adapter means (Cayley sign, complex pairing,
LoRA-GA direction and scale, λ rule) is a field here, so it is written into ``adapter_config.json``
and checked when the adapter is loaded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["lora", "lora_ga", "full", "boft", "oft", "unitary", "hybrid"]


class AdapterConfig(BaseModel):
    """Settings of one adapter. ``method`` picks the layer type; fields of other methods are ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Method = Field("lora", description="lora | lora_ga | full | boft | oft | unitary | hybrid")
    target_modules: list[str] | str | None = Field(
        None,
        description="Module names to adapt: a list of exact names or name suffixes (PEFT style), or one "
        "regex matched against the full dotted name; 'all-linear' for every nn.Linear except the output "
        "head; None uses the architecture's default.",
    )
    exclude_modules: list[str] | str | None = Field(None, description="Names or regex never adapted.")
    modules_to_save: list[str] | None = Field(
        None,
        description="Whole modules trained and saved besides the adapters (e.g. a classification head). "
        "None: the task head ('classifier', 'score') when the model has one.",
    )

    # LoRA (methods.md §1)
    r: int = Field(16, ge=1, description="LoRA rank. Higher: more capacity and memory.")
    alpha: float = Field(32.0, gt=0, description="LoRA scaling numerator: s = alpha / r (rsLoRA: alpha/√r).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling s = alpha / sqrt(r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input (LoRA branch).")
    norm_cap: float | None = Field(
        None,
        gt=0,
        description="ρ in ‖ΔW_LoRA‖_F ≤ ρ‖W0‖_F, enforced in the forward (methods.md §1); None: no cap.",
    )

    # LoRA-GA (methods.md §2)
    lora_ga_direction: Literal["ArB2r", "A2rBr", "ArBr", "random"] = Field(
        "ArB2r", description="How the top-2r singular vectors are split between A0 and B0."
    )
    lora_ga_scale: Literal["stable", "gd", "unit", "weightS"] = Field(
        "stable", description="ζ: stable = d_out^(1/4)/√γ; gd = 1/s; unit = 1; weightS = reference's."
    )
    lora_ga_gamma: float = Field(16.0, gt=0, description="γ of the stable scale.")
    lora_ga_niter: int = Field(4, ge=0, description="Power iterations of the randomized SVD.")
    lora_ga_variant: Literal["reference", "paper_eq8"] = Field(
        "reference",
        description="reference = LoRA-GA as published in code; paper_eq8 = the paper's Eq. 8 "
        "(UΣ^½, VΣ^½ from one index set), kept only as a named ablation: it aligns worse with the gradient.",
    )

    # BOFT / OFT (methods.md §3)
    boft_block_size: int | None = Field(None, ge=2, description="Block size b (give this or boft_block_num).")
    boft_block_num: int | None = Field(None, ge=1, description="Number of blocks d_in/b.")
    boft_n_butterfly_factor: int = Field(1, ge=1, description="Butterfly depth m (paper: 3). OFT is m = 1.")
    boft_dropout: float = Field(0.0, ge=0, lt=1, description="Multiplicative dropout: blocks replaced by I.")
    boft_scale: bool = Field(
        False, description="Train a per-output scale s_out (PEFT's boft_s; not orthogonal)."
    )
    cayley: Literal["exact", "neumann"] = Field(
        "exact", description="Cayley map R = (I+Q)(I−Q)^-1: exact solve, or the truncated Neumann series."
    )
    cayley_neumann_terms: int = Field(6, ge=3, description="Neumann terms k (n = max(2, k−2) powers).")
    rotation_side: Literal["input", "output"] = Field(
        "input", description="input: W0 Rᵀ (BOFT/OFT, preserves neuron angles); output: R W0 (paper literal)."
    )

    # Structured unitary adapter (methods.md §5)
    unitary_pairing: Literal["halves", "adjacent"] = Field(
        "halves",
        description="How real features pair into complex numbers: [x_a; x_b] halves or (x0,x1),(x2,x3).",
    )
    unitary_permutation: Literal["identity", "random"] = Field(
        "identity",
        description="Π in D3 R2 F⁻¹ D2 Π R1 F D1; random uses a frozen reference factor for I at init.",
    )

    # Hybrid (methods.md §6)
    mixer: Literal["descaled", "paper", "fixed"] = Field(
        "descaled",
        description="λ rule: de-scaled gradient norms (default), the paper's literal rule, or fixed.",
    )
    fixed_lambda: float = Field(0.5, ge=0, le=1, description="λ when mixer = fixed.")
    lambda_init: float = Field(
        0.5, ge=0, le=1, description="λ before the first update (held during warm-up)."
    )
    lambda_norm: Literal["l2", "rms"] = Field("l2", description="Branch norm: L2, or L2/√(parameter count).")
    lambda_ema: float = Field(0.9, ge=0, lt=1, description="EMA β of the branch gradient norms.")
    lambda_min: float = Field(0.05, ge=0, le=1, description="Lower clamp of λ.")
    lambda_max: float = Field(0.95, ge=0, le=1, description="Upper clamp of λ.")
    lambda_warmup_steps: int = Field(20, ge=0, description="Optimizer steps with λ held at lambda_init.")
    hybrid_mix: Literal["linear", "generator"] = Field(
        "linear",
        description="linear: W0 + λΔW_L + (1−λ)ΔW_B; generator: rotate by R((1−λ)Q) (exact rotation).",
    )
    unitary_modules: list[str] | str | None = Field(
        None, description="Hybrid only: sub-layers (names/regex) that also get the unitary adapter."
    )
    unitary_mode: Literal["add", "replace"] = Field(
        "add",
        description="add: unitary on top of the hybrid branches; replace: unitary instead of the hybrid.",
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> AdapterConfig:
        if self.boft_block_size is not None and self.boft_block_num is not None:
            raise ValueError("give boft_block_size or boft_block_num, not both (d_in = size × num)")
        if self.lambda_min > self.lambda_max:
            raise ValueError(f"lambda_min ({self.lambda_min}) must be ≤ lambda_max ({self.lambda_max})")
        if self.method == "oft" and self.boft_n_butterfly_factor != 1:
            raise ValueError(
                "method 'oft' is BOFT with boft_n_butterfly_factor = 1; use method 'boft' for m > 1"
            )
        return self

    @property
    def scaling(self) -> float:
        """LoRA scale s = α/r, or α/√r with rsLoRA."""
        return self.alpha / (self.r**0.5 if self.use_rslora else self.r)
