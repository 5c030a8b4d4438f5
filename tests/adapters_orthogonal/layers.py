"""Small BOFT layers with random generators, shared by the orthogonal-adapter tests."""

from __future__ import annotations

import torch
from torch import nn

import hyft
from hyft.adapters.boft import BoftLinear


def make_layer(d_in: int = 64, d_out: int = 48, seed: int = 0, **settings) -> BoftLinear:
    """A BoftLinear on a seeded random nn.Linear (b = 4, m = 3 unless ``settings`` say otherwise)."""
    torch.manual_seed(seed)
    settings = {"method": "boft", "boft_block_size": 4, "boft_n_butterfly_factor": 3, **settings}
    return BoftLinear(nn.Linear(d_in, d_out), hyft.AdapterConfig(**settings), "layer")


def randomize(layer: BoftLinear, std: float = 0.3, seed: int = 1) -> None:
    """Move the generators (and the scale, when present) off their identity init, seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.boft_R.copy_(torch.randn(layer.boft_R.shape, generator=generator) * std)
        if layer.boft_s is not None:
            layer.boft_s.copy_(1 + 0.2 * torch.randn(layer.boft_s.shape, generator=generator))
