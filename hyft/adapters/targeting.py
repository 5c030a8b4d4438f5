"""Find the ``nn.Linear`` modules an adapter targets, PEFT style (suffix list or regex)."""

from __future__ import annotations

import difflib
import re

from torch import nn

# Defaults per architecture (model.config.model_type), as PEFT users know them.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "key", "value", "dense"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
HEAD_NAMES = ("classifier", "score", "lm_head", "cls", "qa_outputs")


class TargetError(ValueError):
    """A target pattern matched nothing, or matched something that is not an nn.Linear."""


def matches_pattern(name: str, patterns: list[str] | str) -> bool:
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def _is_head(name: str) -> bool:
    return name.split(".")[0] in HEAD_NAMES or name.split(".")[-1] in ("lm_head",)


def find_targets(
    model: nn.Module,
    target_modules: list[str] | str | None,
    exclude_modules: list[str] | str | None = None,
) -> list[str]:
    """Return the dotted names of the ``nn.Linear`` modules to adapt, in module order.

    Raises TargetError when a pattern matches nothing, listing the closest module names.
    """
    linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if target_modules is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in DEFAULT_TARGETS:
            raise TargetError(
                f"no default target_modules for model_type {model_type!r}; set target_modules (e.g. "
                "'all-linear' or a list of names such as "
                f"{sorted({n.split('.')[-1] for n in linear_names})[:8]})"
            )
        target_modules = DEFAULT_TARGETS[model_type]
    if target_modules == "all-linear":
        chosen = [n for n in linear_names if not _is_head(n)]
    else:
        chosen = [n for n in linear_names if matches_pattern(n, target_modules) and not _is_head(n)]
        patterns = [target_modules] if isinstance(target_modules, str) else target_modules
        all_names = [n for n, _ in model.named_modules() if n]
        for pattern in patterns:
            as_patterns: list[str] | str = pattern if isinstance(target_modules, str) else [pattern]
            hits = [n for n in all_names if matches_pattern(n, as_patterns)]
            if not hits:
                suffixes = sorted({n.split(".")[-1] for n in linear_names})
                close = difflib.get_close_matches(pattern, suffixes, n=5, cutoff=0.4)
                raise TargetError(
                    f"target module pattern {pattern!r} matches no module of {type(model).__name__}; "
                    f"closest nn.Linear names: {close or suffixes[:10]}"
                )
            if not any(n in linear_names for n in hits):
                raise TargetError(
                    f"target module pattern {pattern!r} matches {hits[:3]} but none is an nn.Linear "
                    "(hyft adapts nn.Linear layers only)"
                )
    if exclude_modules is not None:
        chosen = [n for n in chosen if not matches_pattern(n, exclude_modules)]
    if not chosen:
        raise TargetError(f"target_modules={target_modules!r} selects no nn.Linear in {type(model).__name__}")
    return chosen


def find_heads(model: nn.Module, modules_to_save: list[str] | None) -> list[str]:
    """Dotted names of whole modules to train and save (a classification head by default)."""
    names = [n for n, _ in model.named_modules() if n]
    if modules_to_save is None:
        return [n for n in names if n in ("classifier", "score")]
    found = []
    for pattern in modules_to_save:
        hits = [n for n in names if n == pattern or n.endswith("." + pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.4)
            raise TargetError(f"modules_to_save entry {pattern!r} matches no module; closest: {close}")
        found.extend(hits)
    return found
