"""``EvalConfig``: what ``hyft evaluate config.yaml`` runs (model, tasks and languages, protocol, output).

Example (paths are relative to the current directory)::

    name: lora-r16                 # the row name in the tables
    model: {name_or_path: bigscience/bloom-560m, kind: decoder, adapter_dir: runs/x/adapter}
    tasks:
      - {name: xnli, languages: [en, zh, hi], num_fewshot: 32}
      - {name: flores, languages: [zh, hi]}   # EN→X and X→EN
    batch_size: 8
    output_dir: runs/x/eval
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hyft.config import LanguageCode
from hyft.tasks.kshot import PAPER_K_VALUES
from hyft.tasks.templates import ChatTemplateMode, ClassificationTemplate, GenerationTemplate


class ModelSpec(BaseModel):
    """The model to evaluate and how to load it."""

    model_config = ConfigDict(extra="forbid")

    name_or_path: str = Field(description="Hugging Face Hub id or local folder of the base model.")
    kind: Literal["encoder", "decoder"] = Field(
        description="encoder: sequence-classification head (BERT-like); decoder: any causal LM (Bloom, "
        "Llama)."
    )
    adapter_dir: Path | None = Field(
        None,
        description="Folder written by hyft train (adapter_config.json + safetensors); merged before eval.",
    )
    tokenizer: str | None = Field(None, description="Tokenizer id or folder; default: name_or_path.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights dtype. bfloat16 halves memory on GPU; float32 is exact on CPU."
    )
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda or cuda:N.")


class TaskSpec(BaseModel):
    """One task (or group such as ``glue``) with its languages and protocol."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Task or group name: xnli, flores, glue, mnli, sst2, qnli, qqp, gsm8k, mtbench, "
        "humaneval, demo-topic and demo-nli (the sets shipped for the offline demo)."
    )
    languages: list[LanguageCode] | None = Field(
        None, description="Languages to evaluate (FLORES: the X of EN↔X); default: all the task has."
    )
    source_language: LanguageCode = Field("en", description="FLORES only: the fixed side of each direction.")
    directions: Literal["both", "from_source", "to_source"] = Field(
        "both",
        description="FLORES only: EN→X and X→EN (both; needed for Δ), EN→X only, or X→EN only.",
    )
    num_fewshot: int = Field(
        0,
        ge=0,
        description=f"k shots per language in the prompt (decoders; paper: {PAPER_K_VALUES}). "
        "Stratified by label, seeded, drawn from dev (see hyft.tasks.kshot).",
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Generation length limit; default: the task's."
    )
    orthographic: bool = Field(
        False, description="Classification: also score orthographic variants (robustness)."
    )
    temperature_scaling: bool = Field(
        False,
        description="Classification: fit a temperature per language on dev and report ECE after it too.",
    )
    templates: dict[str, ClassificationTemplate | GenerationTemplate] = Field(
        default_factory=dict, description="Prompt overrides for decoders, keyed by language (or '*' for all)."
    )

    @field_validator("name")
    @classmethod
    def _known_task(cls, name: str) -> str:
        from hyft.tasks.registry import available_tasks, unknown_task_message

        if name not in available_tasks():
            raise ValueError(unknown_task_message(name))
        return name

    @model_validator(mode="after")
    def _known_languages(self) -> TaskSpec:
        from hyft.tasks.registry import get_task, is_group

        if self.languages is None:
            return self
        offered = {"en"} if is_group(self.name) else set(get_task(self.name).languages)
        unknown = [lang for lang in self.languages if lang not in offered]
        if unknown:
            raise ValueError(
                f"task {self.name!r} has no language(s) {unknown}; available: {', '.join(sorted(offered))}"
            )
        return self


class EvalConfig(BaseModel):
    """Top level of an evaluation config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("model", description="Method name: the row label in the Markdown tables.")
    model: ModelSpec = Field(description="The model (and optional adapter) to evaluate.")
    tasks: list[TaskSpec] = Field(min_length=1, description="Tasks to run, in order.")
    seed: int = Field(
        0, description="Seed index: picks the k-shot demonstrations and the variant assignment."
    )
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass. Higher: faster, more memory.")
    max_examples_per_language: int | None = Field(
        None, ge=1, description="Keep the first n evaluation rows per language (same rows for every method)."
    )
    calibration_examples: int = Field(
        500, ge=10, description="Dev rows per language used to fit the temperature."
    )
    ece_bins: int = Field(15, ge=1, description="Equal-width confidence bins of ECE.")
    chat_template: ChatTemplateMode = Field(
        "auto",
        description="Decoders: auto puts each prompt in the tokenizer's chat template when it has one "
        "(tokenizer.chat_template), as one user message; never: plain-text prompts. Evaluate an adapter with "
        "the setting it was trained with (hyft run's eval.chat_template).",
    )
    sandbox_timeout_s: float = Field(10.0, gt=0, description="HumanEval: seconds per problem in the sandbox.")
    allow_unsafe_code: bool = Field(
        False,
        description="HumanEval: run model-written code even where the kernel gives no sandbox (no user "
        "namespaces): rlimits and an audit hook only. Same as `hyft evaluate --unsafe-code`.",
    )
    judge: str | None = Field(
        None,
        description="MT-Bench: local causal LM (path or cached Hub id) that grades answers 1–10 "
        "(hyft.evaluation.judge); none: BLEU against the GPT-4 reference answers only.",
    )
    data_dir: Path | None = Field(
        None, description="Benchmark data folder; default $HYFT_DATA_DIR, else ../shared/data."
    )
    data_source: Literal["local", "hub", "auto"] = Field(
        "auto", description="local files only, the Hugging Face Hub only, or local when present else Hub."
    )
    output_dir: Path = Field(description="Where results.json, samples.jsonl and tables.md are written.")

    @model_validator(mode="after")
    def _tasks_fit_the_model_kind(self) -> EvalConfig:
        from hyft.tasks.registry import get_task, is_group

        if self.model.kind != "encoder":
            return self
        for index, spec in enumerate(self.tasks):
            # the only group, GLUE, holds classification tasks only
            if not is_group(spec.name) and get_task(spec.name).kind != "classification":
                raise ValueError(
                    f"tasks.{index}.name: {spec.name!r} generates text, which needs model.kind: decoder"
                )
            if spec.num_fewshot:
                raise ValueError(
                    f"tasks.{index}.num_fewshot: {spec.num_fewshot} with an encoder (model.kind); k-shot for "
                    "encoders means training on the shots (hyft train), then evaluating with num_fewshot: 0"
                )
        return self
