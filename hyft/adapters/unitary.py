"""Structured unitary adapter (uRNN-style) on the input side of a frozen layer (methods.md §5).

``U = D3 R2 F⁻¹ D2 Π R1 F D1`` on ``n = d_in // 2`` complex features: ``D_j = diag(e^{iθ_j})``,
``R_j = I − 2 v_j v_jᴴ / ‖v_j‖²`` (Householder), F the unitary DFT (``torch.fft``, ``norm="ortho"``),
Π a fixed permutation. Real features are paired into complex ones (``unitary_pairing``: "halves"
``z = x[:n] + i·x[n:2n]``, or "adjacent" ``z_k = x_{2k} + i·x_{2k+1}``); an odd last coordinate passes
through untouched. Ũ, the real d_in×d_in form of U, is orthogonal, so ``‖x Ũ‖ = ‖x‖`` for every value of
the parameters: no retraction or re-normalisation is ever needed; θ and v train by plain autograd.

Transpose convention (PyTorch row layout): the layer computes ``y = base(x @ Ũ)``, i.e. each token
column gets ``Ũᵀx = real(Uᴴ) x``, so ``W_eff = W0 Ũᵀ`` (methods.md §5.3), and a merge applies U itself
(D1 first) to every row of W0. Identity at init: θ = 0 and ``v2 = F⁻¹ v1`` with Π = I; with a random Π
the adapter is ``U(θ, v) · U(0, v_ref)ᴴ`` with the second factor frozen at the initial v.

Parameters (fp32): ``unitary_theta`` (3, n) and ``unitary_v`` (2, n, 2) (v1, v2 as real/imag pairs):
``7n = 3.5·d_in`` numbers. Saved keys: ``unitary_theta``, ``unitary_v``, plus ``unitary_perm`` (n,)
and ``unitary_v_ref`` (2, n, 2) with a random Π.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from hyft.adapters.config import AdapterConfig
from hyft.adapters.layer import ADAPTER_DTYPE, AdaptedLinear, check_shape
from hyft.adapters.registry import register_method


def pair_features(x: torch.Tensor, pairing: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Real (..., d) → complex z (..., d // 2) and the unpaired rest (..., d % 2)."""
    n = x.shape[-1] // 2
    if pairing == "halves":
        z = torch.complex(x[..., :n], x[..., n : 2 * n])
    elif pairing == "adjacent":
        z = torch.complex(x[..., 0 : 2 * n : 2], x[..., 1 : 2 * n : 2])
    else:
        raise ValueError(f"unknown unitary_pairing {pairing!r} (expected 'halves' or 'adjacent')")
    return z, x[..., 2 * n :]


def unpair_features(z: torch.Tensor, rest: torch.Tensor, pairing: str) -> torch.Tensor:
    """Inverse of :func:`pair_features`: complex (..., n) + rest (..., d − 2n) → real (..., d)."""
    if pairing == "halves":
        return torch.cat([z.real, z.imag, rest], dim=-1)
    interleaved = torch.stack([z.real, z.imag], dim=-1).flatten(-2)
    return torch.cat([interleaved, rest], dim=-1)


def _reflection_scale(v: torch.Tensor) -> torch.Tensor:
    return 2.0 / (v.real.square() + v.imag.square()).sum().clamp_min(1e-30)


def _phase(theta: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    return torch.complex(torch.cos(theta), sign * torch.sin(theta))


# A program is the list of stages in application order: ("phase", j, ±1) multiplies by e^{±iθ_j},
# ("house", source, j) reflects with vector j of "v" (trainable) or "ref" (frozen), ("fft",) / ("ifft",)
# are the unitary DFT and its inverse, ("gather", "perm" | "inverse") applies Π or Πᵀ.
ProgramStep = tuple


def unitary_program(
    adjoint: bool, permuted: bool, source: str = "v", phases: bool = True
) -> list[ProgramStep]:
    """Stages of ``U = D3 R2 F⁻¹ D2 Π R1 F D1`` (D1 first) or of ``Uᴴ`` (D3* first) when ``adjoint``."""
    stages: list[ProgramStep] = [("phase", 0, 1.0), ("fft",), ("house", source, 0)]
    stages += [("gather", "perm")] if permuted else []
    stages += [("phase", 1, 1.0), ("ifft",), ("house", source, 1), ("phase", 2, 1.0)]
    if not phases:
        stages = [s for s in stages if s[0] != "phase"]
    if not adjoint:
        return stages
    flipped = {"fft": ("ifft",), "ifft": ("fft",)}
    adjoint_stages = []
    for stage in reversed(stages):
        if stage[0] == "phase":
            stage = ("phase", stage[1], -stage[2])
        elif stage[0] == "gather":
            stage = ("gather", "inverse")
        adjoint_stages.append(flipped.get(stage[0], stage))
    return adjoint_stages


class Operands:
    """The per-call constants of the stages, computed once: phase factors e^{iθ_j}, reflection vectors
    (complex, conjugated, and pre-scaled by 2/‖v‖²) and the permutation index vectors."""

    def __init__(self, theta: torch.Tensor, v: torch.Tensor, v_ref: torch.Tensor | None, indices: dict):
        self.phase = _phase(theta)  # (3, n)
        self.vectors = {"v": torch.view_as_complex(v)}
        if v_ref is not None:
            self.vectors["ref"] = torch.view_as_complex(v_ref)
        self.conj = {k: vec.conj().resolve_conj() for k, vec in self.vectors.items()}
        self.scale = {
            k: torch.stack([_reflection_scale(row) for row in vec]) for k, vec in self.vectors.items()
        }
        self.scaled = {k: vec * self.scale[k].unsqueeze(-1) for k, vec in self.vectors.items()}
        self.indices = indices

    def factor(self, index: int, sign: float) -> torch.Tensor:
        return self.phase[index] if sign > 0 else self.phase[index].conj()


def run_stage(z: torch.Tensor, stage: ProgramStep, ops: Operands, inplace: bool = False) -> torch.Tensor:
    """Apply one stage to z (..., n) complex; differentiable by autograd unless ``inplace`` (then z,
    which the caller must own, is overwritten by phase and reflection stages)."""
    kind = stage[0]
    if kind == "phase":
        q = ops.factor(stage[1], stage[2])
        return z.mul_(q) if inplace else z * q
    if kind == "fft":
        return torch.fft.fft(z, norm="ortho")
    if kind == "ifft":
        return torch.fft.ifft(z, norm="ortho")
    if kind == "gather":
        return z.index_select(-1, ops.indices[stage[1]])
    source, index = stage[1], stage[2]
    overlap, scaled = z @ ops.conj[source][index], ops.scaled[source][index]
    if inplace:
        return z.addr_(overlap, scaled, alpha=-1)
    if z.dim() == 2:  # one fused rank-1 update instead of an outer product and a subtraction
        return torch.addr(z, overlap, scaled, alpha=-1)
    return z - overlap.unsqueeze(-1) * scaled


def run_program(
    z: torch.Tensor, program: list[ProgramStep], ops: Operands, inplace: bool = False
) -> torch.Tensor:
    for stage in program:
        z = run_stage(z, stage, ops, inplace)
    return z


def _chunk_rows(n: int) -> int:
    # Token chunks whose complex working set (~0.5 MiB a tensor) stays in a core's L2 cache across all
    # stages: the ops are memory-bound, and this makes the whole transform 1.3–3× faster on CPU. Much
    # smaller chunks only add per-op overhead.
    return max(128, 65536 // max(n, 1))


def _store_unpaired(dst: torch.Tensor, z: torch.Tensor, rest: torch.Tensor, pairing: str) -> None:
    n = z.shape[-1]
    if pairing == "halves":
        dst[:, :n].copy_(z.real)
        dst[:, n : 2 * n].copy_(z.imag)
    else:
        dst[:, : 2 * n].unflatten(-1, (n, 2)).copy_(torch.view_as_real(z))
    dst[:, 2 * n :].copy_(rest)


class _UnitaryTransform(torch.autograd.Function):
    """Real rows x (N, d) → unpair(program(pair(x))) with a hand-written backward, chunked over rows.

    Saves only x (usually shared with the layer's input) and recomputes the stage inputs in backward,
    chunk by chunk: autograd's generic complex backward needs several times the memory passes and
    keeps every intermediate. Gradients: phases ``∂L/∂θ = −sign·Im Σ_t conj(g_t)·y_t``; Householder
    (y = z − s·v·vᴴz, s = 2/‖v‖²) ``∂L/∂v = s²·Re(Σ_t conj(vᴴg_t)·vᴴz_t)·v − s·Σ_t (conj(vᴴz_t)·g_t +
    conj(vᴴg_t)·z_t)`` (PyTorch's conjugate-Wirtinger convention); every stage is unitary, so the input
    gradient goes through its adjoint.
    """

    @staticmethod
    def forward(ctx, x, theta, v, v_ref, program, pairing, indices):
        ctx.save_for_backward(x, theta, v, v_ref)
        ctx.program, ctx.pairing, ctx.indices = program, pairing, indices
        ops = Operands(theta, v, v_ref, indices)
        out = torch.empty_like(x)
        step = _chunk_rows(x.shape[-1] // 2)
        for start in range(0, x.shape[0], step):
            z, rest = pair_features(x[start : start + step], pairing)
            z = run_program(z, program, ops, inplace=True)
            _store_unpaired(out[start : start + step], z, rest, pairing)
        return out

    @staticmethod
    def backward(ctx, grad):
        # Explicitly outside autocast (the forward runs under :meth:`UnitaryLinear._run`'s disabled
        # autocast; a backward called inside an autocast region must not round the stages either).
        # ctx.saved_tensors is read exactly once: non-reentrant checkpointing refuses a second unpack.
        x, theta, v, v_ref = ctx.saved_tensors
        with torch.autocast(device_type=grad.device.type, enabled=False):
            return _UnitaryTransform._backward(ctx, grad.to(x.dtype), x, theta, v, v_ref)

    @staticmethod
    def _backward(ctx, grad, x, theta, v, v_ref):
        ops, program = Operands(theta, v, v_ref, ctx.indices), ctx.program
        grads = {"theta": torch.zeros_like(ops.phase), "v": torch.zeros_like(ops.vectors["v"])}
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        step = _chunk_rows(x.shape[-1] // 2)
        for start in range(0, x.shape[0], step):
            rows = slice(start, start + step)
            z, _ = pair_features(x[rows], ctx.pairing)
            stage_inputs = []
            for stage in program:
                stage_inputs.append(z if stage[0] in ("phase", "house") else None)
                z = run_stage(z, stage, ops)
            g, grad_rest = pair_features(grad[rows], ctx.pairing)
            for stage, z_in in zip(reversed(program), reversed(stage_inputs), strict=True):
                g = _stage_backward(stage, g, z_in, ops, grads)
            if grad_x is not None:
                _store_unpaired(grad_x[rows], g, grad_rest, ctx.pairing)
        # grads["theta"] holds Σ_t conj(g)·y per phase stage (signed); ∂L/∂θ is its negated imaginary part.
        return grad_x, -grads["theta"].imag, torch.view_as_real(grads["v"]), None, None, None, None


def _stage_backward(stage: ProgramStep, g: torch.Tensor, z_in, ops: Operands, grads: dict) -> torch.Tensor:
    """Gradient w.r.t. the stage input from the one w.r.t. its output (g, owned and overwritten);
    accumulates parameter gradients into ``grads``."""
    kind = stage[0]
    if kind == "phase":
        q = ops.factor(stage[1], stage[2])
        grads["theta"][stage[1]] += stage[2] * q * (g.conj() * z_in).sum(0)
        return g.mul_(q.conj())
    if kind == "fft":
        return torch.fft.ifft(g, norm="ortho")
    if kind == "ifft":
        return torch.fft.fft(g, norm="ortho")
    if kind == "gather":
        return g.index_select(-1, ops.indices["inverse" if stage[1] == "perm" else "perm"])
    source, index = stage[1], stage[2]
    vec, vec_conj = ops.vectors[source][index], ops.conj[source][index]
    along = g @ vec_conj  # vᴴg per token
    if source == "v":
        scale = ops.scale[source][index]
        overlap = z_in @ vec_conj  # vᴴz per token
        k = torch.dot(along.conj(), overlap).real
        grads["v"][index] += scale * scale * k * vec - scale * (overlap.conj() @ g + along.conj() @ z_in)
    return g.addr_(along, ops.scaled[source][index], alpha=-1)


class UnitaryLinear(AdaptedLinear):
    """``y = base(x @ Ũ)``: the structured unitary on the input features of one nn.Linear (any d_out)."""

    method = "unitary"

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig, name: str = ""):
        super().__init__(base_layer, config)
        self.n = self.in_features // 2
        if self.n < 1:
            raise ValueError(f"layer {name}: the unitary adapter needs at least 2 input features")
        self.pairing = config.unitary_pairing
        device = base_layer.weight.device
        v1 = torch.randn(self.n, dtype=torch.complex64, device=device)
        random_perm = config.unitary_permutation == "random"
        # With Π = I, v2 = F⁻¹v1 makes R2 F⁻¹ R1 F = I (methods.md §5.4); otherwise the frozen reference does.
        v2 = torch.randn_like(v1) if random_perm else torch.fft.ifft(v1, norm="ortho")
        v = torch.view_as_real(torch.stack([v1, v2])).to(ADAPTER_DTYPE)
        self.unitary_theta = nn.Parameter(torch.zeros(3, self.n, device=device, dtype=ADAPTER_DTYPE))
        self.unitary_v = nn.Parameter(v.clone())
        if random_perm:
            generator = torch.Generator().manual_seed(zlib.crc32(f"{name}:{self.n}".encode()))
            perm = torch.randperm(self.n, generator=generator).to(device)
            self.register_buffer("unitary_perm", perm, persistent=False)
            self.register_buffer("unitary_perm_inverse", torch.argsort(perm), persistent=False)
            self.register_buffer("unitary_v_ref", v.clone(), persistent=False)
        else:
            self.unitary_perm = self.unitary_perm_inverse = self.unitary_v_ref = None

    # -- the operator (helpers the hybrid reuses; they never touch base_layer) ------------------
    def program(self, adjoint: bool) -> list[ProgramStep]:
        """Stages of ``Uᴴ`` (``adjoint``, the per-token direction) or of U; with a random Π the frozen
        reference factor makes the adapter ``U(θ, v)·U(0, v_ref)ᴴ``."""
        permuted = self.unitary_perm is not None
        main = unitary_program(adjoint, permuted)
        if not permuted:
            return main
        reference = unitary_program(not adjoint, permuted, source="ref", phases=False)
        return main + reference if adjoint else reference + main

    def _run(self, t: torch.Tensor, adjoint: bool) -> torch.Tensor:
        dtype = self.unitary_theta.dtype
        with torch.autocast(device_type=t.device.type, enabled=False):
            flat = t.to(dtype).reshape(-1, t.shape[-1])
            indices = {"perm": self.unitary_perm, "inverse": self.unitary_perm_inverse}
            out = _UnitaryTransform.apply(
                flat,
                self.unitary_theta,
                self.unitary_v,
                self.unitary_v_ref,
                self.program(adjoint),
                self.pairing,
                indices,
            )
            return out.view(*t.shape[:-1], t.shape[-1])

    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_in) any dtype → ``x @ Ũ`` (..., d_in) in the adapter dtype (fp32):
        per token ``real(Uᴴ)x``.

        ``base(transform_input(x))`` realises ``W_eff = W0 Ũᵀ``. Autocast is off (FFTs in half precision
        are unreliable); exactly norm-preserving per token up to rounding; differentiable in x, θ, v.
        """
        return self._run(x, adjoint=True)

    def apply_unitary_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows (..., d_in) → ``rows @ Ũᵀ`` (U itself on each row vector), fp32: the merge direction,
        ``W0 Ũᵀ = apply_unitary_rows(W0)``. It is the transpose (= inverse) of :meth:`transform_input`."""
        return self._run(rows, adjoint=False)

    def unitary_matrix(self) -> torch.Tensor:
        """The complex n×n U as the structured stages compute it (column j = U e_j); for tests."""
        ops = self.operands()
        eye = torch.eye(self.n, dtype=ops.phase.dtype, device=self.unitary_v.device)
        return run_program(eye, self.program(adjoint=False), ops).T

    def operands(self) -> Operands:
        """The stage constants of the current parameters (differentiable: autograd's reference path)."""
        indices = {"perm": self.unitary_perm, "inverse": self.unitary_perm_inverse}
        return Operands(self.unitary_theta, self.unitary_v, self.unitary_v_ref, indices)

    # -- AdaptedLinear --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(self.transform_input(x).to(x.dtype))

    def merged_weight(self) -> torch.Tensor:
        """``W0 Ũᵀ`` (d_out, d_in) fp32, by applying U to the rows of W0: O(d_out·d_in·log d_in)."""
        return self.apply_unitary_rows(self.base_weight())

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"unitary": [self.unitary_theta, self.unitary_v]}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        state = {"unitary_theta": self.unitary_theta.detach(), "unitary_v": self.unitary_v.detach()}
        if self.unitary_perm is not None:
            state["unitary_perm"] = self.unitary_perm
            state["unitary_v_ref"] = self.unitary_v_ref
        return {k: t.contiguous() for k, t in state.items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.unitary_theta.copy_(check_shape("unitary_theta", state["unitary_theta"], (3, self.n)))
            self.unitary_v.copy_(check_shape("unitary_v", state["unitary_v"], (2, self.n, 2)))
            if self.unitary_perm is not None:
                perm = check_shape("unitary_perm", state["unitary_perm"], (self.n,))
                if not torch.equal(torch.sort(perm).values.cpu(), torch.arange(self.n)):
                    raise ValueError("adapter tensor 'unitary_perm' is not a permutation")
                self.unitary_perm.copy_(perm)
                self.unitary_perm_inverse.copy_(torch.argsort(perm))
                self.unitary_v_ref.copy_(check_shape("unitary_v_ref", state["unitary_v_ref"], (2, self.n, 2)))

    def extra_repr(self) -> str:
        permutation = "random" if self.unitary_perm is not None else "identity"
        return (
            f"{super().extra_repr()}, complex_features={self.n}, pairing={self.pairing}, "
            f"permutation={permutation}"
        )


register_method("unitary", lambda base, cfg, name, init: UnitaryLinear(base, cfg, name))
