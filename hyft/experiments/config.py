"""``RunConfig``: one YAML from curation to report (``hyft run config.yaml``).

Sections, as in the shipped configs: ``run`` (name, seeds, output), ``data`` (task or tasks, languages,
k-shot protocol), ``curation`` (optional: a raw pool curated C0 → C1 → C2 and which stage feeds
training), ``models``, ``methods`` (name → adapter settings), ``train``, ``search`` (optional: a grid of
train settings chosen per model, task and method on validation rows, see :mod:`hyft.experiments.search`),
``eval``. Validation reports every problem at once with file:line and did-you-mean (see
:mod:`hyft.config.loading`).

Several tasks: ``data.tasks: [xnli, glue]`` runs every task in one grid (``data.task: xnli`` is the
one-task shorthand; set exactly one of them). A group name (``glue`` → mnli, sst2, qnli, and qqp when
its file exists) expands to its member tasks. ``data.languages`` applies to multilingual tasks only; a
task with one language (GLUE: English) always runs in that language.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hyft.adapters.config import AdapterConfig
from hyft.config import LanguageCode
from hyft.governance.config import CurationConfig
from hyft.models import Quantization
from hyft.tasks.custom import CUSTOM_TASK, CustomTaskSpec
from hyft.tasks.templates import ChatTemplateMode
from hyft.training.config import TrainConfig

if TYPE_CHECKING:
    from hyft.tasks.base import Task
    from hyft.tasks.loading import DataSource

Stage = Literal["C0", "C1", "C2"]


class RunSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Run folder name: results go to <output_dir>/<name>/.")
    output_dir: Path = Field(Path("runs"), description="Parent folder of run folders.")
    seeds: list[int] = Field(
        [0], min_length=1, description="Seed indices; every number is reported over them."
    )


class DataSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(
        None,
        description="One task or group from the registry (hyft ls): demo-nli, xnli, "
        "sst2, glue, ...; shorthand for tasks: [task].",
    )
    tasks: list[str] | None = Field(
        None,
        min_length=1,
        description="Several tasks and/or groups run in one grid "
        "(glue = mnli, sst2, qnli, qqp when its file exists); set task or tasks.",
    )
    languages: list[LanguageCode] | None = Field(
        None, description="Languages to train and evaluate; default: all."
    )
    k_shots: list[int] = Field(
        [32], min_length=1, description="Training examples per language (paper: 0/8/32/128)."
    )
    data_dir: Path | None = Field(
        None, description="Benchmark files; default $HYFT_DATA_DIR, else ../shared/data."
    )
    max_length: int = Field(128, ge=8, description="Tokens per training/eval sequence (truncated).")
    max_eval_examples: int | None = Field(
        None, ge=1, description="First n test rows per language (None: all)."
    )
    val_examples: int = Field(
        32,
        ge=0,
        description="Dev rows per language (not shots, sharing no premise with them) for the per-epoch val "
        "loss, the search score and the temperature fit.",
    )
    custom: CustomTaskSpec | None = Field(
        None,
        description="task: custom — your own JSONL/CSV/Parquet file(s): "
        "{test, train, text_fields, label_field, label_names, language_field "
        "or language, verbalizers} (hyft.tasks.custom).",
    )

    @field_validator("k_shots")
    @classmethod
    def _non_negative(cls, values: list[int]) -> list[int]:
        if any(k < 0 for k in values):
            raise ValueError(f"k_shots must be ≥ 0, got {values}")
        return values

    @model_validator(mode="after")
    def _task_or_tasks(self) -> DataSection:
        if (self.task is None) == (self.tasks is None):
            raise ValueError(
                "set exactly one of data.task (one task, e.g. task: xnli) and data.tasks "
                "(several, e.g. tasks: [xnli, glue])"
            )
        if (CUSTOM_TASK in self.task_names) != (self.custom is not None):
            raise ValueError(
                "task 'custom' and the data.custom section go together: data.custom names the file(s) "
                "and columns (test, text_fields, label_field, label_names), task: custom uses them"
            )
        return self

    @property
    def task_names(self) -> list[str]:
        """The configured task and group names, unexpanded (``[task]`` for the shorthand)."""
        return [self.task] if self.task is not None else list(self.tasks or [])


class CurationSection(BaseModel):
    """Curate a raw pool and draw the training shots from it instead of the task's dev split."""

    model_config = ConfigDict(extra="forbid")

    pool: str = Field(
        description="Pool file: JSONL, CSV or Parquet (text fields, label, lang; columns named by "
        "settings); 'builtin:demo-pool' for the shipped one."
    )
    train_stage: Stage = Field("C2", description="Which curated view the main grid trains on.")
    ablation_stages: list[Stage] = Field([], description="Extra stages for the curation ablation (Table V).")
    ablation_methods: list[str] = Field([], description="Methods run at the ablation stages (default: all).")
    settings: CurationConfig = Field(description="Curation settings (hyft curate's config).")
    decontaminate_against_eval: bool = Field(
        True,
        description="Drop pool records that copy a row of the run's own evaluation splits "
        "(reason eval_contamination, counted per language in the curation report).",
    )


SEARCH_METRICS = ("accuracy", "val_loss")
# Train settings a search may not vary: the seed is the cell's, the rest only change logging/checkpoints.
UNSEARCHABLE_FIELDS = frozenset(
    {"seed", "log_every", "checkpoint_every", "keep_checkpoints", "report_to", "tracker_project"}
)


class SearchSection(BaseModel):
    """A grid of train settings tried per (model, task, method) on validation rows;
    the best one trains the cells.

    See :mod:`hyft.experiments.search` for which LR fields matter to which method.
    """

    model_config = ConfigDict(extra="forbid")

    grid: dict[str, list[Any]] = Field(
        min_length=1,
        description="Train field → values to try, e.g. {lr: [3.0e-4, 1.0e-3], lr_lora_ga: [1.0e-5, 3.0e-5]}.",
    )
    methods: list[str] | None = Field(None, min_length=1, description="Method labels searched; default: all.")
    k_shot: int | None = Field(
        None, ge=1, description="k the search trains at; default: the largest data.k_shots."
    )
    seeds: list[int] | None = Field(
        None, min_length=1, description="Seeds of the search; default: the run's first."
    )
    metric: Literal["accuracy", "val_loss"] = Field(
        "accuracy", description="Validation accuracy (classification tasks; others use val_loss) or val_loss."
    )

    @field_validator("grid")
    @classmethod
    def _train_fields(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        from pydantic import ValidationError

        valid = sorted(set(TrainConfig.model_fields) - UNSEARCHABLE_FIELDS)
        problems, coerced = [], {}
        for name, values in grid.items():
            if name in UNSEARCHABLE_FIELDS:
                problems.append(
                    f"train field {name!r} cannot be searched (the seed is the cell's; the others only "
                    "change logging and checkpoints)"
                )
                continue
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"unknown train field {name!r}{hint}; valid fields: {', '.join(valid)}")
                continue
            if not values:
                problems.append(f"grid.{name} needs at least one value")
                continue
            coerced[name] = []
            for value in values:
                try:  # YAML reads 1e-3 as a string: keep the value TrainConfig makes of it
                    coerced[name].append(getattr(TrainConfig.model_validate({name: value}), name))
                except ValidationError as exc:
                    problems.append(f"grid.{name}: {value!r} is not valid ({exc.errors()[0]['msg']})")
            if len(set(map(repr, coerced[name]))) != len(coerced[name]):
                problems.append(f"grid.{name} repeats a value: {values}")
        if problems:
            raise ValueError("; ".join(problems))
        return coerced


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short label used in tables and cell ids.")
    name_or_path: str = Field(description="Hub id, local folder, or builtin:minilm (offline).")
    kind: Literal["encoder", "decoder"] = Field(
        description="encoder: classification head; decoder: causal LM."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Base weight dtype.")
    tokenizer: str | None = Field(None, description="Tokenizer id/folder; default: name_or_path.")
    quantization: Quantization | None = Field(
        None,
        description="Load the base quantized with bitsandbytes: {bits: 4|8, quant_type: nf4|fp4, "
        "compute_dtype: bf16|fp16|fp32, double_quant: bool}; adapters train on the frozen quantized weights.",
    )


class EvalSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(32, ge=1, description="Sequences per evaluation forward.")
    orthographic: bool = Field(True, description="Also evaluate orthographic variants (Table IV).")
    temperature_scaling: bool = Field(
        True, description="Fit a temperature on dev; report ECE beside raw ECE."
    )
    calibration_examples: int = Field(64, ge=10, description="Dev rows per language for the temperature.")
    ece_bins: int = Field(15, ge=1, description="ECE bins (equal width).")
    bootstrap_resamples: int = Field(1000, ge=100, description="Paired bootstrap resamples for the CIs.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="Generation tasks: token limit (default: the task's)."
    )
    chat_template: ChatTemplateMode = Field(
        "auto",
        description="Decoders: auto puts prompts (training examples and evaluation alike) in the tokenizer's "
        "chat template when it has one (tokenizer.chat_template), as one user "
        "message; never: plain-text prompts.",
    )
    judge: str | None = Field(
        None,
        description="MT-Bench: local causal LM (path or cached Hub id) that grades "
        "answers 1–10 (hyft.evaluation.judge); none: BLEU against the GPT-4 references only.",
    )
    allow_unsafe_code: bool = Field(
        False,
        description="HumanEval: run model-written code even where the kernel gives no sandbox (no user "
        "namespaces): rlimits and an audit hook only. Same as `hyft evaluate --unsafe-code`.",
    )


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
    search: SearchSection | None = None
    eval: EvalSection = Field(default_factory=EvalSection)

    @model_validator(mode="before")
    @classmethod
    def _method_defaults_to_label(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("methods"), dict):
            data = {
                **data,
                "methods": {
                    label: {"method": label, **(fields or {})}
                    if isinstance(fields, dict | None) and "method" not in (fields or {})
                    else fields
                    for label, fields in data["methods"].items()
                },
            }
        return data

    @field_validator("data")
    @classmethod
    def _known_task(cls, data: DataSection) -> DataSection:
        from hyft.tasks.custom import register_custom_task
        from hyft.tasks.loading import DataError, DataSource
        from hyft.tasks.registry import available_tasks, expand_task_names, get_task, unknown_task_message

        if data.custom is not None:
            # reads the files: a wrong column fails here, at the config's data.custom, naming the columns
            try:
                register_custom_task(data.custom)
            except DataError as exc:
                raise ValueError(str(exc)) from None
        unknown_names = [name for name in data.task_names if name not in available_tasks()]
        if unknown_names:
            raise ValueError("; ".join(unknown_task_message(name) for name in unknown_names))
        for name in expand_task_names(data.task_names, DataSource.default(data.data_dir)):
            offered = set(get_task(name).languages)
            if len(offered) == 1:
                continue  # one-language task (GLUE: English): data.languages does not apply
            unknown = [lang for lang in data.languages or [] if lang not in offered]
            if unknown:
                raise ValueError(f"task {name!r} has no language(s) {unknown}; available: {sorted(offered)}")
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models need distinct names, got {names}")
        quantized = [m.name for m in self.models if m.quantization is not None]
        full = [label for label, method in self.methods.items() if method.method == "full"]
        if quantized and full:
            raise ValueError(
                f"methods {full} fine-tune every weight, which a quantized base cannot (models "
                f"{quantized} set quantization); drop them or load those models unquantized"
            )
        if self.curation:
            unknown = [m for m in self.curation.ablation_methods if m not in self.methods]
            if unknown:
                raise ValueError(
                    f"curation.ablation_methods {unknown} are not in methods {list(self.methods)}"
                )
            if len(self.tasks()) > 1:
                raise ValueError(
                    f"curation feeds the shots of one task, but data names {self.tasks()}; "
                    "curate in a run with one task"
                )
        if self.search is not None:
            self._check_search(self.search)
        return self

    def _check_search(self, search: SearchSection) -> None:
        unknown = [m for m in search.methods or [] if m not in self.methods]
        if unknown:
            raise ValueError(f"search.methods {unknown} are not in methods {list(self.methods)}")
        if self.search_k_shot() < 1:
            raise ValueError("search trains at a k > 0: set search.k_shot or a data.k_shots value above 0")
        if self.data.val_examples < 1:
            raise ValueError("search scores on held-out validation rows: set data.val_examples ≥ 1")
        base = self.train.model_dump()
        for name, values in search.grid.items():
            for value in values:
                try:
                    TrainConfig.model_validate({**base, name: value})
                except ValueError as exc:
                    raise ValueError(f"search.grid.{name}={value!r} with the train section: {exc}") from None

    def data_source(self) -> DataSource:
        """Where the run reads benchmark files (``data.data_dir``, else the default)."""
        from hyft.tasks.loading import DataSource

        return DataSource.default(self.data.data_dir)

    def tasks(self) -> list[str]:
        """Every task of the run, groups expanded, in config order without repeats."""
        from hyft.tasks.registry import expand_task_names

        return expand_task_names(self.data.task_names, self.data_source())

    def task_groups(self) -> dict[str, list[str]]:
        """Configured group names → their member tasks (e.g. ``{"glue": ["mnli", "sst2", "qnli"]}``)."""
        from hyft.tasks.registry import expand_task_names, is_group

        return {
            name: expand_task_names([name], self.data_source())
            for name in self.data.task_names
            if is_group(name)
        }

    def languages_for(self, task: Task) -> list[str]:
        """The languages a task runs in: ``data.languages`` (default: all) for a multilingual task, the one
        language of a monolingual task (GLUE: ``en``)."""
        if len(task.languages) == 1:
            return list(task.languages)
        return list(self.data.languages or task.languages)

    def search_methods(self) -> list[str]:
        """Method labels the search covers (empty without a search section)."""
        if self.search is None:
            return []
        return list(self.search.methods or self.methods)

    def search_k_shot(self) -> int:
        """k the search trains at: ``search.k_shot``, else the largest of ``data.k_shots``."""
        if self.search is not None and self.search.k_shot is not None:
            return self.search.k_shot
        return max(self.data.k_shots)

    def search_seeds(self) -> list[int]:
        """Seeds of the search trials: ``search.seeds``, else the run's first seed."""
        if self.search is not None and self.search.seeds:
            return list(self.search.seeds)
        return self.run.seeds[:1]

    def adapter_config(self, label: str) -> AdapterConfig:
        return self.methods[label]

    @property
    def run_dir(self) -> Path:
        return self.run.output_dir / self.run.name
