"""OFT and BOFT adapters in PEFT's own format, so that ``peft.PeftModel.from_pretrained`` loads them.

hyft's OFT/BOFT equal PEFT's (``tests/adapters_orthogonal/test_peft_fidelity.py``); only the storage
differs. On disk, for an adapter PEFT can hold:

- method "oft" without ``boft_scale`` → PEFT ``OFT``: ``oft_R.weight`` (d/b, b(b−1)/2), the strict upper
  triangles PEFT's ``OFTRotationModule`` expands. PEFT's exact Cayley (``use_cayley_neumann: false``) is
  ``(I − S)(I + S)^{-1}``, the transpose of hyft's ``(I + Q)(I − Q)^{-1}``: the tensor written is ``−Q``.
  Its Cayley–Neumann path has hyft's sign: the tensor is ``Q`` (``num_cayley_neumann_terms`` = hyft's
  ``cayley_neumann_terms``, PEFT ≥ 0.18's series).
- method "boft" with the exact Cayley map, and "oft" with ``boft_scale`` (PEFT's BOFT with m = 1 is OFT
  with a per-output scale) → PEFT ``BOFT``: ``boft_R`` (m, d/b, b, b) full matrices, of which PEFT takes the
  skew part S, written as ``S = −Q``; ``boft_s`` (d_out, 1), ones when hyft trains no scale.

Anything else (rotation on the output side, BOFT with the Neumann map, unitary, hybrid) has no PEFT
type that computes it and stays a hyft type; :func:`foreign_peft_type` is then the ``peft_type`` written,
worded so that the KeyError PEFT raises on it says what to do instead.
"""

from __future__ import annotations

from typing import Any

import torch

from hyft.adapters.cayley import skew_from_upper, upper_from_skew
from hyft.adapters.config import AdapterConfig
from hyft.adapters.layer import check_shape

# PEFT 0.18 changed its Cayley–Neumann series to the one hyft computes (PEFT warns for older files).
PEFT_VERSION = "0.18.0"
# The hyft block's marker: tensors stored as PEFT names and signs them (absent in older folders).
TENSOR_LAYOUT = "peft"


def peft_type_for(config: AdapterConfig) -> str | None:
    """PEFT's type that computes this adapter exactly ("OFT" or "BOFT"), or None when none does."""
    if config.method not in ("oft", "boft") or config.rotation_side != "input":
        return None
    if config.method == "oft" and not config.boft_scale:
        return "OFT"
    if config.cayley == "exact":
        return "BOFT"
    return None


def foreign_peft_type(config: AdapterConfig) -> str:
    """The ``peft_type`` of an adapter PEFT cannot hold: PEFT reports it verbatim (``KeyError: '…'``)."""
    method = config.method.upper()
    if config.method in ("oft", "boft"):
        why = (
            "its rotation acts on the output side"
            if config.rotation_side != "input"
            else "PEFT's BOFT has no Cayley-Neumann map"
        )
    else:
        why = "no PEFT method computes it"
    return (
        f"HYFT_{method} (a hyft {config.method} adapter; PEFT cannot load it: {why}). Load it with "
        "hyft.load(base_model, this_folder), or write a plain transformers model with "
        "`hyft export THIS_FOLDER --base MODEL --out DIR --merged`"
    )


def peft_config_fields(config: AdapterConfig, peft_type: str) -> dict[str, Any]:
    """The fields of PEFT's ``OFTConfig`` / ``BOFTConfig`` for ``config`` (PEFT's names and defaults)."""
    common = {
        "peft_type": peft_type,
        "peft_version": PEFT_VERSION,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_weights": True,
        "layers_to_transform": None,
        "layers_pattern": None,
    }
    size, number = config.boft_block_size or 0, config.boft_block_num or 0
    if peft_type == "OFT":
        return {
            **common,
            "r": number,
            "oft_block_size": size,
            "module_dropout": config.boft_dropout,
            "coft": False,
            "eps": 6e-5,
            "block_share": False,
            "use_cayley_neumann": config.cayley == "neumann",
            "num_cayley_neumann_terms": config.cayley_neumann_terms,
        }
    if peft_type == "BOFT":
        return {
            **common,
            "boft_block_size": size,
            "boft_block_num": number,
            "boft_n_butterfly_factor": config.boft_n_butterfly_factor,
            "boft_dropout": config.boft_dropout,
        }
    raise ValueError(f"unknown PEFT type {peft_type!r} (expected 'OFT' or 'BOFT')")


def _exact_sign(layer: Any) -> float:
    return -1.0 if layer.cayley_form == "exact" else 1.0


def peft_state(layer: Any, peft_type: str) -> dict[str, torch.Tensor]:
    """A hyft :class:`~hyft.adapters.boft.BoftLinear`'s tensors as PEFT stores them
    (keys relative to the layer)."""
    generators = layer.boft_R.detach()
    if peft_type == "OFT":
        return {"oft_R.weight": (_exact_sign(layer) * generators[0]).contiguous()}
    if peft_type == "BOFT":
        scale = (
            layer.boft_s.detach()
            if layer.boft_s is not None
            else torch.ones(layer.out_features, 1, dtype=generators.dtype, device=generators.device)
        )
        return {
            "boft_R": skew_from_upper(-generators, layer.block_size).contiguous(),
            "boft_s": scale.contiguous(),
        }
    raise ValueError(f"unknown PEFT type {peft_type!r} (expected 'OFT' or 'BOFT')")


def load_peft_state(layer: Any, state: dict[str, torch.Tensor], peft_type: str) -> None:
    """Inverse of :func:`peft_state`; also reads a PEFT-trained ``boft_R`` (only its skew part counts)."""
    shape = tuple(layer.boft_R.shape)
    if peft_type == "OFT":
        generators = _exact_sign(layer) * check_shape("oft_R.weight", state["oft_R.weight"], shape[1:])
        scale = None
    elif peft_type == "BOFT":
        full = check_shape("boft_R", state["boft_R"], (*shape[:2], layer.block_size, layer.block_size))
        generators = upper_from_skew(-0.5 * (full - full.transpose(-1, -2)))
        scale = check_shape("boft_s", state["boft_s"], (layer.out_features, 1))
        if layer.boft_s is None and not torch.equal(scale, torch.ones_like(scale)):
            raise ValueError(
                "boft_s: this adapter trains no per-output scale (boft_scale off), yet the saved "
                "boft_s is not all ones"
            )
    else:
        raise ValueError(f"unknown PEFT type {peft_type!r} (expected 'OFT' or 'BOFT')")
    generators = generators.reshape(shape)
    # Through the layer's own loader (hyft's keys: the generators first, then the scale when trained).
    keys = list(layer.adapter_state())
    own = {keys[0]: generators[0] if layer.method == "oft" else generators}
    if len(keys) > 1:
        own[keys[1]] = scale if scale is not None else torch.ones_like(layer.boft_s)
    layer.load_adapter_state(own)
