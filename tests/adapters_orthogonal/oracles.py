"""Independent dense oracles for the orthogonal/unitary adapter tests (explicit matrices, no shared code)."""

from __future__ import annotations

import math

import torch


def random_skew(batch: tuple[int, ...], size: int, spectral_norm: float, dtype=torch.float64, seed: int = 0):
    """Skew-symmetric (*batch, size, size) matrices, each scaled to the given spectral norm."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(*batch, size, size, generator=generator, dtype=torch.float64)
    skew = a - a.transpose(-1, -2)
    skew = skew / torch.linalg.matrix_norm(skew, ord=2)[..., None, None] * spectral_norm
    return skew.to(dtype)


def cayley_by_inverse(skew: torch.Tensor) -> torch.Tensor:
    """The paper's R = (I + Q)(I − Q)^{-1} with an explicit inverse."""
    eye = torch.eye(skew.shape[-1], dtype=skew.dtype)
    return (eye + skew) @ torch.linalg.inv(eye - skew)


def permutation_matrix(perm: torch.Tensor) -> torch.Tensor:
    """P with (P v)[j] = v[perm[j]]."""
    n = perm.numel()
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix[torch.arange(n), perm] = 1.0
    return matrix


def butterfly_oracle(blocks: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """R = F_m ⋯ F_1, F_i = P_i blockdiag(blocks[i]) P_iᵀ, from explicit dense matrices (fp64)."""
    result = None
    for i in range(blocks.shape[0]):
        p = permutation_matrix(perms[i])
        factor = p @ torch.block_diag(*blocks[i].double().unbind(0)) @ p.T
        result = factor if result is None else factor @ result
    return result


def dft_matrix(n: int) -> torch.Tensor:
    """Unitary DFT F[j, k] = exp(−2πi jk/n)/√n (the convention of torch.fft.fft with norm='ortho')."""
    j = torch.arange(n, dtype=torch.float64)
    angle = -2 * math.pi * torch.outer(j, j) / n
    return torch.polar(torch.ones_like(angle), angle) / math.sqrt(n)


def householder_matrix(v: torch.Tensor) -> torch.Tensor:
    v = v.to(torch.complex128)
    return (
        torch.eye(v.numel(), dtype=torch.complex128) - 2 * torch.outer(v, v.conj()) / v.abs().square().sum()
    )


def unitary_oracle(theta: torch.Tensor, v: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """U = D3 R2 F⁻¹ D2 Π R1 F D1 (complex128); theta (3, n) real, v (2, n, 2) real pairs."""
    n = theta.shape[1]
    theta = theta.double()
    vc = torch.complex(v[..., 0].double(), v[..., 1].double())
    d = [torch.diag(torch.polar(torch.ones(n, dtype=torch.float64), theta[j])) for j in range(3)]
    f = dft_matrix(n)
    pi = (
        torch.eye(n, dtype=torch.complex128)
        if perm is None
        else permutation_matrix(perm).to(torch.complex128)
    )
    return d[2] @ householder_matrix(vc[1]) @ f.conj().T @ d[1] @ pi @ householder_matrix(vc[0]) @ f @ d[0]


def realify(u: torch.Tensor, pairing: str, dim: int) -> torch.Tensor:
    """Real dim×dim matrix M with (M x) = pairing⁻¹(U · pairing(x)) for column vectors x;
    odd dim keeps the last."""
    n = u.shape[0]
    block = torch.zeros(dim, dim, dtype=torch.float64)
    if pairing == "halves":
        re, im = list(range(n)), list(range(n, 2 * n))
    else:
        re, im = list(range(0, 2 * n, 2)), list(range(1, 2 * n, 2))
    re_t, im_t = torch.tensor(re), torch.tensor(im)
    block[re_t[:, None], re_t] = u.real
    block[re_t[:, None], im_t] = -u.imag
    block[im_t[:, None], re_t] = u.imag
    block[im_t[:, None], im_t] = u.real
    if dim % 2:
        block[-1, -1] = 1.0
    return block
