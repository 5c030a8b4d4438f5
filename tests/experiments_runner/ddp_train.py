"""Launched by test_distributed.py under torchrun (2 CPU processes, gloo) or as a single process.

Trains LoRA (or argv[3], e.g. ``hybrid``) on a tiny Llama with a fixed global batch through the trainer and
writes the loss curve (rank 0) to argv[1]; with a method, {"loss": [...], "lambda": [...], "distributed_type":
accelerate's, "adapter": the tensors save_pretrained wrote (rank 0)} from every rank to argv[1].rank<r>.
argv[4]: gradient accumulation steps (default 1). Under ``ACCELERATE_USE_DEEPSPEED=true`` the trainer runs
DeepSpeed ZeRO.
"""

import json
import os
import sys

import torch
from accelerate.state import AcceleratorState

import hyft
from hyft.training import TrainConfig, train
from hyft.training.data import collate
from tests.conftest import tiny_llama

out, per_device_batch = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
generator = torch.Generator().manual_seed(7)
examples = [
    {"input_ids": ids, "labels": ids} for ids in torch.randint(3, 128, (32, 16), generator=generator).tolist()
]
method = sys.argv[3] if len(sys.argv) > 3 else None
if method is None:
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=4, alpha=8))
else:  # LoRA-GA init on every rank alone (the process group starts in train), on the same batch
    config = hyft.AdapterConfig(method=method, r=4, alpha=8, boft_block_size=8, lambda_warmup_steps=0)
    model = hyft.wrap(tiny_llama(), config, init_batches=[collate(examples[:8])])
grad_accum = int(sys.argv[4]) if len(sys.argv) > 4 else 1
settings = TrainConfig(epochs=2, batch_size=per_device_batch, grad_accum=grad_accum, lr=1e-2, seed=0)
result = train(model, examples, settings, show_progress=False)
rank = int(os.environ.get("RANK", "0"))
if method is not None:  # every rank joins save_pretrained (ZeRO-3 gathers), rank 0 writes and reads it back
    folder = model.save_pretrained(f"{out}.adapter", is_main_process=rank == 0)
    saved_adapter = None
    if rank == 0:
        from safetensors.torch import load_file

        saved_adapter = {k: t.tolist() for k, t in load_file(folder / "adapter_model.safetensors").items()}
    with open(f"{out}.rank{rank}", "w") as handle:
        json.dump(
            {
                "loss": [row["loss"] for row in result.history["steps"]],
                "lambda": [row["lambda"] for row in result.history["steps"]],
                "distributed_type": str(AcceleratorState().distributed_type),
                "adapter": saved_adapter,
            },
            handle,
        )
elif rank == 0:
    with open(out, "w") as handle:
        json.dump([row["loss"] for row in result.history["steps"]], handle)
