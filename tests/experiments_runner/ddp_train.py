"""Launched by test_distributed.py under torchrun (2 CPU processes, gloo) or as a single process.

Trains LoRA on a tiny Llama with a fixed global batch and writes the loss curve (rank 0) to argv[1].
"""

import json
import sys

import torch

import hyft
from hyft.training import TrainConfig, train
from tests.conftest import tiny_llama

out, per_device_batch = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
generator = torch.Generator().manual_seed(7)
examples = [{"input_ids": ids, "labels": ids} for ids in torch.randint(3, 128, (32, 16), generator=generator).tolist()]
model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(method="lora", r=4, alpha=8))
result = train(model, examples, TrainConfig(epochs=2, batch_size=per_device_batch, lr=1e-2, seed=0), show_progress=False)
if int(__import__("os").environ.get("RANK", "0")) == 0:
    with open(out, "w") as handle:
        json.dump([row["loss"] for row in result.history["steps"]], handle)
