"""The Cayley blocks of many BOFT layers at once, once per training forward.

Every BOFT (or hybrid) layer turns its generators into R's g×g diagonal blocks on each training
forward: skew matrices, a batched inverse, the fold of the m butterfly factors. Per layer that is a
few dozen small tensor ops whose cost is dispatch, not arithmetic (about 1 ms per 384-wide layer on
CPU, ~4 % of a MiniLM step with 36 layers). Layers of the same shape run them together here: their
generators are stacked, and the L layers are laid side by side as one layer of L·d features (each
layer's butterfly permutations shifted by its offset), so the op count no longer grows with L.
Autograd splits the gradient back onto each layer's ``boft_R`` through the stack.

:meth:`HyftModel.forward` calls :func:`prepare_rotation_blocks` before a forward with gradients; each
layer takes its prepared blocks once (:meth:`BoftLinear.operator_blocks`) and otherwise computes its own.

Under FSDP the batch covers only the layers whose generators are whole when ``HyftModel.forward`` runs:
all of them when the wrapper itself is the FSDP unit (its pre-forward hook has gathered every
parameter it owns), none of those inside separately sharded sub-modules (decoder blocks): FSDP gathers
their parameters only when their own forward runs, so they compute their blocks per layer there.
Batching inside each FSDP unit would need a pre-forward hook per unit; per-layer blocks cost ~1 ms per
layer on CPU and are exact, so the fallback is what FSDP runs (docs/distributed.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from hyft.adapters.boft import BoftLinear
from hyft.adapters.butterfly import grouped_blocks
from hyft.adapters.cayley import cayley, skew_from_upper, upper_size
from hyft.distributed import is_full_parameter


def _rotation_of(layer: nn.Module) -> BoftLinear | None:
    """The BOFT operator a layer applies with generator scale 1: a BOFT layer, or a hybrid's linear mix."""
    if isinstance(layer, BoftLinear):
        return layer
    boft = getattr(layer, "boft", None)
    if isinstance(boft, BoftLinear) and getattr(layer, "mix", None) == "linear":
        return boft
    return None


def prepare_rotation_blocks(layers: Iterable[nn.Module]) -> None:
    """Compute the operator blocks of all same-shaped BOFT layers in one batch each
    (training forward only)."""
    if not torch.is_grad_enabled():
        return
    groups: dict[tuple, list[BoftLinear]] = {}
    for layer in layers:
        rotation = _rotation_of(layer)
        if (
            rotation is not None
            and rotation.training
            and _holds_full_generator(rotation)
            and (key := rotation.batch_key()) is not None
        ):
            groups.setdefault(key, []).append(rotation)
    for members in groups.values():
        if len(members) > 1:
            for member, blocks in zip(members, batched_operator_blocks(members), strict=True):
                member.prepared_blocks = (member.boft_R._version, blocks)


def _holds_full_generator(rotation: BoftLinear) -> bool:
    """False while FSDP holds this layer's generators sharded (an FSDP2 DTensor, or an FSDP1 flat-shard
    view): the layer then computes its own blocks in its forward, after FSDP has gathered them."""
    shape = (rotation.n_factors, rotation.n_blocks, upper_size(rotation.block_size))
    return is_full_parameter(rotation.boft_R, shape)


def batched_operator_blocks(members: list[BoftLinear]) -> list[torch.Tensor]:
    """``operator_blocks()`` of each layer (same ``batch_key``), computed together: L × (d/g, g, g)."""
    first = members[0]
    # Under a caller's autocast (HyftModel.forward runs inside the trainer's), the batched inverse and the
    # butterfly fold must still run in the generators' fp32: half-precision blocks are not orthogonal.
    with torch.autocast(device_type=first.boft_R.device.type, enabled=False):
        return _batched_operator_blocks(members)


def _batched_operator_blocks(members: list[BoftLinear]) -> list[torch.Tensor]:
    first = members[0]
    size, factors, blocks_per_layer = first.block_size, first.n_factors, first.n_blocks
    upper = torch.stack([member.boft_R for member in members])  # (L, m, d/b, b(b−1)/2)
    blocks = cayley(skew_from_upper(upper, size), first.cayley_form, first.neumann_terms)  # (L, m, d/b, b, b)
    count = len(members)
    if factors == 1:
        return list(blocks[:, 0].unbind(0))
    dim = blocks_per_layer * size
    side_by_side = blocks.transpose(0, 1).reshape(factors, count * blocks_per_layer, size, size)
    offsets = torch.arange(count, device=upper.device).view(1, count, 1) * dim
    perms = (first.perms.unsqueeze(1) + offsets).reshape(factors, count * dim)
    grouped = grouped_blocks(side_by_side, perms)  # (L·d/g, g, g)
    return list(grouped.view(count, dim // first.group, first.group, first.group).unbind(0))
