"""``hyft.wrap`` / ``hyft.load``: put adapters on a model, save them PEFT-style, merge them away.

On disk an adapter is ``adapter_config.json`` + ``adapter_model.safetensors`` with PEFT's key layout
(``base_model.model.<module>.lora_A.weight``). LoRA and LoRA-GA (as a rank-2r LoRA) write a config that
``peft.PeftModel.from_pretrained`` reads; so do OFT and BOFT (PEFT's OFT/BOFT config, keys and Cayley sign,
:mod:`hyft.adapters.peft_format`) whenever a PEFT method computes them; the other methods use the same
layout with a hyft method type.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hyft.adapters.batched_rotation import prepare_rotation_blocks
from hyft.adapters.config import AdapterConfig
from hyft.adapters.layer import AdaptedLinear, adapted_layers
from hyft.adapters.lora_ga import LoraGaInitReport, estimate_lora_ga_init
from hyft.adapters.peft_format import (
    TENSOR_LAYOUT,
    foreign_peft_type,
    load_peft_state,
    peft_config_fields,
    peft_state,
    peft_type_for,
)
from hyft.adapters.quantized import (
    is_quantized_linear,
    is_quantized_model,
    quantization_kind,
)
from hyft.adapters.registry import NEEDS_GRADIENT_INIT, layer_builder
from hyft.adapters.targeting import find_heads, find_targets, matches_pattern
from hyft.io import fsync_dir, fsync_tree

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FULL_WEIGHTS_NAME = "model.safetensors"
FULL_INDEX_NAME = "model.safetensors.index.json"
# Full fine-tuning writes a plain transformers folder; its hyft block goes here, not in adapter_config.json,
# which transformers' from_pretrained would take for a PEFT adapter to load on top.
FULL_CONFIG_NAME = "hyft_config.json"
PEFT_PREFIX = "base_model.model."
FORMAT_VERSION = 1
logger = logging.getLogger(__name__)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def install_layers(base_model: nn.Module, config: AdapterConfig, targets: Iterable[str],
                   heads: Iterable[str] = (), inits: Mapping[str, Any] | None = None) -> None:
    """Freeze ``base_model``, replace each target by the method's adapted layer (its initial factors from
    ``inits[name]`` when given, else the method's default init), then unfreeze the ``heads``; in place."""
    base_model.requires_grad_(False)
    build = layer_builder(config.method)
    modules = dict(base_model.named_modules())
    for name in targets:
        _set_submodule(base_model, name, build(modules[name], config, name, (inits or {}).get(name)))
    for head in heads:
        base_model.get_submodule(head).requires_grad_(True)


def _written_by_save(name: str) -> bool:
    """Whether a file name is one :meth:`HyftModel.save_pretrained` writes (a stale one is dropped)."""
    return name in (CONFIG_NAME, FULL_CONFIG_NAME, "config.json", "generation_config.json") or (
        name.startswith("model") and (name.endswith(".safetensors") or name == FULL_INDEX_NAME)
    ) or name == WEIGHTS_NAME


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Rename the complete folder ``staging`` onto ``directory``.

    An existing ``directory`` is first renamed aside (so for an instant neither exists, never a mix), and
    whatever it held that save_pretrained does not write (a user's README, say) is moved into the new one.
    """
    if not directory.exists():
        os.replace(staging, directory)
        fsync_dir(directory.parent)
        return
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    for entry in directory.iterdir():
        if not _written_by_save(entry.name) and not (staging / entry.name).exists():
            os.replace(entry, staging / entry.name)
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    os.replace(directory, old / directory.name)
    os.replace(staging, directory)
    fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def _task_type(model: nn.Module) -> str | None:
    cls = type(model).__name__
    if cls.endswith("ForCausalLM"):
        return "CAUSAL_LM"
    if cls.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return None


class HyftModel(nn.Module):
    """A base model with adapters in place of its target ``nn.Linear`` layers.

    Behaves like the base model: ``forward`` and ``generate`` take the same arguments; attributes the
    wrapper does not have (``config``, ``device``...) are read from the base model.
    """

    def __init__(self, base_model: nn.Module, config: AdapterConfig, init_report: LoraGaInitReport | None = None):
        super().__init__()
        self.base_model = base_model
        self.adapter_config = config
        self.init_report = init_report
        # Found once: the adapters are in place before the wrapper is built, and walking every module
        # (with its nesting check) on each training forward and λ update would cost milliseconds per step.
        self._adapted = adapted_layers(base_model)
        # transformers modules that carry a `gradient_checkpointing` switch (set by
        # gradient_checkpointing_enable, on this wrapper or on the base model directly), found once too.
        self._checkpoint_switches = [m for m in base_model.modules() if hasattr(m, "gradient_checkpointing")]
        # Batched Cayley blocks for same-shaped BOFT layers (batched_rotation.py); turned off automatically
        # under gradient checkpointing, and settable by hand for a model checkpointed by other means.
        self.batch_rotations = True
        self._input_grad_hook: torch.utils.hooks.RemovableHandle | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and self.batch_rotations and not self.is_checkpointing() and not self.merged:
            # Prepared blocks are computed here, outside any checkpointed segment: a recomputation could
            # not find them again (non-reentrant checkpointing then refuses the differing saved tensors),
            # and a reentrant one would backpropagate through their shared graph once per segment. Under
            # checkpointing each layer therefore computes, and recomputes, its own blocks.
            prepare_rotation_blocks(self._adapted.values())
        return self.base_model(*args, **kwargs)

    # -- gradient checkpointing ------------------------------------------------------------------
    def is_checkpointing(self) -> bool:
        """Whether any module of the base model has gradient (activation) checkpointing switched on."""
        return any(getattr(m, "gradient_checkpointing", False) for m in self._checkpoint_switches)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None,
                                      **kwargs: Any) -> None:
        """Switch on the base model's gradient checkpointing (transformers' API, e.g.
        ``gradient_checkpointing_kwargs={"use_reentrant": False}``) and make the input embeddings' output
        require grad, so that a reentrant segment whose inputs come from frozen layers still passes
        gradients to the adapters inside it (PEFT does the same)."""
        base = self.base_model
        # transformers ≥ 5 renamed the method and warns on the old name; call whichever exists.
        enable = getattr(base, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs=gradient_checkpointing_kwargs, **kwargs)
        elif hasattr(base, "gradient_checkpointing_enable"):
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs,
                                               **kwargs)
        else:
            raise ValueError(f"{type(base).__name__} does not support gradient checkpointing")
        self._checkpoint_switches = [m for m in base.modules() if hasattr(m, "gradient_checkpointing")]
        self.enable_input_require_grads()

    def gradient_checkpointing_disable(self) -> None:
        """Switch the base model's gradient checkpointing off again."""
        base = self.base_model
        disable = getattr(base, "activation_checkpointing_disable", None)
        (disable or base.gradient_checkpointing_disable)()

    def enable_input_require_grads(self) -> None:
        """Make the input embeddings' output require grad (idempotent): the base model's own method when it
        has one and has not run yet, else a forward hook on ``get_input_embeddings()``."""
        base = self.base_model
        if getattr(base, "_require_grads_hooks", None) or getattr(base, "_require_grads_hook", None):
            return
        if self._input_grad_hook is not None:
            return
        if hasattr(base, "enable_input_require_grads"):
            base.enable_input_require_grads()
            return
        embeddings = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
        if embeddings is None:
            raise ValueError(f"{type(base).__name__} exposes no input embeddings to make require grad")

        def require_grad(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self._input_grad_hook = embeddings.register_forward_hook(require_grad)

    def disable_input_require_grads(self) -> None:
        """Undo :meth:`enable_input_require_grads`."""
        if self._input_grad_hook is not None:
            self._input_grad_hook.remove()
            self._input_grad_hook = None
        elif hasattr(self.base_model, "disable_input_require_grads"):
            self.base_model.disable_input_require_grads()

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model.generate(*args, **kwargs)

    def get_base_model(self) -> nn.Module:
        """The wrapped transformers model (PEFT's name for it)."""
        return self.base_model

    @property
    def accepts_loss_kwargs(self) -> bool:
        """Whether the base model's forward takes loss kwargs (``num_items_in_batch``): transformers' Trainer
        reads this, and would otherwise infer True from this wrapper's ``**kwargs``."""
        base = self.base_model
        if hasattr(type(base), "accepts_loss_kwargs") or "accepts_loss_kwargs" in vars(base):
            return bool(base.accepts_loss_kwargs)
        return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in inspect.signature(base.forward).parameters.values())

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.base_model, name)

    # -- inspection ------------------------------------------------------------------------------
    def adapted_layers(self) -> dict[str, AdaptedLinear]:
        """{dotted name in the base model: adapted layer}."""
        return dict(self._adapted)

    def head_names(self) -> list[str]:
        if self.adapter_config.method == "full":
            return []
        return find_heads(self.base_model, self.adapter_config.modules_to_save)

    def trainable_parameters(self) -> int:
        """Number of trainable scalars (adapters plus heads; every parameter for full fine-tuning)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def after_backward(self, branch_norms: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """Per-step hook called by the trainer after gradients are final, before clipping (λ updates).

        The hybrid layers' branch gradient norms are computed together: one all-reduce of the local
        squared norms for the whole model under torch.distributed (DDP, FSDP1, FSDP2), so every rank
        sets the same λ, the one a single process would set on the union batch. ``branch_norms``
        ({layer name: {"lora": g_L, "rotation": g_B}}, global norms as the trainer logs them) skips
        that computation.
        """
        from hyft.distributed import global_squared_norms

        if self.merged:
            return  # a merged adapter gets no gradients: zero norms must not move λ
        mixed, groups = [], []
        for name, layer in self.adapted_layers().items():
            if not hasattr(layer, "lambda_branches"):
                layer.after_backward()
            elif branch_norms is not None and name in branch_norms:
                norms = branch_norms[name]
                layer.mixer.update(norms.get("lora", 0.0), norms.get("rotation", 0.0))
            else:
                mixed.append(layer)
                groups.extend(layer.lambda_branches())
        if not mixed:
            return
        norms = global_squared_norms(groups, mixed[0].mixing_weight.device).sqrt()
        for index, layer in enumerate(mixed):
            layer.mixer.update(norms[2 * index], norms[2 * index + 1])

    def mixing_weights(self) -> dict[str, float]:
        """{layer name: λ} for hybrid layers (empty for other methods)."""
        return {n: float(m.mixing_weight) for n, m in self.adapted_layers().items() if hasattr(m, "mixing_weight")}

    # -- save / load / merge -------------------------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor that defines the adapter (and trained heads), with PEFT-style keys, on CPU."""
        if self.adapter_config.method == "full":
            return _untied_state(self.base_model)
        state: dict[str, torch.Tensor] = {}
        for name, layer in self.adapted_layers().items():
            for key, tensor in layer.adapter_state().items():
                state[f"{PEFT_PREFIX}{name}.{key}"] = tensor.detach().cpu().contiguous()
        for head in self.head_names():
            for key, tensor in self.base_model.get_submodule(head).state_dict().items():
                state[f"{PEFT_PREFIX}{head}.{key}"] = tensor.detach().cpu().contiguous()
        return state

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (no pickle) into ``directory``.

        Full fine-tuning of a transformers model writes a plain transformers folder instead (the model's own
        ``save_pretrained``: ``config.json`` and safetensors, sharded when large) plus ``hyft_config.json``;
        ``AutoModel*.from_pretrained(directory)`` loads it, and so does :func:`load`.
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        # Written whole into a temp folder beside the target, then renamed into place: a reader (or a
        # process killed mid-save) sees the previous complete folder or the new one, never a safetensors
        # without its config or a half-written file.
        staging = directory.parent / f".{directory.name}.saving-{uuid.uuid4().hex[:12]}"
        staging.mkdir()  # not mkdtemp: the folder gets the usual (umask) permissions, not 0700
        try:
            self._save_into(staging)
            fsync_tree(staging)
            _swap_into_place(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return directory

    def _save_into(self, directory: Path) -> None:
        """Write the adapter files into the (fresh, empty) folder ``directory``."""
        if self.adapter_config.method == "full" and hasattr(self.base_model, "save_pretrained"):
            self.base_model.save_pretrained(directory)
            (directory / CONFIG_NAME).unlink(missing_ok=True)  # a stale one would make transformers try PEFT
            (directory / FULL_CONFIG_NAME).write_text(json.dumps(self._saved_config(), indent=2, sort_keys=True) + "\n")
            return
        state = self.adapter_state_dict()
        peft_type = peft_type_for(self.adapter_config)
        if peft_type is not None:  # OFT/BOFT: PEFT's own keys, shapes and Cayley sign (peft_format.py)
            for layer_name, layer in self.adapted_layers().items():
                prefix = f"{PEFT_PREFIX}{layer_name}."
                for key in layer.adapter_state():
                    del state[prefix + key]
                state.update({prefix + key: t.cpu() for key, t in peft_state(layer, peft_type).items()})
        name = FULL_WEIGHTS_NAME if self.adapter_config.method == "full" else WEIGHTS_NAME
        save_file(state, str(directory / name), metadata={"format": "pt"})
        (directory / CONFIG_NAME).write_text(json.dumps(self._saved_config(), indent=2, sort_keys=True) + "\n")

    def _saved_config(self) -> dict[str, Any]:
        cfg = self.adapter_config
        base_name = getattr(getattr(self.base_model, "config", None), "_name_or_path", None) or None
        targets = sorted({n.split(".")[-1] for n in self.adapted_layers()})
        hyft_block = {
            "format_version": FORMAT_VERSION,
            "adapter": cfg.model_dump(mode="json"),
            "target_layers": sorted(self.adapted_layers()),
            "base_fingerprint": base_fingerprint(self),
            "base_quantization": base_quantization(self),
        }
        saved: dict[str, Any] = {
            "base_model_name_or_path": base_name,
            "task_type": _task_type(self.base_model),
            "target_modules": targets,
            "modules_to_save": [h.split(".")[-1] for h in self.head_names()] or None,
            "inference_mode": True,
            "hyft": hyft_block,
        }
        if cfg.method in ("lora", "lora_ga"):
            # LoRA-GA's frozen-init form is exactly a rank-2r LoRA with α doubled (×√2 with rsLoRA).
            doubled = cfg.method == "lora_ga"
            alpha = cfg.alpha * ((2**0.5 if cfg.use_rslora else 2.0) if doubled else 1.0)
            saved.update(
                peft_type="LORA",
                r=cfg.r * (2 if doubled else 1),
                lora_alpha=alpha,
                lora_dropout=cfg.dropout,
                use_rslora=cfg.use_rslora,
                bias="none",
                fan_in_fan_out=False,
                init_lora_weights=True,
            )
        elif (peft_type := peft_type_for(cfg)) is not None:
            # OFT/BOFT as PEFT's OFTConfig/BOFTConfig (peft_format.py); the targets exactly the adapted layers.
            saved.update(peft_config_fields(cfg, peft_type), target_modules=self._peft_targets(targets),
                         exclude_modules=None)
            hyft_block["tensor_layout"] = TENSOR_LAYOUT
        else:
            saved["peft_type"] = foreign_peft_type(cfg)  # what PEFT's KeyError will print
        return saved

    def _peft_targets(self, suffixes: list[str]) -> list[str]:
        """``target_modules`` for PEFT: the layers' last names when they pick exactly the adapted layers,
        else their full dotted names (PEFT matches a list entry exactly or as a ``.name`` suffix)."""
        adapted = set(self._adapted)
        picked = {n for n, m in self.base_model.named_modules()
                  if n.split(".")[-1] in suffixes and (n in adapted or isinstance(m, nn.Linear))}
        return suffixes if picked == adapted else sorted(adapted)

    @property
    def merged(self) -> bool:
        """Whether the adapters are merged into the base weights (:meth:`merge_adapter`)."""
        return any(layer.merged for layer in self._adapted.values())

    def merge_adapter(self, safe_merge: bool = False) -> None:
        """Fold every adapter into its base weight in place, reversibly (PEFT's ``merge_adapter``).

        Each layer's W_eff is computed in fp32 and cast once to the base dtype; the forward then runs
        through the plain base layers (the merged model's outputs equal the adapter's). The original W0
        tensors are kept, so :meth:`unmerge_adapter` restores them exactly (one extra copy of the adapted
        weights while merged). ``safe_merge=True`` checks each merged weight for NaN/Inf first and raises a
        ValueError naming the layer, leaving the whole model unmerged. A quantized base cannot hold a merged
        weight: use :meth:`merge_and_unload`, which dequantises.
        """
        if self.adapter_config.method == "full":
            raise ValueError("full fine-tuning has no adapter to merge: the trained weights are the model's own")
        if self.merged:
            warnings.warn("merge_adapter: the adapters are already merged; nothing done", stacklevel=2)
            return
        done = []
        try:
            for name, layer in self.adapted_layers().items():
                layer.merge(safe_merge=safe_merge, name=name)
                done.append(layer)
        except ValueError:
            for layer in done:
                layer.unmerge()
            raise

    def unmerge_adapter(self) -> None:
        """Undo :meth:`merge_adapter`: the kept W0 tensors go back and the adapters run again."""
        if not self.merged:
            warnings.warn("unmerge_adapter: the adapters are not merged; nothing done", stacklevel=2)
            return
        for layer in self._adapted.values():
            layer.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """Fold every adapter into its base weight (fp32 merge, one cast) and return the plain model.

        On a quantized base (bitsandbytes 4-/8-bit) each adapted layer is dequantised, merged and replaced
        by a full-precision ``nn.Linear`` in the model's floating dtype (its input embeddings'), with a
        warning: the merged layers take 4–8× the memory of the quantized ones. When no quantized layer is
        left, the model's quantization markers (``hf_quantizer``, ``config.quantization_config``) are
        removed, so that ``save_pretrained`` writes a plain full-precision checkpoint.
        """
        layers = self.adapted_layers()
        quantized = [name for name, layer in layers.items() if is_quantized_linear(layer.base_layer)]
        dtype = _floating_dtype(self.base_model) if quantized else None
        for name, layer in layers.items():
            _set_submodule(self.base_model, name, layer.merged_linear(dtype))
        if quantized:
            _after_dequantising_merge(self.base_model, quantized, dtype)
        return self.base_model


def _floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's unquantized weights (its input embeddings'), fp32 when it has none."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    return weight.dtype if weight is not None and weight.is_floating_point() else torch.float32


def _after_dequantising_merge(model: nn.Module, merged: list[str], dtype: torch.dtype) -> None:
    remaining = [n for n, m in model.named_modules() if is_quantized_linear(m)]
    message = (f"merge_and_unload dequantised {len(merged)} quantized layers and merged the adapters into "
               f"full-precision {dtype} nn.Linear layers (the merged model is not quantized)")
    if remaining:
        message += f"; {len(remaining)} layers without adapters stay quantized (e.g. {remaining[0]})"
    else:
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
            quantizer.remove_quantization_config(model)
    logger.warning(message)
    warnings.warn(message, stacklevel=3)


def base_fingerprint(model: HyftModel) -> dict[str, str]:
    """Per adapted layer: a short hash of W0 (fp32 norm + a few fixed entries) to refuse a wrong base.

    For a quantized layer W0 is the dequantised weight, so an adapter trained on a quantized base loads
    on the same base quantized the same way (and is refused on its full-precision original)."""
    prints = {}
    for name, layer in model.adapted_layers().items():
        weight = layer.base_weight().cpu()  # quantized bases: of the dequantised Ŵ; merged: the kept W0
        flat = weight.flatten()
        probe = torch.stack([weight.norm(), flat[0], flat[len(flat) // 2], flat[-1]])
        prints[name] = hashlib.sha256(f"{tuple(weight.shape)}{probe.tolist()}".encode()).hexdigest()[:16]
    return prints


def wrap(
    base_model: nn.Module,
    config: AdapterConfig,
    init_batches: Iterable[Mapping[str, torch.Tensor]] | None = None,
    seed: int = 0,
) -> HyftModel:
    """Put ``config.method`` adapters on ``base_model`` (modified in place) and freeze the base weights.

    ``init_batches`` (model-input dicts with labels) are required by LoRA-GA and the hybrid: the
    gradient they produce sets the initial adapter (methods.md §2).
    """
    if config.method == "full":
        _refuse_full_on_quantized(base_model)
        base_model.requires_grad_(True)
        return HyftModel(base_model, config)
    targets = find_targets(base_model, config.target_modules, config.exclude_modules)
    heads = find_heads(base_model, config.modules_to_save)
    targets = [t for t in targets if not any(t == h or t.startswith(h + ".") for h in heads)]
    inits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    report = None
    if config.method in NEEDS_GRADIENT_INIT and init_batches is not None:
        lora_targets = _lora_targets(base_model, targets, config)
        inits, report = estimate_lora_ga_init(base_model, lora_targets, init_batches, config, seed)
    elif config.method in NEEDS_GRADIENT_INIT:
        raise ValueError(
            f"method {config.method!r} needs init_batches (training batches with labels) to estimate the "
            "gradient for its LoRA-GA initialisation"
        )
    install_layers(base_model, config, targets, heads, inits)
    return HyftModel(base_model, config, report)


def base_quantization(model: HyftModel) -> str | None:
    """How the adapted layers' weights are stored: "nf4", "fp4", "int8" (or several, comma-joined), None
    for full precision; saved beside the fingerprint so a mismatch can name the cause."""
    kinds = sorted({kind for layer in model.adapted_layers().values()
                    if (kind := quantization_kind(layer.base_layer)) is not None})
    return ",".join(kinds) or None


def _refuse_full_on_quantized(model: nn.Module) -> None:
    if is_quantized_model(model):
        raise ValueError(
            "full fine-tuning needs a full-precision base: this model is quantized (bitsandbytes 4-/8-bit "
            "weights are frozen integers without gradients); load it without quantization, or train an "
            "adapter (lora, lora_ga, boft, oft, unitary, hybrid) on the quantized base"
        )


def _untied_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with each tied tensor once (BLOOM and GPT-2 tie lm_head to the embeddings;
    safetensors refuses shared storage), first name wins, as transformers saves it."""
    state, seen = {}, set()
    for key, tensor in model.state_dict().items():
        pointer = (tensor.device, tensor.data_ptr(), tensor.shape) if tensor.numel() else None
        if pointer is not None and pointer in seen:
            continue
        if pointer is not None:
            seen.add(pointer)
        state[key] = tensor.detach().cpu().contiguous()
    return state


def _load_untied_state(model: nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
    """Inverse of :func:`_untied_state`: every key the file lacks must be tied to one it has."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    loaded_pointers = {current[k].data_ptr() for k in state if k in current}
    untied = [k for k in missing if current[k].data_ptr() not in loaded_pointers]
    if untied or unexpected:
        raise ValueError(f"{directory / FULL_WEIGHTS_NAME}: does not fit {type(model).__name__}: missing "
                         f"{untied[:5]}, unexpected {list(unexpected)[:5]}")


def _read_full_state(directory: Path) -> dict[str, torch.Tensor]:
    """The full fine-tuning weights: ``model.safetensors``, or every shard its index names."""
    index = directory / FULL_INDEX_NAME
    if not (directory / FULL_WEIGHTS_NAME).is_file() and index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(directory / shard)))
        return state
    return load_file(str(directory / FULL_WEIGHTS_NAME))


def _lora_targets(model: nn.Module, targets: list[str], config: AdapterConfig) -> list[str]:
    """Layers that get a LoRA-GA branch (the hybrid's unitary-only layers do not)."""
    if config.method == "hybrid" and config.unitary_mode == "replace" and config.unitary_modules:
        return [t for t in targets if not matches_pattern(t, config.unitary_modules)]
    return targets


def load(base_model: nn.Module, directory: str | Path, is_trainable: bool = False) -> HyftModel:
    """Load an adapter saved by :meth:`HyftModel.save_pretrained` onto ``base_model`` (modified in place)."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file() and (directory / FULL_CONFIG_NAME).is_file():
        config_path = directory / FULL_CONFIG_NAME  # full fine-tuning saved as a transformers folder
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no adapter config (expected {CONFIG_NAME}, or "
                                f"{FULL_CONFIG_NAME} for full fine-tuning, from save_pretrained)")
    saved = json.loads(config_path.read_text())
    if "hyft" not in saved:
        raise ValueError(f"{config_path}: not a hyft adapter (no 'hyft' block); load PEFT adapters with peft")
    block = saved["hyft"]
    if block.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_path}: format_version {block.get('format_version')} != {FORMAT_VERSION}")
    config = AdapterConfig.model_validate(block["adapter"])
    if config.method == "full":
        _refuse_full_on_quantized(base_model)
        _load_untied_state(base_model, _read_full_state(directory), directory)
        base_model.requires_grad_(is_trainable)
        return HyftModel(base_model, config)
    state = load_file(str(directory / WEIGHTS_NAME))
    modules = dict(base_model.named_modules())
    for name in block["target_layers"]:
        if name not in modules:
            raise ValueError(f"{config_path}: adapted layer {name!r} does not exist in {type(base_model).__name__}")
    install_layers(base_model, config, block["target_layers"])
    model = HyftModel(base_model, config)
    mismatched = [n for n, fp in base_fingerprint(model).items() if block["base_fingerprint"].get(n) != fp]
    trained_on, loaded_on = block.get("base_quantization"), base_quantization(model)
    if mismatched and "base_quantization" in block and trained_on != loaded_on:
        raise ValueError(
            f"{config_path}: the adapter was trained on a {trained_on or 'full-precision'} base, and this base "
            f"is {loaded_on or 'full-precision'} (layers {mismatched[:3]}... differ); load the base the same "
            "way (models[].quantization), or merge on the base it was trained on"
        )
    if mismatched:
        raise ValueError(
            f"{config_path}: the base model's weights differ from the ones the adapter was trained on "
            f"(layers {mismatched[:3]}...); load it on the same base model"
        )
    for name, layer in model.adapted_layers().items():
        prefix = f"{PEFT_PREFIX}{name}."
        layer_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if block.get("tensor_layout") == TENSOR_LAYOUT:  # OFT/BOFT saved in PEFT's layout (peft_format.py)
            load_peft_state(layer, layer_state, saved["peft_type"])
        else:  # hyft's own layout, also every OFT/BOFT folder written before the PEFT layout
            layer.load_adapter_state(layer_state)
    for head in model.head_names():
        prefix = f"{PEFT_PREFIX}{head}."
        head_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        model.base_model.get_submodule(head).load_state_dict(head_state, strict=True)
    if not is_trainable:
        model.requires_grad_(False)
    model.eval()
    return model
