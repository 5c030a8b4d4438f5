"""``RunConfig``: one YAML from curation to report (``hyft run config.yaml``).

Sections, as in the shipped configs: ``run`` (name, seeds, output), ``data`` (task, languages, k-shot
protocol), ``curation`` (optional: a raw pool curated C0 → C1 → C2 and which stage feeds training),
``models``, ``methods`` (name → adapter settings), ``train``, ``eval``. Validation reports every
problem at once with file:line and did-you-mean (see :mod:`hyft.config.loading`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hyft.adapters.config import AdapterConfig
from hyft.config import LanguageCode
from hyft.governance.config import CurationConfig
from hyft.training.config import TrainConfig

Stage = Literal["C0", "C1", "C2"]


class RunSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Run folder name: results go to <output_dir>/<name>/.")
    output_dir: Path = Field(Path("runs"), description="Parent folder of run folders.")
    seeds: list[int] = Field([0], min_length=1, description="Seed indices; every number is reported over them.")


class DataSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="Task from the registry (hyft ls): demo-nli, xnli, sst2, ...")
    languages: list[LanguageCode] | None = Field(None, description="Languages to train and evaluate; default: all.")
    k_shots: list[int] = Field([32], min_length=1, description="Training examples per language (paper: 0/8/32/128).")
    data_dir: Path | None = Field(None, description="Benchmark files; default $HYFT_DATA_DIR, else ../shared/data.")
    max_length: int = Field(128, ge=8, description="Tokens per training/eval sequence (truncated).")
    max_eval_examples: int | None = Field(None, ge=1, description="First n test rows per language (None: all).")
    val_examples: int = Field(32, ge=0, description="Dev rows per language (not shots) for the per-epoch val loss.")

    @field_validator("k_shots")
    @classmethod
    def _non_negative(cls, values: list[int]) -> list[int]:
        if any(k < 0 for k in values):
            raise ValueError(f"k_shots must be ≥ 0, got {values}")
        return values


class CurationSection(BaseModel):
    """Curate a raw pool and draw the training shots from it instead of the task's dev split."""

    model_config = ConfigDict(extra="forbid")

    pool: str = Field(description="JSONL pool (text fields, label, lang); 'builtin:demo-pool' for the shipped one.")
    train_stage: Stage = Field("C2", description="Which curated view the main grid trains on.")
    ablation_stages: list[Stage] = Field([], description="Extra stages for the curation ablation (Table V).")
    ablation_methods: list[str] = Field([], description="Methods run at the ablation stages (default: all).")
    settings: CurationConfig = Field(description="Curation settings (hyft curate's config).")


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short label used in tables and cell ids.")
    name_or_path: str = Field(description="Hub id, local folder, or builtin:minilm (offline).")
    kind: Literal["encoder", "decoder"] = Field(description="encoder: classification head; decoder: causal LM.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Base weight dtype.")
    tokenizer: str | None = Field(None, description="Tokenizer id/folder; default: name_or_path.")


class EvalSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(32, ge=1, description="Sequences per evaluation forward.")
    orthographic: bool = Field(True, description="Also evaluate orthographic variants (Table IV).")
    temperature_scaling: bool = Field(True, description="Fit a temperature on dev; report ECE beside raw ECE.")
    calibration_examples: int = Field(64, ge=10, description="Dev rows per language for the temperature.")
    ece_bins: int = Field(15, ge=1, description="ECE bins (equal width).")
    bootstrap_resamples: int = Field(1000, ge=100, description="Paired bootstrap resamples for the CIs.")
    max_new_tokens: int | None = Field(None, ge=1, description="Generation tasks: token limit (default: the task's).")


class RunConfig(BaseModel):
    """Everything ``hyft run`` needs; cells = models × curation stages × k-shots × methods × seeds."""

    model_config = ConfigDict(extra="forbid")

    run: RunSection
    data: DataSection
    curation: CurationSection | None = None
    models: list[ModelEntry] = Field(min_length=1)
    methods: dict[str, AdapterConfig] = Field(
        min_length=1, description="Row label → AdapterConfig fields; 'method' defaults to the label."
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalSection = Field(default_factory=EvalSection)

    @model_validator(mode="before")
    @classmethod
    def _method_defaults_to_label(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("methods"), dict):
            data = {**data, "methods": {
                label: {"method": label, **(fields or {})} if isinstance(fields, dict | None) and
                "method" not in (fields or {}) else fields
                for label, fields in data["methods"].items()
            }}
        return data

    @field_validator("data")
    @classmethod
    def _known_task(cls, data: DataSection) -> DataSection:
        from hyft.tasks.registry import available_tasks, get_task, unknown_task_message

        if data.task not in available_tasks():
            raise ValueError(unknown_task_message(data.task))
        offered = set(get_task(data.task).languages)
        unknown = [lang for lang in data.languages or [] if lang not in offered]
        if unknown:
            raise ValueError(f"task {data.task!r} has no language(s) {unknown}; available: {sorted(offered)}")
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models need distinct names, got {names}")
        if self.curation:
            unknown = [m for m in self.curation.ablation_methods if m not in self.methods]
            if unknown:
                raise ValueError(f"curation.ablation_methods {unknown} are not in methods {list(self.methods)}")
        return self

    def adapter_config(self, label: str) -> AdapterConfig:
        return self.methods[label]

    @property
    def run_dir(self) -> Path:
        return self.run.output_dir / self.run.name
