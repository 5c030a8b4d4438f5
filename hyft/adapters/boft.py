"""BOFT and OFT: a Cayley-parametrised butterfly rotation of the frozen layer's input (methods.md §3).

``W_eff = diag(s_out) · W0 · Rᵀ`` (``rotation_side="input"``, the default) or ``diag(s_out) · R · W0``
(``"output"``, the paper's literal form); the bias is untouched. ``R = F_m ⋯ F_1``, ``F_i = P_i D_i P_iᵀ``,
each ``D_i`` block-diagonal with blocks ``Cayley(Q) = (I + Q)(I − Q)^{-1}`` (paper sign, :mod:`cayley`).
OFT is m = 1. The forward rotates the activations (``x @ R``, i.e. ``Rᵀx`` per token) in fp32 and calls
the frozen layer once, so a quantised or half-precision base works unchanged; for a plain frozen
nn.Linear and a training-size batch it rotates W0 instead, inside one fused op (:mod:`rotated_linear`).
R itself is never formed densely, only its g×g diagonal blocks.

Saved tensors (keys relative to the layer): ``boft_R`` (m, d/b, b(b−1)/2) for method "boft",
``oft_R.weight`` (d/b, b(b−1)/2) for method "oft" (PEFT OFT's layout; with the Neumann map the values
mean the same as in PEFT, with the exact map PEFT's generator is the negative), plus ``boft_s`` /
``oft_s`` (d_out, 1) when ``boft_scale`` is on. Generators are strict upper triangles, row-major.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from hyft.adapters.butterfly import (
    apply_blocks,
    apply_factors,
    butterfly_permutations,
    group_size,
    grouped_blocks,
)
from hyft.adapters.cayley import cayley, skew_from_upper, upper_size
from hyft.adapters.config import AdapterConfig
from hyft.adapters.input_operator import InputOperator
from hyft.adapters.layer import ADAPTER_DTYPE, AdaptedLinear, check_shape
from hyft.adapters.quantized import weight_product
from hyft.adapters.registry import register_method
from hyft.config.loading import ConfigError

# Fold the m factors into R's dense g×g diagonal blocks (g = b·2^(m−1)) while g is at most this: one
# activation matmul of width g costs 2^(m−1)/m times the FLOPs of m width-b matmuls, but needs no
# activation gathers, keeps only its input for backward and runs at BLAS speed. For large g (the full
# butterfly has g = d) the factor-by-factor path is cheaper.
GROUPED_LIMIT = 128
NEUMANN_WARN_NORM = 0.3  # the truncated series is off by > 1e-3 above this ‖Q‖ (methods.md §3.2)
NEUMANN_CHECK_EVERY = 100

GeneratorScale = float | torch.Tensor


def resolve_block_size(dim: int, config: AdapterConfig, layer: str) -> int:
    """Block size b for a rotated dimension ``dim``; ConfigError when the structure cannot fit it."""
    m = config.boft_n_butterfly_factor
    if config.boft_block_size is None and config.boft_block_num is None:
        raise ConfigError(
            "AdapterConfig", [f"method {config.method!r} needs boft_block_size (e.g. 8) or boft_block_num"]
        )
    if config.boft_block_size is not None:
        size = config.boft_block_size
    else:
        if dim % config.boft_block_num:
            raise ConfigError(
                "AdapterConfig",
                [
                    f"layer {layer}: {dim} features are not divisible by "
                    f"boft_block_num={config.boft_block_num}"
                ],
            )
        size = dim // config.boft_block_num
    group = group_size(size, m)
    if dim % size or (m > 1 and (size % 2 or dim % group)):
        valid = [
            b for b in range(2, min(dim, 256) + 1) if dim % group_size(b, m) == 0 and (m == 1 or b % 2 == 0)
        ]
        raise ConfigError(
            "AdapterConfig",
            [
                f"layer {layer}: {dim} features cannot hold blocks of {size} with "
                f"boft_n_butterfly_factor={m} (needs an even b with {dim} divisible by b·2^(m−1)); block "
                f"sizes that fit: {valid[:12]}"
            ],
        )
    return size


class BoftLinear(AdaptedLinear):
    """BOFT (m ≥ 1) or OFT (m = 1) on one nn.Linear.

    Trainable: ``boft_R`` (m, d/b, b(b−1)/2) fp32, zero at init (R = I, output unchanged bit for bit),
    and ``boft_s`` (d_out, 1) when ``boft_scale``. Count: ``m·d·(b−1)/2`` (+ d_out), d the rotated size.
    Buffers (non-persistent, follow ``.to()``): ``perms`` (m, d) int64 butterfly index vectors.
    """

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig, name: str = ""):
        super().__init__(base_layer, config)
        self.method = config.method
        self.side = config.rotation_side
        dim = self.in_features if self.side == "input" else self.out_features
        self.n_factors = config.boft_n_butterfly_factor
        self.block_size = resolve_block_size(dim, config, name or type(base_layer).__name__)
        self.n_blocks = dim // self.block_size
        self.group = group_size(self.block_size, self.n_factors)
        device = base_layer.weight.device
        shape = (self.n_factors, self.n_blocks, upper_size(self.block_size))
        self.boft_R = nn.Parameter(torch.zeros(shape, device=device, dtype=ADAPTER_DTYPE))
        scale = torch.ones(self.out_features, 1, device=device, dtype=ADAPTER_DTYPE)
        self.boft_s = nn.Parameter(scale) if config.boft_scale else None
        perms = butterfly_permutations(dim, self.block_size, self.n_factors).to(device)
        self.register_buffer("perms", perms, persistent=False)
        self.cayley_form = config.cayley
        self.neumann_terms = config.cayley_neumann_terms
        self.dropout = config.boft_dropout
        self._cache: tuple[tuple, torch.Tensor] | None = None
        # Blocks computed for this layer by batched_rotation.py for the coming training forward (used once),
        # with the version of boft_R they were computed from: an optimizer step in between voids them.
        self.prepared_blocks: tuple[int, torch.Tensor] | None = None
        self._neumann_calls = 0
        self._neumann_warned = False

    # -- the rotation (helpers the hybrid reuses) -----------------------------------------------
    def generator(self, generator_scale: GeneratorScale = 1.0) -> torch.Tensor:
        """Skew generators ``μ·Q``: (m, d/b, b, b) fp32; ``R(μQ)`` is what :meth:`input_operator` applies."""
        skew = skew_from_upper(self.boft_R, self.block_size)
        if isinstance(generator_scale, float) and generator_scale == 1.0:
            return skew
        return skew * generator_scale

    def rotation_blocks(self, generator_scale: GeneratorScale = 1.0, dropout: bool = False) -> torch.Tensor:
        """Orthogonal blocks ``Cayley(μQ)`` (m, d/b, b, b) fp32; ``dropout`` swaps random blocks for I.

        Always in the generators' dtype, whatever autocast is active: the solve (or Neumann products)
        rounded to bf16 would leave the blocks orthogonal only to ~1e-2.
        """
        with torch.autocast(device_type=self.boft_R.device.type, enabled=False):
            skew = self.generator(generator_scale)
            if self.cayley_form == "neumann" and self.training:
                self._check_neumann_range(skew)
            blocks = cayley(skew, self.cayley_form, self.neumann_terms)
        if dropout and self.dropout > 0:
            keep = torch.rand(blocks.shape[:2], device=blocks.device) >= self.dropout
            eye = torch.eye(self.block_size, device=blocks.device, dtype=blocks.dtype)
            blocks = torch.where(keep[..., None, None], blocks, eye)
        return blocks

    def operator_blocks(self, generator_scale: GeneratorScale = 1.0, dropout: bool = False) -> torch.Tensor:
        """R as its diagonal blocks for :func:`apply_blocks`: (d/g, g, g),
        or the factor blocks when g is big."""
        prepared, self.prepared_blocks = self.prepared_blocks, None
        if (
            prepared is not None
            and prepared[0] == self.boft_R._version  # no dropout: see batch_key
            and isinstance(generator_scale, float)
            and generator_scale == 1.0
        ):
            return prepared[1]
        key = None if dropout else self._cache_key(generator_scale)
        if key is not None and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        blocks = self.rotation_blocks(generator_scale, dropout)
        if self.n_factors == 1:
            result = blocks[0]
        elif self.group <= GROUPED_LIMIT:
            result = grouped_blocks(blocks, self.perms)
        else:
            result = blocks
        if key is not None:
            self._cache = (key, result)
        return result

    def batch_key(self) -> tuple | None:
        """Layers with equal keys can share one batched computation of their blocks (batched_rotation.py);
        None when this layer computes its own (block dropout, Neumann form, unfolded large groups)."""
        if (
            self.dropout > 0
            or self.cayley_form != "exact"
            or not (self.n_factors == 1 or self.group <= GROUPED_LIMIT)
        ):
            return None
        return (self.block_size, self.n_factors, self.n_blocks, self.boft_R.dtype, self.boft_R.device)

    def rotate(
        self,
        t: torch.Tensor,
        generator_scale: GeneratorScale = 1.0,
        transpose: bool = False,
        dropout: bool = False,
    ) -> torch.Tensor:
        """``t @ R(μQ)`` (or ``t @ R(μQ)ᵀ``) on the rotated dimension, in fp32: (..., d) → (..., d) fp32.

        The generic operator (merges use it on the rows of W0); ``dropout`` applies the multiplicative
        block dropout, which only the training forward should do. Never touches ``base_layer``.
        """
        with torch.autocast(device_type=t.device.type, enabled=False):
            t = t.to(self.boft_R.dtype)
            blocks = self.operator_blocks(generator_scale, dropout)
            if blocks.dim() == 4:  # factor-by-factor path (large groups)
                return apply_factors(t, blocks, self.perms, transpose=transpose)
            return apply_blocks(t, blocks.transpose(-1, -2) if transpose else blocks)

    def input_operator(
        self, generator_scale: GeneratorScale = 1.0, blend: torch.Tensor | float | None = None
    ) -> InputOperator:
        """The input-side operator M = R(μQ), or ``(1 − w)I + w·R`` with ``blend`` w, fp32
        (:class:`InputOperator`).

        ``generator_scale`` μ (float or 0-d tensor, no grad needed) scales the skew generator before the
        Cayley map, which keeps the rotation exactly orthogonal (methods.md §6.2 "generator" mix); ``blend``
        is the hybrid's linear mix, per token ``x + w(Rᵀx − x)``. Folded groups carry the blend in their
        blocks; the factor path applies it to the activations. Draws the block dropout in training mode.
        ``self.input_operator(μ).apply(x)`` is ``x @ R(μQ)`` and ``.linear(x, base)`` is ``base(x @ M)``,
        which realises the weight ``W0 Mᵀ``.
        """
        if self.side != "input":
            raise ValueError("the input operator needs rotation_side='input'; this layer rotates its output")
        with torch.autocast(device_type=self.boft_R.device.type, enabled=False):
            blocks = self.operator_blocks(generator_scale, dropout=self.training)
            if blocks.dim() == 3 and blend is not None:
                eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
                return InputOperator(torch.lerp(eye, blocks, blend), self.perms)
            return InputOperator(blocks, self.perms, blend)

    def rotation_matrix(self, generator_scale: GeneratorScale = 1.0) -> torch.Tensor:
        """Dense R (d×d, fp32): the weight-side product, for merges of small layers and tests only."""
        dim = self.n_blocks * self.block_size
        return self.rotate(
            torch.eye(dim, device=self.boft_R.device, dtype=self.boft_R.dtype), generator_scale
        )

    # -- AdaptedLinear --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.base_layer.bias
        if self.side == "input":
            if self.boft_s is None:
                return self.input_operator().linear(x, self.base_layer)
            rotated = self.rotate(x, dropout=self.training).to(x.dtype)
            product = weight_product(self.base_layer, rotated)  # W0·(Rᵀx), also on a quantized base
            return product * self.boft_s.view(-1).to(product.dtype) + (0 if bias is None else bias)
        hidden = self.rotate(
            weight_product(self.base_layer, x), transpose=True, dropout=self.training
        )  # (R W0 x)ᵀ
        if self.boft_s is not None:
            hidden = hidden * self.boft_s.view(-1)
        hidden = hidden.to(x.dtype)
        return hidden if bias is None else hidden + bias

    def merged_weight(self) -> torch.Tensor:
        """``diag(s) W0 Rᵀ`` (input side) or ``diag(s) R W0`` (output side), (d_out, d_in) fp32."""
        w0 = self.base_weight().to(self.boft_R.dtype)
        merged = (
            self.rotate(w0, transpose=True) if self.side == "input" else self.rotate(w0.T, transpose=True).T
        )
        return merged * self.boft_s if self.boft_s is not None else merged

    def unmerged_weight(self, merged: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`merged_weight`: W0 from a merged (d_out, d_in) weight, fp32, with a true inverse of R
        (the Neumann R is only nearly orthogonal, so its transpose is not its inverse)."""
        merged = merged.to(self.boft_R.dtype)
        if self.boft_s is not None:
            merged = merged / self.boft_s
        blocks = self._dense_groups()
        inverse = torch.linalg.inv(blocks)
        if self.side == "input":  # W R^{-ᵀ}: per group, W_k (G_kᵀ)^{-1}
            return apply_blocks(merged, inverse.transpose(-1, -2))
        return apply_blocks(merged.T, inverse.transpose(-1, -2)).T  # R^{-1} W

    def _dense_groups(self) -> torch.Tensor:
        blocks = self.rotation_blocks()
        return blocks[0] if self.n_factors == 1 else grouped_blocks(blocks, self.perms)

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        params = [self.boft_R] + ([self.boft_s] if self.boft_s is not None else [])
        return {"rotation": params}

    def _keys(self) -> tuple[str, str]:
        return ("oft_R.weight", "oft_s") if self.method == "oft" else ("boft_R", "boft_s")

    def adapter_state(self) -> dict[str, torch.Tensor]:
        r_key, s_key = self._keys()
        generator = self.boft_R[0] if self.method == "oft" else self.boft_R
        state = {r_key: generator.detach().contiguous()}
        if self.boft_s is not None:
            state[s_key] = self.boft_s.detach().contiguous()
        return state

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        r_key, s_key = self._keys()
        expected = tuple(self.boft_R.shape[1:]) if self.method == "oft" else tuple(self.boft_R.shape)
        generator = check_shape(r_key, state[r_key], expected)
        with torch.no_grad():
            self.boft_R.copy_(generator.reshape(self.boft_R.shape))
            if self.boft_s is not None:
                self.boft_s.copy_(check_shape(s_key, state[s_key], tuple(self.boft_s.shape)))
        self._cache = None

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, side={self.side}, block_size={self.block_size}, "
            f"n_butterfly_factor={self.n_factors}, group={self.group}, cayley={self.cayley_form}"
        )

    # -- internals ------------------------------------------------------------------------------
    def _cache_key(self, generator_scale: GeneratorScale) -> tuple | None:
        """Reuse R across forwards only when no graph is being built (evaluation, generation)."""
        if torch.is_grad_enabled() or self.training or isinstance(generator_scale, torch.Tensor):
            return None
        return (self.boft_R._version, self.boft_R.data_ptr(), self.boft_R.device, float(generator_scale))

    def _check_neumann_range(self, skew: torch.Tensor) -> None:
        # A host sync, so only every NEUMANN_CHECK_EVERY training forwards, and one warning per layer.
        self._neumann_calls += 1
        if self._neumann_warned or (self._neumann_calls - 1) % NEUMANN_CHECK_EVERY:
            return
        largest = float(torch.linalg.matrix_norm(skew.detach()).max())
        if largest > NEUMANN_WARN_NORM:
            self._neumann_warned = True
            warnings.warn(
                f"BOFT generator norm {largest:.3f} > {NEUMANN_WARN_NORM}: the Cayley–Neumann series is no "
                "longer accurately orthogonal; use cayley='exact' or a smaller learning rate",
                stacklevel=3,
            )


register_method("boft", lambda base, cfg, name, init: BoftLinear(base, cfg, name))
register_method("oft", lambda base, cfg, name, init: BoftLinear(base, cfg, name))
