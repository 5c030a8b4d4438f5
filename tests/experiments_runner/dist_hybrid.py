"""Launched by test_distributed.py under torchrun (2 CPU processes, gloo), or as one process (no torchrun).

``python dist_hybrid.py OUT.json CHECK [CHECK ...]`` runs each check and writes, per rank, what it saw
to ``OUT.json.rank<r>``:

- ``lora_ga``: the hybrid's LoRA-GA factors (A0, B0 of every layer) from 3 init batches, which the
  ranks split (2 + 1) and all-reduce.
- ``ddp`` / ``fsdp2`` / ``fsdp1``: 4 optimizer steps of the hybrid on a tiny Llama; each step's global
  batch of 4 sequences is split over the ranks (2 each); λ of every layer after each step. One process
  (any of the three names) trains on the whole batch.
- ``zero2`` / ``zero3``: the same 4 steps under DeepSpeed ZeRO-2 / ZeRO-3 (``deepspeed.initialize`` on
  gloo; ZeRO-3 with ``stage3_param_persistence_threshold: 0`` so that every weight, the adapter's
  included, is partitioned): λ after each step, and the adapter's saved tensors after the last.
- ``eval``: demo-nli classification (decoder, verbaliser scores) of a tiny Llama, sharded over the
  ranks inside ``sharded_evaluation``.
"""

from __future__ import annotations

import json
import os
import sys

import torch

import hyft
from hyft.distributed import rank_and_world
from tests.conftest import tiny_llama

STEPS, GLOBAL_BATCH, LENGTH = 4, 4, 16
CONFIG = dict(method="hybrid", r=4, alpha=8, boft_block_size=8, lambda_warmup_steps=0, lambda_ema=0.5)


def _data() -> tuple[list[dict], torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    init = [
        {"input_ids": ids, "labels": ids}
        for ids in torch.randint(3, 128, (3, GLOBAL_BATCH, LENGTH), generator=generator)
    ]
    steps = torch.randint(3, 128, (STEPS, GLOBAL_BATCH, LENGTH), generator=generator)
    return init, steps


def check_lora_ga() -> dict:
    init, _ = _data()
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(**CONFIG), init_batches=init)
    return {
        name: {"A0": layer.lora.lora_A0.tolist(), "B0": layer.lora.lora_B0.tolist()}
        for name, layer in model.adapted_layers().items()
    }


def _shard(model, mode: str):
    """The model as the training loop calls it, and whether parameters are sharded."""
    if mode == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    if mode == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (torch.distributed.get_world_size(),))
        for block in model.base_model.model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    if mode == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        return FullyShardedDataParallel(
            model,
            use_orig_params=True,
            device_id=torch.device("cpu"),
            auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}),
        )
    raise ValueError(mode)


def check_lambda(mode: str) -> dict:
    rank, world = rank_and_world()
    init, steps = _data()
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(**CONFIG), init_batches=init)
    model.train()
    trained = _shard(model, mode) if world > 1 else model
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-2)
    share = GLOBAL_BATCH // world
    lambdas, losses = [], []
    for ids in steps:
        mine = ids[rank * share : (rank + 1) * share]
        loss = trained(input_ids=mine, labels=mine).loss
        loss.backward()
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lambdas.append(model.mixing_weights())
        losses.append(float(loss.detach()))
    return {"lambda": lambdas, "loss": losses}


def check_zero(stage: int) -> dict:
    """``check_lambda`` under DeepSpeed ZeRO-``stage``: the engine's backward, λ, then the engine's step."""
    import deepspeed

    rank, world = rank_and_world()
    init, steps = _data()
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(**CONFIG), init_batches=init)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    settings = {
        "train_micro_batch_size_per_gpu": GLOBAL_BATCH // world,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": stage, "stage3_param_persistence_threshold": 0},
        "zero_allow_untested_optimizer": True,
    }
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=settings)
    share = GLOBAL_BATCH // world
    lambdas, losses = [], []
    for ids in steps:
        mine = ids[rank * share : (rank + 1) * share]
        loss = engine(input_ids=mine, labels=mine).loss
        engine.backward(loss)
        model.after_backward()  # between backward and step: DeepSpeed frees the gradient partitions in step
        engine.step()
        lambdas.append(model.mixing_weights())
        losses.append(float(loss.detach()))
    partitioned = sum(hasattr(p, "ds_id") and p.numel() == 0 for p in model.parameters())
    state = {key: tensor.tolist() for key, tensor in model.adapter_state_dict().items()}
    return {"lambda": lambdas, "loss": losses, "state": state, "partitioned_parameters": partitioned}


def check_trained_state() -> dict:
    """One process: ``check_lambda("ddp")`` plus the adapter's saved tensors (the reference for ZeRO)."""
    init, steps = _data()
    model = hyft.wrap(tiny_llama(), hyft.AdapterConfig(**CONFIG), init_batches=init)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    lambdas = []
    for ids in steps:
        model(input_ids=ids, labels=ids).loss.backward()
        model.after_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lambdas.append(model.mixing_weights())
    return {"lambda": lambdas, "state": {key: t.tolist() for key, t in model.adapter_state_dict().items()}}


def check_eval() -> dict:
    from hyft.distributed import sharded_evaluation
    from hyft.evaluation.evaluate import evaluate_task
    from hyft.tasks.templates import nli_template
    from tests.tasks.conftest import make_llama, make_tokenizer

    tokenizer = make_tokenizer()
    model = make_llama(len(tokenizer), seed=3).eval()
    with sharded_evaluation():
        result = evaluate_task(
            model,
            tokenizer,
            "demo-nli",
            ["en", "es"],
            model_kind="decoder",
            batch_size=3,
            max_examples=7,
            progress=False,
            orthographic=True,
            temperature_scaling=True,
            calibration_examples=5,
            templates={"*": nli_template("en")},
        )
    return result


def main() -> None:
    out, checks = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    if "RANK" in os.environ and any(check.startswith("zero") for check in checks):
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")  # DeepSpeed's comm layer on torch.distributed's gloo
    elif "RANK" in os.environ:
        torch.distributed.init_process_group("gloo")
    rank, _ = rank_and_world()
    results = {}
    for check in checks:
        if check == "lora_ga":
            results[check] = check_lora_ga()
        elif check == "eval":
            results[check] = check_eval()
        elif check.startswith("zero"):
            results[check] = check_zero(int(check.removeprefix("zero")))
        elif check == "trained_state":
            results[check] = check_trained_state()
        else:
            results[check] = check_lambda(check)
    with open(f"{out}.rank{rank}", "w") as handle:
        json.dump(results, handle)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
