"""The weight-side rotation (rotated_linear.py): values and gradients against the activation-side formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hyft.adapters.butterfly import apply_blocks
from hyft.adapters.rotated_linear import rotated_frozen_linear


@pytest.mark.parametrize("with_lora", [False, True])
@pytest.mark.parametrize("group", [8, 16])  # both block-matmul kernels
def test_rotated_frozen_linear_matches_the_formula_and_gradcheck(group, with_lora):
    generator = torch.Generator().manual_seed(0)

    def rand(*shape, grad=False):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(grad)

    d_in, d_out, rank = 4 * group, 7, 3
    x, blocks = rand(2, 5, d_in, grad=True), rand(4, group, group, grad=True)
    weight, bias = rand(d_out, d_in), rand(d_out)
    A, B, A0, B0 = (
        rand(rank, d_in, grad=True),
        rand(d_out, rank, grad=True),
        rand(rank, d_in),
        rand(d_out, rank),
    )

    def fused(x, blocks, A, B):
        return rotated_frozen_linear(x, blocks, weight, bias, (A, B, A0, B0, 0.7) if with_lora else None)

    expected = F.linear(apply_blocks(x, blocks), weight, bias)
    if with_lora:
        expected = expected + 0.7 * x @ (B @ A - B0 @ A0).T
    assert torch.allclose(fused(x, blocks, A, B), expected, atol=1e-10)
    assert torch.autograd.gradcheck(fused, (x, blocks, A, B))
    assert torch.autograd.gradcheck(apply_blocks, (x, blocks))  # the activation-side kernel, both sizes


def test_few_tokens_take_the_activation_side_with_the_same_result():
    generator = torch.Generator().manual_seed(1)
    blocks = torch.randn(4, 16, 16, generator=generator, dtype=torch.float64, requires_grad=True)
    weight, bias = (
        torch.randn(40, 64, generator=generator, dtype=torch.float64),
        torch.zeros(40, dtype=torch.float64),
    )
    for tokens in (3, 80):  # fewer / more tokens than the 40 output rows
        x = torch.randn(tokens, 64, generator=generator, dtype=torch.float64, requires_grad=True)
        y = rotated_frozen_linear(x, blocks, weight, bias)
        assert torch.allclose(y, F.linear(apply_blocks(x, blocks), weight, bias), atol=1e-10)
        assert torch.autograd.gradcheck(lambda a, b: rotated_frozen_linear(a, b, weight, bias), (x, blocks))
