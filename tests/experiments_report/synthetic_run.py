"""A synthetic run folder shaped exactly like docs/results-schema.md (and evaluate_task's output).

1 model × 4 methods (lora, lora_ga, boft, hybrid) × k ∈ {8, 32} × curation ∈ {C0, C2} × 2 seeds, one
classification task over 3 languages, 40 test examples per language. Per-example correctness is drawn
with a method-specific skill: lora (0.35) is far below hybrid (0.85), and lora_ga copies hybrid's
predictions exactly, so the bootstrap must call the first difference significant and the second not.
Every accuracy in results.json is recomputed from the samples written beside it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from hyft.io import write_marker

MODEL = "minilm"
TASK = "xnli"
METHODS = ("lora", "lora_ga", "boft", "hybrid")
LANGUAGES = ("en", "zh", "hi")
K_SHOTS = (8, 32)
STAGES = ("C0", "C2")
SEEDS = (0, 1)
PER_LANGUAGE = 40
LABELS = ("entailment", "neutral", "contradiction")
SKILL = {"lora": 0.35, "boft": 0.6, "hybrid": 0.85}
PREDICTIONS_LIKE = {"lora_ga": "hybrid"}  # same predictions as hybrid: a difference of exactly zero


def _rng(*parts: Any) -> np.random.Generator:
    """A generator seeded from ``parts`` (stable across processes, unlike hash())."""
    digest = hashlib.sha256(json.dumps(parts).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _samples(method: str, k: int, stage: str, seed: int) -> list[dict[str, Any]]:
    profile = PREDICTIONS_LIKE.get(method, method)
    rng = _rng(profile, k, stage, seed)
    bonus = 0.03 * K_SHOTS.index(k) + 0.03 * STAGES.index(stage)
    samples = []
    for lang_index, lang in enumerate(LANGUAGES):
        for i in range(PER_LANGUAGE):
            gold = LABELS[i % 3]
            correct = rng.random() < SKILL[profile] + bonus - 0.05 * lang_index
            prediction = gold if correct else LABELS[(i + 1) % 3]
            confidence = float(np.round(0.4 + 0.5 * rng.random(), 4))
            rest = (1 - confidence) / 2
            probs = [confidence if label == prediction else rest for label in LABELS]
            samples.append(
                {
                    "id": f"xnli/test/{lang}/{i}",
                    "lang": lang,
                    "gold": gold,
                    "prediction": prediction,
                    "confidence": confidence,
                    "probs": probs,
                }
            )
    return samples


def _eval(samples: list[dict[str, Any]], rng: np.random.Generator, seed: int, k: int) -> dict[str, Any]:
    per_language, accuracy, ece = {}, {}, {}
    for lang in LANGUAGES:
        rows = [s for s in samples if s["lang"] == lang]
        acc = sum(s["prediction"] == s["gold"] for s in rows) / len(rows)
        lang_ece = float(rng.uniform(0.02, 0.12))
        clean, variant = acc, max(0.0, acc - float(rng.uniform(0.0, 0.08)))
        changed = float(rng.uniform(0.3, 0.9))
        per_language[lang] = {
            "n": len(rows),
            "accuracy": acc,
            "ece": lang_ece,
            "temperature": float(rng.uniform(0.8, 2.0)),
            "ece_temperature_scaled": lang_ece / 2,
            "orthographic": {
                "n": len(rows),
                "n_by_operation": {"punctuation": 10},
                "n_changed": int(changed * 40),
                "changed_share": changed,
                "acc_clean": clean,
                "acc_variant": variant,
                "drop_all": clean - variant,
                "drop_changed": None,
            },
        }
        accuracy[lang], ece[lang] = acc, lang_ece
    orthographic = {
        lang: {
            "clean": e["orthographic"]["acc_clean"],
            "variant": e["orthographic"]["acc_variant"],
            "drop": e["orthographic"]["drop_all"],
            "changed_share": e["orthographic"]["changed_share"],
        }
        for lang, e in per_language.items()
    }
    rows = list(orthographic.values())
    orthographic["macro"] = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    orthographic["macro"]["drop_gap"] = max(r["drop"] for r in rows) - min(r["drop"] for r in rows)
    return {
        "schema_version": 1,
        "task": TASK,
        "kind": "classification",
        "metric": "accuracy",
        "model_kind": "encoder",
        "num_fewshot": 0,
        "seed": seed,
        "languages": list(LANGUAGES),
        "shot_ids": {},
        "per_language": per_language,
        "accuracy": accuracy,
        "macro": sum(accuracy.values()) / len(accuracy),
        "delta": max(accuracy.values()) - min(accuracy.values()),
        "ece": ece,
        "avg_ece": sum(ece.values()) / len(ece),
        "avg_ece_temperature_scaled": sum(e / 2 for e in ece.values()) / len(ece),
        "ece_bins": 15,
        "orthographic": orthographic,
    }


def _footprint_and_dynamics(method: str, rng: np.random.Generator) -> tuple[dict, dict]:
    cost = {"lora": 1.0, "lora_ga": 1.1, "boft": 1.4, "hybrid": 1.5}[method]
    epochs = []
    for epoch in range(3):
        epochs.append(
            {
                "epoch": epoch,
                "train_loss": 1.1 - 0.2 * epoch,
                "grad_norm": float(2.0 / cost + rng.random()),
                "val_loss": float(1.05 - 0.15 * epoch + 0.02 * rng.random()),
                "epoch_time_s": float(10 * cost + rng.random()),
                "peak_memory_bytes": int(1.5e9 * cost + 1e7 * rng.random()),
            }
        )
    footprint = {
        "peak_memory_bytes": max(e["peak_memory_bytes"] for e in epochs),
        "step_time_median_s": float(0.4 * cost + 0.01 * rng.random()),
        "trainable_parameters": int(700_000 * cost),
        "total_parameters": 22_700_000,
        "init_seconds": 1.2,
        "train_seconds": float(sum(e["epoch_time_s"] for e in epochs)),
        "epoch_time_s": [e["epoch_time_s"] for e in epochs],
        "epoch_peak_memory_bytes": [e["peak_memory_bytes"] for e in epochs],
    }
    dynamics: dict[str, Any] = {"epochs": epochs}
    if method == "hybrid":
        dynamics["lambda"] = {
            f"encoder.layer.{layer}.attention.self.query": [
                float(np.clip(0.5 + 0.03 * step * (1 if layer == 0 else -1) + 0.01 * rng.random(), 0, 1))
                for step in range(12)
            ]
            for layer in range(2)
        }
    return footprint, dynamics


def curation_report() -> dict[str, Any]:
    """The governance report shape (hyft.governance.report.build_report), trimmed to what a report reads."""
    languages = {}
    for index, lang in enumerate(LANGUAGES):
        n_c0 = 200 - 10 * index
        languages[lang] = {
            "n_input": 210 - 10 * index,
            "n_c0": n_c0,
            "n_c1": n_c0 - 30,
            "n_c2": n_c0 - 50,
            "dropped": {
                "invalid_json": 10,
                "lid_mismatch": 20 + index,
                "exact_duplicate": 10 - index,
                "too_short": 20,
            },
        }
    return {"schema_version": 1, "languages": languages}


def make_run(root: Path) -> Path:
    """Write results.json, manifest.json and every samples file of the synthetic run under ``root``."""
    cells = []
    for stage in STAGES:
        for k in K_SHOTS:
            for method in METHODS:
                for seed in SEEDS:
                    cell_id = f"{MODEL}__{method}__{TASK}__k{k}__{stage}__seed{seed}"
                    samples = _samples(method, k, stage, seed)
                    samples_path = f"cells/{cell_id}/samples.jsonl"
                    (root / samples_path).parent.mkdir(parents=True, exist_ok=True)
                    (root / samples_path).write_text(
                        "".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8"
                    )
                    rng = _rng("metrics", method, k, stage, seed)
                    footprint, dynamics = _footprint_and_dynamics(method, rng)
                    cells.append(
                        {
                            "cell_id": cell_id,
                            "model": MODEL,
                            "method": method,
                            "task": TASK,
                            "k_shot": k,
                            "curation": stage,
                            "seed": seed,
                            "status": "done",
                            "eval": _eval(samples, rng, seed, k),
                            "samples_path": samples_path,
                            "footprint": footprint,
                            "dynamics": dynamics,
                            "adapter_dir": f"cells/{cell_id}/adapter",
                        }
                    )
    results = {
        "schema_version": 1,
        "run": {
            "name": "synthetic",
            "config_hash": "sha256:0123abcd",
            "created": "2026-11-29T18:00:00Z",
            "seeds": list(SEEDS),
            "models": [MODEL],
            "methods": list(METHODS),
            "tasks": [TASK],
            "k_shots": list(K_SHOTS),
            "curation_stages": list(STAGES),
            "primary_task": TASK,
        },
        "curation": curation_report(),
        "cells": cells,
    }
    (root / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    manifest = {
        "schema_version": 1,
        "data_files": [{"path": "data/xnli/xnli.test.en.jsonl", "bytes": 1234, "sha256": "ab" * 32}],
        "packages": {"torch": "2.13.0"},
        "python": "3.11.9",
        "git_commit": "abc123",
        "seeds": list(SEEDS),
    }
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_marker(
        root, ["results.json", "manifest.json"], kind="hyft run", config_hash=results["run"]["config_hash"]
    )
    return root
