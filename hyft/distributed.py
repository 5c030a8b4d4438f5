"""torch.distributed helpers for DDP, FSDP1 (``use_orig_params=True``), FSDP2 (``fully_shard``) and
DeepSpeed ZeRO-1/2/3.

Every function is a no-op in a single process (torch.distributed not initialised, or one rank), so the
single-process numbers are the reference the distributed ones are tested against
(``tests/experiments_runner/test_distributed.py``; docs/distributed.md).

- :func:`global_squared_norms`: per group of parameters, the squared L2 norm of the *full* gradient,
  the same on every rank, from one all-reduce. A gradient is either **sharded** (an FSDP2 DTensor with
  a ``Shard`` placement, an FSDP1 ``use_orig_params`` view of the local flat shard, possibly absent
  on a rank that holds none of it, or this rank's fragment of a DeepSpeed ZeRO partition): its local
  squares are summed over ranks; or **replicated** (DDP's
  already-averaged full gradient, a ``Replicate`` DTensor): its squares are averaged over ranks, never
  summed, which leaves the value unchanged and makes it bitwise equal on every rank.
- :func:`process_state`: accelerate's process state, gloo for a DeepSpeed launch on CPU.
- :func:`gathered_parameters`: ZeRO-3 partitioned weights gathered for reading (saving an adapter).
- :func:`all_reduce_sum_`: in-place sum over ranks of a tensor on any device (moved to the GPU for NCCL).
- :func:`sharded_evaluation` / :func:`map_batches`: evaluation batches split over ranks and gathered
  back in order; every rank ends with the one-process result (see :func:`map_batches`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_SHARDED_EVALUATION: ContextVar[bool] = ContextVar("hyft_sharded_evaluation", default=False)


def deepspeed_requested() -> bool:
    """Whether this process was launched for DeepSpeed (``accelerate launch --use_deepspeed``)."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")


def process_state() -> Any:
    """accelerate's ``PartialState`` for this process, the one every hyft entry point starts.

    On a machine without CUDA, left to itself accelerate finds no backend and counts one process under
    torchrun, so every rank thought itself the main one (and raced writing the same checkpoint): there
    the state is CPU (gloo, as the trainer's ``Accelerator(cpu=True)``), and a DeepSpeed launch
    (``accelerate launch --use_deepspeed``) gets gloo explicitly, since ``cpu=True`` turns DeepSpeed off.
    """
    from accelerate import PartialState

    if torch.cuda.is_available():
        return PartialState()
    if deepspeed_requested():
        return PartialState(backend="gloo")
    return PartialState(cpu=True)


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _collective_device(tensor: torch.Tensor) -> torch.device:
    """Where a collective on ``tensor`` must run: the GPU under NCCL, the tensor's device otherwise."""
    if torch.distributed.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (a no-op in one process); returns it."""
    if not is_distributed():
        return tensor
    device = _collective_device(tensor)
    if device == tensor.device:
        torch.distributed.all_reduce(tensor)
        return tensor
    moved = tensor.to(device)
    torch.distributed.all_reduce(moved)
    tensor.copy_(moved)
    return tensor


def local_gradient(param: torch.Tensor) -> tuple[torch.Tensor | None, bool]:
    """(this rank's part of ``param.grad`` as a plain tensor or None, whether it is a shard of the
    gradient)."""
    grad = param.grad
    if grad is None and _is_deepspeed_partitioned(param):
        return _deepspeed_local_gradient(param), True
    sharded = bool(
        getattr(param, "_fsdp_flattened", False)
    )  # FSDP1 use_orig_params: a view of the flat shard
    if grad is None:
        return None, sharded
    if _is_dtensor(grad):
        if any(placement.is_partial() for placement in grad.placements):
            grad = grad.full_tensor()  # pending sums: reduce them first (FSDP2 never leaves grads partial)
        else:
            sharded = any(placement.is_shard() for placement in grad.placements)
            grad = grad.to_local()
    return grad, sharded


def _is_deepspeed_partitioned(param: torch.Tensor) -> bool:
    """A parameter whose gradient DeepSpeed ZeRO keeps partitioned over the ranks, not in ``param.grad``:
    ZeRO-3 (``ds_id``) or ZeRO-1/2 (``_hp_mapping`` links it to this rank's flat fp32 partition, or is None
    where this rank owns none of it)."""
    return hasattr(param, "ds_id") or hasattr(param, "_hp_mapping")


def _deepspeed_local_gradient(param: torch.Tensor) -> torch.Tensor | None:
    """This rank's fragment of a ZeRO-partitioned gradient (fp32, flat), None where it owns none.

    Valid between ``engine.backward`` and ``engine.step`` (DeepSpeed frees the partitions in the step).
    ZeRO-3 through DeepSpeed's public ``safe_get_local_grad``; ZeRO-1/2 read the fragment the way
    DeepSpeed's own ``get_full_hp_grad`` does, without its all-reduce per parameter: the fragments of all
    ranks tile the averaged gradient, so their squares sum to its squared norm.
    """
    if hasattr(param, "ds_id"):
        from deepspeed.utils import safe_get_local_grad

        return safe_get_local_grad(param)
    mapping = param._hp_mapping
    if mapping is None:
        return None
    fragment = mapping.get_lp_grad_fragment(param._index_in_param_group).flatten()
    if fragment.numel() == param.numel():  # a full accumulation buffer (bf16 optimizer): take the owned part
        address = mapping.lp_fragment_address
        fragment = fragment.narrow(0, address.start, address.numel)
    return fragment


_GATHERED: set[int] = set()  # ids of the ZeRO-3 parameters gathered by an enclosing gathered_parameters


@contextlib.contextmanager
def gathered_parameters(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Inside, DeepSpeed ZeRO-3 partitioned ``params`` hold their full values on every rank (read-only:
    changes are not written back); a no-op for every other parameter. For reading weights outside a
    forward, e.g. saving an adapter after ZeRO-3 training."""
    # DeepSpeed refuses nested gathers of one parameter: an outer call (saving) already holds them.
    partitioned = [p for p in params if hasattr(p, "ds_id") and id(p) not in _GATHERED]
    if not partitioned:
        yield
        return
    from deepspeed.runtime.zero import GatheredParameters

    with GatheredParameters(partitioned, modifier_rank=None):
        _GATHERED.update(id(p) for p in partitioned)
        try:
            yield
        finally:
            _GATHERED.difference_update(id(p) for p in partitioned)


def _is_dtensor(tensor: Any) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        return False
    return isinstance(tensor, DTensor)


def is_full_parameter(param: torch.Tensor, shape: Sequence[int]) -> bool:
    """Whether ``param`` holds the whole tensor of ``shape`` here (False for a DTensor shard, or an FSDP1
    flat-shard view outside its module's forward)."""
    return not _is_dtensor(param) and tuple(param.shape) == tuple(shape)


@torch.no_grad()
def global_squared_norms(
    groups: Sequence[Sequence[torch.Tensor]], device: torch.device | None = None
) -> torch.Tensor:
    """[len(groups)] float32: ‖∇‖² of each group's full gradient (absent gradients count 0), identical on
    every rank; one all-reduce for all groups together.

    In one process this is the plain local squared norm. Under torch.distributed, sharded gradients'
    local squares are summed over ranks and replicated ones averaged (see the module docstring).
    """
    sharded_parts: list[list[torch.Tensor]] = [[] for _ in groups]
    replicated_parts: list[list[torch.Tensor]] = [[] for _ in groups]
    for index, params in enumerate(groups):
        for param in params:
            grad, sharded = local_gradient(param)
            if grad is not None and grad.numel():
                (sharded_parts if sharded else replicated_parts)[index].append(grad)
                device = device or grad.device
    device = device or torch.device("cpu")
    count = len(groups)
    packed = torch.zeros(2 * count, dtype=torch.float32, device=device)
    flat = [g for parts in (sharded_parts, replicated_parts) for group in parts for g in group]
    if flat:
        squares = [n.float().to(device) ** 2 for n in torch._foreach_norm(flat)]
        position = 0
        for offset, parts in ((0, sharded_parts), (count, replicated_parts)):
            for index, group in enumerate(parts):
                if group:
                    packed[offset + index] = torch.stack(squares[position : position + len(group)]).sum()
                    position += len(group)
    if is_distributed():
        packed[count:] /= torch.distributed.get_world_size()
        all_reduce_sum_(packed)
    return packed[:count] + packed[count:]


# -- evaluation ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def sharded_evaluation(enabled: bool = True) -> Iterator[None]:
    """Inside, the batched scoring and generation loops (:func:`map_batches` callers in hyft.evaluation)
    split their batches over the ranks and gather the results; every rank must then run the same calls."""
    token = _SHARDED_EVALUATION.set(enabled and is_distributed())
    try:
        yield
    finally:
        _SHARDED_EVALUATION.reset(token)


def evaluation_is_sharded() -> bool:
    return _SHARDED_EVALUATION.get() and is_distributed()


def map_batches(
    fn: Callable[[T], R], items: Sequence[T], iterate: Callable[[Sequence], Any] = iter
) -> list[R]:
    """``[fn(item) for item in items]``; inside :func:`sharded_evaluation`, rank r computes items r, r+W, …
    and the results are all-gathered (``all_gather_object``) back into input order on every rank.

    Each item is one batch exactly as one process would form it, so every result equals the
    one-process result bit for bit on the same hardware. Ranks with fewer items repeat one and drop
    its result, so that all ranks run the same number of forwards (FSDP's all-gathers inside them).
    ``iterate`` wraps the local work (a progress bar). ``fn`` should return CPU objects (they are pickled).
    """
    if not evaluation_is_sharded():
        return [fn(item) for item in iterate(items)]
    rank, world = rank_and_world()
    mine = list(range(rank, len(items), world))
    rounds = math.ceil(len(items) / world)
    local: dict[int, R] = {}
    for step in iterate(range(rounds)):
        if step < len(mine):
            local[mine[step]] = fn(items[mine[step]])
        else:
            fn(items[0])  # discarded: keeps the ranks' forwards in step
    gathered: list[dict[int, R] | None] = [None] * world
    torch.distributed.all_gather_object(gathered, local)
    merged: dict[int, R] = {}
    for part in gathered:
        merged.update(part or {})
    return [merged[i] for i in range(len(items))]
