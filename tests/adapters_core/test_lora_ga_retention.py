"""LoRA-GA's gradient pass keeps nothing of a batch once its backward is done.

Its memory must not grow with ``init_batches``: what is kept across batches is the fixed-size fp32
sums (one per target), never a batch's saved activations, its outputs or a weight gradient. Checked on
the live tensors themselves (weak references), not on RSS: glibc's heap keeps freed pages and grows
with the batch count even when nothing is alive (measurements in docs/estimate.md).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

import hyft
from tests.conftest import model_inputs, tiny_bloom, tiny_llama

TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}
FACTORIES = {"llama": tiny_llama, "bloom": tiny_bloom}


@dataclass
class BatchTracker:
    """Weak references to every tensor a batch produces that the next batch must not see alive.

    The tensors autograd saves for backward (through ``saved_tensors_hooks``) and the model's output,
    each tagged with the batch (the forward) that made it; tensors on the storage of a parameter, a
    buffer or an input (weights saved for backward, the token ids the caller still holds) are not the
    batch's to free and are skipped.
    """

    model: nn.Module
    inputs: list[dict[str, torch.Tensor]]
    batch: int = -1
    refs: list[tuple[int, weakref.ref, int]] = field(default_factory=list)
    alive_at_next_forward: list[tuple[int, int]] = field(default_factory=list)  # (batch, bytes alive)
    grads_at_next_forward: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        owned = [*self.model.parameters(), *self.model.buffers()]
        owned += [v for batch in self.inputs for v in batch.values() if torch.is_tensor(v)]
        self.owned_storage = {t.untyped_storage().data_ptr() for t in owned}

    def track(self, tensor: torch.Tensor) -> None:
        if tensor.untyped_storage().data_ptr() not in self.owned_storage:
            self.refs.append((self.batch, weakref.ref(tensor), tensor.untyped_storage().nbytes()))

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.track(tensor)
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def alive_bytes(self) -> int:
        return sum(nbytes for _, ref, nbytes in self.refs if ref() is not None)

    def before_forward(self, module: nn.Module, args: tuple) -> None:
        # The previous batch's forward and backward are over: none of its tensors may still be alive.
        if self.batch >= 0:
            self.alive_at_next_forward.append((self.batch, self.alive_bytes()))
            self.grads_at_next_forward += [n for n, p in module.named_parameters() if p.grad is not None]
        self.batch += 1

    def after_forward(self, module: nn.Module, args: tuple, output: object) -> None:
        self.track(output.logits)


@pytest.mark.parametrize("family", ["llama", "bloom"])
@pytest.mark.parametrize("n_batches", [1, 4])
def test_lora_ga_init_keeps_nothing_of_a_batch_after_its_backward(family: str, n_batches: int) -> None:
    model = FACTORIES[family]()
    batches = [model_inputs(family, batch=2, length=12, seed=seed) for seed in range(n_batches)]
    tracker = BatchTracker(model, batches)
    handles = [
        model.register_forward_pre_hook(tracker.before_forward),
        model.register_forward_hook(tracker.after_forward),
    ]
    config = hyft.AdapterConfig(method="lora_ga", r=2, alpha=4, target_modules=TARGETS[family])
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
        wrapped = hyft.wrap(model, config, init_batches=batches)
    for handle in handles:
        handle.remove()

    assert tracker.batch == n_batches - 1
    # The tracker really saw each batch's activations (else the checks below would pass vacuously).
    assert {batch for batch, _, _ in tracker.refs} == set(range(n_batches))
    assert all(nbytes > 0 for _, _, nbytes in tracker.refs)
    assert tracker.alive_at_next_forward == [(batch, 0) for batch in range(n_batches - 1)]
    assert (
        tracker.grads_at_next_forward == []
    )  # each target's gradient left for the sums; no other weight got one
    assert tracker.alive_bytes() == 0  # nor does the finished init hold any batch's tensors
    assert wrapped.init_report.n_batches == n_batches
