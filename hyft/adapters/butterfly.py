"""Butterfly-structured orthogonal operators applied to activations
(input-centric BOFT, methods.md §3.1/§3.3).

``R = F_m ⋯ F_1`` with ``F_i = P_i D_i P_iᵀ``: ``D_i`` block-diagonal (``d/b`` blocks of size b) and
``P_i`` a fixed butterfly permutation, identical to PEFT BOFT's ``block_butterfly_perm`` (``P_1 = I``).
Permutations are index vectors ``p`` with ``(P v)[j] = v[p[j]]``; no dense permutation matrix is built.

Everything here works on row vectors, the PyTorch layout: ``x (..., d) ↦ x @ R`` is the per-token map
``Rᵀx`` that BOFT feeds to the frozen layer (``W_eff = W0 Rᵀ``).

Factor ``i`` only mixes coordinates inside groups of ``b·2^i``, so R is block-diagonal with blocks of
``g = b·2^{m−1}``. :func:`grouped_blocks` folds the m factors into those ``d/g`` dense g×g blocks (a cost
independent of the token count) and :func:`apply_blocks` then rotates the activations with ONE batched
block matmul: no activation gathers, and autograd keeps only the input for backward. That is the fast
path when g is small (the paper's m = 3, b = 8 gives g = 32); :func:`apply_factors` is the general
factor-by-factor path (composed gathers, m block matmuls), used when g is large and as the oracle.
"""

from __future__ import annotations

import torch


def butterfly_permutation(dim: int, block_size: int, factor: int) -> torch.Tensor:
    """Index vector of ``P_{factor+1}`` (0-based ``factor``), shape (dim,), int64.

    Each group of ``g = block_size·2^factor`` coordinates is cut into chunks of ``block_size/2``; the
    even-numbered chunks go first, then the odd ones (PEFT's ``block_butterfly_perm``). Factor 0 is I.
    """
    if factor == 0:
        return torch.arange(dim)
    group = block_size * 2**factor
    if block_size % 2 or dim % group:
        raise ValueError(f"butterfly factor {factor + 1} needs an even block size dividing {dim}/2^{factor}")
    half = block_size // 2
    chunks = group // half
    order = torch.cat([torch.arange(0, chunks, 2), torch.arange(1, chunks, 2)])
    in_group = (order[:, None] * half + torch.arange(half)).flatten()
    return (torch.arange(dim // group)[:, None] * group + in_group).flatten()


def butterfly_permutations(dim: int, block_size: int, n_factors: int) -> torch.Tensor:
    """All m permutations stacked: (m, dim) int64, row i for factor i (row 0 is the identity)."""
    return torch.stack([butterfly_permutation(dim, block_size, i) for i in range(n_factors)])


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """``q`` with ``q[p[j]] = j`` along the last dim (works on stacked (m, d) permutations)."""
    inverse = torch.empty_like(perm)
    inverse.scatter_(-1, perm, torch.arange(perm.shape[-1], device=perm.device).expand_as(perm).contiguous())
    return inverse


def apply_blocks(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """Block-diagonal product ``x @ blockdiag(blocks)``: x (..., k·b), blocks (k, b, b) → (..., k·b).

    One batched matmul over the k blocks (no dense d×d matrix); autograd keeps x itself (shared with
    the caller) and the blocks for backward.
    """
    k, size, _ = blocks.shape
    lead = x.shape[:-1]
    return _BlockMatmul.apply(x.reshape(-1, k * size), blocks).view(*lead, k * size)


SMALL_BLOCK = (
    16  # below this, BLAS on the strided per-block views is up to 3× slower than on contiguous copies
)


def _block_product(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """(T, k·b) @ blockdiag((k, b, b)) → (T, k·b), token-major in and out.

    For b ≥ SMALL_BLOCK, ``bmm(out=)`` on the transposed view lets BLAS read and store with a leading
    dimension of k·b: measured 1.5–2× faster on CPU than bmm followed by the transposing copy back.
    Smaller blocks run on contiguous (k, T, b) copies.
    """
    k, size, _ = blocks.shape
    grouped = x.reshape(-1, k, size).transpose(0, 1)  # (k, T, b)
    if size < SMALL_BLOCK:
        return torch.bmm(grouped.contiguous(), blocks).transpose(0, 1).reshape(-1, k * size)
    out = torch.empty(grouped.shape[1], k, size, dtype=x.dtype, device=x.device)
    torch.bmm(grouped, blocks, out=out.transpose(0, 1))
    return out.view(-1, k * size)


def block_gradient(x: torch.Tensor, grad: torch.Tensor, k: int) -> torch.Tensor:
    """∂L/∂blocks of ``x @ blockdiag(blocks)``: Σ_t x_{t,j}ᵀ grad_{t,j} per block j.

    x, grad: (T, k·b) → (k, b, b). Strided views for b ≥ SMALL_BLOCK, contiguous copies below.
    """
    size = x.shape[-1] // k
    x_grouped = x.reshape(-1, k, size).permute(1, 2, 0)  # (k, b, T)
    grad_grouped = grad.reshape(-1, k, size).transpose(0, 1)  # (k, T, b)
    if size < SMALL_BLOCK:
        x_grouped, grad_grouped = x_grouped.contiguous(), grad_grouped.contiguous()
    return torch.bmm(x_grouped, grad_grouped)


class _BlockMatmul(torch.autograd.Function):
    """``apply_blocks`` on (T, k·b); saves only x (shared with the caller) and the blocks.

    Autocast never applies inside (forward or backward): an autocast bmm would round the orthogonal
    blocks, or the Cayley chain that builds them, to half precision. The product runs in the wider of
    the two input dtypes, and each gradient comes back in its input's dtype.
    """

    @staticmethod
    def forward(ctx, x, blocks):
        ctx.save_for_backward(x, blocks)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = torch.promote_types(x.dtype, blocks.dtype)
            return _block_product(x.to(dtype), blocks.to(dtype))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, blocks = ctx.saved_tensors
        grad_x = grad_blocks = None
        with torch.autocast(device_type=grad.device.type, enabled=False):
            dtype = torch.promote_types(x.dtype, blocks.dtype)
            grad = grad.to(dtype)
            if ctx.needs_input_grad[0]:
                grad_x = _block_product(grad, blocks.to(dtype).transpose(1, 2)).to(x.dtype)
            if ctx.needs_input_grad[1]:
                grad_blocks = block_gradient(x.to(dtype), grad, blocks.shape[0]).to(blocks.dtype)
        return grad_x, grad_blocks


def factor_gathers(perms: torch.Tensor) -> list[torch.Tensor | None]:
    """The m + 1 gathers of the row-vector chain ``x @ F_m ⋯ F_1``, consecutive ones composed.

    ``x @ P = x[..., p⁻¹]`` and ``x @ Pᵀ = x[..., p]``, so between ``D_{i+1}`` and ``D_i`` a single gather
    ``p_{i+1}[p_i⁻¹]`` does both. Entry j is applied before the (m−j)-th factor's blocks; None = identity.
    """
    m = perms.shape[0]
    inverse = inverse_permutation(perms)
    identity = torch.arange(perms.shape[1], device=perms.device)
    gathers: list[torch.Tensor | None] = [inverse[m - 1]]
    for i in range(m - 1, 0, -1):
        gathers.append(perms[i][inverse[i - 1]])
    gathers.append(perms[0])
    return [None if torch.equal(g, identity) else g for g in gathers]


def apply_factors(
    x: torch.Tensor, blocks: torch.Tensor, perms: torch.Tensor, transpose: bool = False
) -> torch.Tensor:
    """``x @ R`` (or ``x @ Rᵀ`` when ``transpose``), factor by factor.

    x: (..., d); blocks: (m, d/b, b, b), ``blocks[i]`` the diagonal blocks of ``D_{i+1}``; perms: (m, d).
    Cost: m block matmuls (2·m·T·d·b FLOPs) and at most m + 1 gathers.
    """
    m = blocks.shape[0]
    if transpose:
        # x Rᵀ = x F_1ᵀ ⋯ F_mᵀ with F_iᵀ = P_i D_iᵀ P_iᵀ: the same chain, reversed, with transposed blocks.
        gathers = factor_gathers(perms.flip(0))
        blocks = blocks.transpose(-1, -2)
    else:
        gathers = factor_gathers(perms)
        blocks = blocks.flip(0)  # the row-vector chain meets F_m first
    out = x
    for j in range(m):
        if gathers[j] is not None:
            out = out.index_select(-1, gathers[j])
        out = apply_blocks(out, blocks[j])
    if gathers[m] is not None:
        out = out.index_select(-1, gathers[m])
    return out


def group_size(block_size: int, n_factors: int) -> int:
    """Width of R's diagonal blocks: ``b·2^{m−1}`` (factor m mixes groups of that size)."""
    return block_size * 2 ** (n_factors - 1)


def grouped_blocks(blocks: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Fold the m factors into R's ``d/g`` dense diagonal blocks: (m, d/b, b, b) → (d/g, g, g).

    Applies the factor chain to g "tokens" that hold the g×g identity in every group at once:
    ``(E R)[j, k·g + c] = R[k·g + j, k·g + c]``. Cost ``2·m·g·d·b`` FLOPs, independent of the tokens.
    """
    m, k, size, _ = blocks.shape
    dim = k * size
    g = group_size(size, m)
    eye = torch.eye(g, dtype=blocks.dtype, device=blocks.device).repeat(1, dim // g)  # (g, d)
    tiled = apply_factors(eye, blocks, perms)
    return tiled.view(g, dim // g, g).transpose(0, 1)


def dense_rotation(blocks: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """The full d×d R (test oracle and small merges only): ``I @ R`` through the factor chain."""
    dim = blocks.shape[1] * blocks.shape[2]
    return apply_factors(torch.eye(dim, dtype=blocks.dtype, device=blocks.device), blocks, perms)


def dense_rotation_from_matrices(blocks: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Independent oracle: ``Π_i P_i D_i P_iᵀ`` from explicit permutation and block-diagonal matrices."""
    m = blocks.shape[0]
    dim = blocks.shape[1] * blocks.shape[2]
    eye = torch.eye(dim, dtype=blocks.dtype, device=blocks.device)
    result = eye
    for i in range(m):
        permutation = eye[perms[i]]  # row j has its 1 at column p[j]: (P v)[j] = v[p[j]]
        factor = permutation @ torch.block_diag(*blocks[i].unbind(0)) @ permutation.T
        result = factor @ result
    return result
