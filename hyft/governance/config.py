"""`CurationConfig`: what `hyft curate` reads, with the defaults of governance.md and why.

Every threshold below was measured on the project's own data (shared/design/governance.md, §3-§5);
the field descriptions say which section holds the evidence.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hyft.config import LanguageCode
from hyft.governance.languages import base_language, normalize_language
from hyft.tables import FileFormat


def _lid176(code: str) -> str:
    normalised = normalize_language(code)
    if normalised is None:
        raise ValueError(
            f"unknown language code {code!r}: expected one of the lid.176 codes (e.g. en, zh, sw)"
        )
    return normalised


class LidSettings(BaseModel):
    """Language identification: script gate, then fastText lid.176 or py3langid (either suffices)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Keep a text when either detector gives the declared language (aliases summed, top 5) "
        "at least this probability (cc_net's lang_threshold; governance.md §3: 0.3 lets in more Nepali as "
        "Hindi, 0.65 drops more short Bulgarian/Swahili hypotheses).",
    )
    threshold_per_language: dict[LanguageCode, float] = Field(
        default_factory=dict,
        description="Per-language overrides of `threshold`, e.g. {sw: 0.3}; an override "
        "also wins over `threshold_rule: adaptive` for its language.",
    )
    threshold_rule: Literal["fixed", "adaptive"] = Field(
        "fixed",
        description="fixed: tau = `threshold` for every language. adaptive (FineWeb-2): per language (and "
        "language-script group), tau = clip(median - sd, adaptive_min, adaptive_max) of its records' LID "
        "confidence (support of the declared language, the lower of its fields'); both detectors then run "
        "on every text. `threshold: adaptive` is accepted as a shorthand.",
    )
    adaptive_min: float = Field(
        0.3, ge=0.0, le=1.0, description="adaptive: lower clip of tau (FineWeb-2: 0.3)."
    )
    adaptive_max: float = Field(
        0.9, ge=0.0, le=1.0, description="adaptive: upper clip of tau (FineWeb-2: 0.9)."
    )
    adaptive_min_records: int = Field(
        50,
        ge=1,
        description="adaptive: a language with fewer scored records keeps the fixed `threshold` (a median "
        "and sd of a handful of scores say little); the report says which rule set each tau.",
    )
    romanised_policy: Literal["keep", "drop", "relabel"] = Field(
        "keep",
        description="Records declared in a non-Latin-script language whose text is Latin (romanised Hindi, "
        "Urdu, Arabic, pinyin) are tagged <lang>-Latn (BCP-47 script subtag). keep: their own group "
        "(e.g. hi-Latn: own report row, dedup and quality; views carry the tag as language). drop: dropped "
        "as `romanised`. relabel: kept under the declared language (flag `romanised`). Latin text that both "
        "detectors call the same other language is `lid_wrong_language` whatever the policy.",
    )

    @model_validator(mode="before")
    @classmethod
    def _adaptive_shorthand(cls, value: object) -> object:
        if isinstance(value, dict) and value.get("threshold") == "adaptive":
            if value.get("threshold_rule", "adaptive") != "adaptive":
                raise ValueError("threshold: adaptive contradicts threshold_rule: fixed; give one of them")
            value = {k: v for k, v in value.items() if k != "threshold"} | {"threshold_rule": "adaptive"}
        return value

    @model_validator(mode="after")
    def _clip_order(self) -> LidSettings:
        if self.adaptive_min > self.adaptive_max:
            raise ValueError(
                f"adaptive_min ({self.adaptive_min}) must not exceed adaptive_max ({self.adaptive_max})"
            )
        return self

    def fixed_threshold(self, lang: str) -> float:
        """tau for ``lang`` (a lid.176 code or a group such as hi-Latn) under the fixed rule
        or an override."""
        return self.threshold_per_language.get(base_language(lang), self.threshold)

    def is_adaptive(self, lang: str) -> bool:
        """Whether ``lang``'s tau comes from its own confidence distribution (no per-language override)."""
        return self.threshold_rule == "adaptive" and base_language(lang) not in self.threshold_per_language

    script_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="The declared language's script must hold at least this share of letter units.",
    )
    min_units: int = Field(
        3,
        ge=0,
        description="Texts with fewer letter units skip the detectors and are kept with a flag: no "
        "detector is reliable on one or two words (fastText#495).",
    )

    @field_validator("threshold_per_language")
    @classmethod
    def _normalise_keys(cls, overrides: dict[str, float]) -> dict[str, float]:
        for value in overrides.values():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"thresholds are probabilities in [0, 1], got {value}")
        return {_lid176(code): value for code, value in sorted(overrides.items())}

    wrong_language_probability: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A failing text is `lid_wrong_language` when a detector gives another language at "
        "least this probability, else `lid_low_confidence`.",
    )
    always_run_both: bool = Field(
        False,
        description="Run py3langid on every text, not only where fastText falls short. Slower "
        "(py3langid ~12k texts/s vs fastText ~100k/s), but the report can then say how often each "
        "detector alone rescued a record. Decisions are identical either way.",
    )


class DedupSettings(BaseModel):
    """Exact (hash) and near (SimHash + Jaccard) duplicates, within one language."""

    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="Drop records whose NFC text equals an earlier record's.")
    normalized: bool = Field(
        True, description="Drop records equal after NFKC, casefold, punctuation map and whitespace collapse."
    )
    near: bool = Field(True, description="Drop near-duplicates (every text field near-equal, same label).")
    hamming: int = Field(
        16,
        ge=0,
        le=64,
        description="SimHash candidate threshold in bits. The classic 3 (Manku 2007) catches <= 2% of "
        "one-word edits of short texts; 16 with the Jaccard check catches 87-99% (governance.md §4).",
    )
    jaccard: float = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="A candidate pair is confirmed when every field's shingle Jaccard >= this.",
    )
    label_aware: bool = Field(
        True,
        description="Near pairs with different labels are minimal pairs, not duplicates: report, keep both.",
    )
    engine: Literal["auto", "simhash", "minhash_lsh"] = Field(
        "auto",
        description="Candidate search. simhash: exact blockwise Hamming (quadratic, ~240M pairs/s). "
        "minhash_lsh: banded MinHash index (sub-quadratic, P(candidate) ~0.8 at J=0.6). auto: simhash up to "
        "`exhaustive_limit` records per language, then minhash_lsh. Both confirm with the same rule.",
    )
    exhaustive_limit: int = Field(100_000, ge=1, description="Largest language pool searched exhaustively.")
    lsh_bands: int = Field(20, ge=1, description="MinHash-LSH bands (20 x 5 rows: P = 0.80 at J = 0.6).")
    lsh_rows: int = Field(5, ge=1, description="MinHash values per band.")


class QualitySettings(BaseModel):
    """C2: length bounds, then character n-gram perplexity trained on the pool itself."""

    model_config = ConfigDict(extra="forbid")

    min_tokens: int = Field(3, ge=0, description="Drop records with fewer tokens (all text fields together).")
    max_chars: int = Field(4000, ge=1, description="Drop records longer than this many characters.")
    max_tokens_quantile: float | None = Field(
        0.99,
        gt=0.0,
        le=1.0,
        description="Drop records above this quantile of the language's own token counts; null disables.",
    )
    ppl: bool = Field(True, description="Run the perplexity filter.")
    ppl_scorer: Literal["char_ngram", "base_lm"] = Field(
        "char_ngram",
        description="char_ngram: Witten-Bell char LM, k-fold cross-fitted on the pool. base_lm: the "
        "callable passed to curate(ppl_scorer=...) (e.g. the backbone's own perplexity).",
    )
    ppl_order: int = Field(4, ge=1, le=6, description="Character n-gram order for spaced scripts.")
    ppl_order_dense: int = Field(
        2,
        ge=1,
        le=6,
        description="Order for Han/Kana-dominant languages (large alphabet: on 800 XNLI rows order 2 "
        "separates shuffled from clean Chinese better than 3; docs/governance-thresholds.md).",
    )
    ppl_folds: int = Field(
        5, ge=2, description="Cross-fitting folds: no text is scored by a model that saw it."
    )
    ppl_threshold: Literal["robust", "quantile"] = Field(
        "robust",
        description="robust: drop when the log-perplexity is more than `ppl_k` robust standard deviations "
        "above the language's typical value (shorth location and scale, model refit on the inliers "
        "`ppl_refits` times), which assumes no noise rate (docs/governance-thresholds.md). quantile: drop "
        "above `ppl_quantile` (always drops that share, even of a clean pool).",
    )
    ppl_k: float = Field(
        6.0,
        gt=0.0,
        description="robust: robust standard deviations above the location (shuffled and random text is "
        "caught by `ppl_order_gain` whatever its z; docs/governance-thresholds.md).",
    )
    ppl_k_dense: float = Field(
        4.0, gt=0.0, description="robust: the same for Han/Kana languages (refit within 2 sd, not 3)."
    )
    ppl_refits: int = Field(
        3, ge=0, description="robust: refits of the char LM on the records within 3 robust sd."
    )
    ppl_order_gain: float | None = Field(
        1 / 3,
        ge=0.0,
        lt=1.0,
        description="robust: drop a record whose *order gain* (log ppl of its characters "
        "shuffled minus log ppl as written, under the final char LM) is below this share of the language's "
        "typical gain (`no_word_order`). Shuffled text earns 0 by construction, clean text ~2.2 nats per "
        "character on XNLI zh, 3.8 on en), so the rule does not depend on the noise share; null disables.",
    )
    ppl_order_shuffles: int = Field(4, ge=1, description="robust: shuffles per record for the order gain.")
    ppl_quantile: float = Field(0.95, gt=0.0, le=1.0, description="quantile: drop above this quantile.")
    repetition: float | None = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="Drop a record one of whose fields has >= `repetition_min_units` tokens (characters for "
        "Han/Kana/Thai) of which at most this share are distinct (`repetitive`); null disables. A char LM "
        "fit on the pool scores repeated tokens as very likely, so perplexity cannot catch them.",
    )
    repetition_min_units: int = Field(6, ge=2, description="Shortest field the repetition rule judges.")
    ppl_low_flag_quantile: float = Field(
        0.01, ge=0.0, lt=1.0, description="Flag (not drop) below this quantile."
    )
    min_pool: int = Field(
        50,
        ge=1,
        description="Languages with fewer records get no quantile-based drops (reported as skipped).",
    )


_TASK_SPLIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*:[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_task_split(name: str) -> bool:
    """Whether a decontaminate entry names a task split (``xnli:test``) rather than a JSONL file.

    A name with a path separator, or that exists as a file, is a file (so ``dir/test.jsonl`` and a local
    ``a:b`` file still work).
    """
    return bool(_TASK_SPLIT.fullmatch(name)) and not Path(name).exists()


class EvalRow(BaseModel):
    """One evaluation row to decontaminate against: its id and its texts (in text-field order)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., description="Reported in the ledger evidence of a record that copies this row.")
    texts: list[str] = Field(..., min_length=1, description="The row's text fields.")


class DecontaminationSettings(BaseModel):
    """Evaluation rows the pool must not contain (decontam.py): exact copies and shared long n-grams."""

    model_config = ConfigDict(extra="forbid")

    files: list[Path] = Field(
        default_factory=list,
        description="JSONL evaluation files with the pool's text fields (id: id_field, "
        "else `id`, else file:line).",
    )
    rows: list[EvalRow] = Field(
        default_factory=list,
        description="Evaluation rows given directly (hyft run passes its tasks' eval rows).",
    )
    tasks: list[str] = Field(
        default_factory=list,
        description="Evaluation splits by task name, `task:split` (e.g. xnli:test), in every language the "
        "task has. The governance layer cannot load tasks: `hyft curate` and `hyft run` turn these into "
        "`rows` before curating (curate() refuses unresolved names).",
    )
    resolved_tasks: list[str] = Field(
        default_factory=list,
        description="The `tasks` whose rows are already in `rows` (set by the resolver).",
    )
    ngram: int = Field(13, ge=1, description="Shared word n-gram that marks a copy (GPT-3, lm-eval: 13).")
    ngram_dense: int = Field(
        50,
        ge=1,
        description="Shared character n-gram for Han/Kana/Thai fields (no spaces between words).",
    )

    @model_validator(mode="before")
    @classmethod
    def _list_is_files(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            names = [str(item) for item in value]
            return {
                "files": [n for n in names if not is_task_split(n)],
                "tasks": [n for n in names if is_task_split(n)],
            }
        return value

    @field_validator("tasks")
    @classmethod
    def _task_split_form(cls, tasks: list[str]) -> list[str]:
        bad = [name for name in tasks if not is_task_split(name)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: expected task:split, e.g. xnli:test")
        return tasks

    @property
    def active(self) -> bool:
        return bool(self.files or self.rows or self.tasks)


_SLURM_TIME = re.compile(r"(\d+-)?\d{1,2}(:\d{2}){0,2}|\d+")


class SlurmSettings(BaseModel):
    """sbatch settings for ``executor: datatrove_slurm`` (passed to datatrove's SlurmPipelineExecutor).

    The output folder must be on a filesystem every node sees: the steps exchange their files there.
    """

    model_config = ConfigDict(extra="forbid")

    partition: str = Field(..., min_length=1, description="Slurm partition to submit to (sinfo lists them).")
    time: str = Field(
        ...,
        description="Time limit per task in Slurm's format: MM, HH:MM:SS or D-HH:MM:SS (e.g. 04:00:00).",
    )
    cpus_per_task: int = Field(1, ge=1, description="CPUs per task (more CPUs also means more memory).")
    mem_per_cpu_gb: int = Field(
        4,
        ge=1,
        description="Memory per CPU in GB; a task's memory is cpus_per_task x this.",
    )
    qos: str = Field("normal", min_length=1, description="Slurm quality of service.")
    job_name: str = Field(
        "hyft-curate",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Job name prefix (letters, digits, _ . -); each stage appends its own name.",
    )
    env_command: str | None = Field(
        None,
        description="Shell line that activates the Python environment on the nodes, e.g. "
        "'source .venv/bin/activate'; default: the nodes' PATH must already find this Python's packages.",
    )
    max_array_size: int = Field(1001, ge=1, description="Your cluster's MaxArraySize (scontrol show config).")
    sbatch_args: dict[str, str] = Field(
        default_factory=dict,
        description="Extra #SBATCH options without the leading --, e.g. {account: abc}.",
    )
    poll_seconds: float = Field(
        30.0,
        gt=0.0,
        description="How often curate() checks the stages' completion markers while waiting.",
    )

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: str) -> str:
        if not _SLURM_TIME.fullmatch(value):
            raise ValueError(
                f"time {value!r} is not a Slurm time limit: write minutes (90), HH:MM:SS (04:00:00) "
                "or D-HH:MM:SS (1-00:00:00)"
            )
        return value

    @field_validator("sbatch_args")
    @classmethod
    def _no_dashes(cls, args: dict[str, str]) -> dict[str, str]:
        bad = [key for key in args if key.startswith("-") or not key]
        if bad:
            raise ValueError(
                f"sbatch_args keys are option names without dashes (account, not --account): {bad}"
            )
        return args


class RaySettings(BaseModel):
    """Ray cluster settings for ``executor: datatrove_ray`` (datatrove's RayPipelineExecutor)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description="Cluster to join (ray.init(address=...), e.g. auto or ray://head:10001); null starts "
        "a local Ray instance with `workers` CPUs. An already initialised Ray session is used as it is.",
    )
    cpus_per_task: int = Field(1, ge=1, description="CPUs Ray reserves per task.")
    mem_per_cpu_gb: float = Field(1.0, gt=0.0, description="Memory Ray reserves per CPU, in GB.")


class NearDedupScale(BaseModel):
    """Where near-dedup works (near_dedup_disk.py). Never changes a decision, so not in the config hash."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "memory", "disk"] = Field(
        "auto",
        description="memory: shingle sets of a whole language in RAM (~5 KB per record). disk: per-task "
        "signature files, candidate buckets and pair partitions on disk, so RAM is bounded by the chunk "
        "and bucket sizes below. auto: disk above `disk_above` records in a language.",
    )
    disk_above: int = Field(
        1_000_000,
        ge=1,
        description="auto: languages with more records (after exact dedup) go to disk.",
    )
    chunk_records: int = Field(50_000, ge=1, description="disk: records shingled and written per chunk file.")
    bucket_rows: int = Field(
        2_000_000,
        ge=1,
        description="disk: LSH band rows per candidate bucket (~24 bytes each in RAM).",
    )
    partition_records: int = Field(
        500_000,
        ge=1,
        description="disk: records per candidate-pair partition (confirmation unit).",
    )
    confirm_batch: int = Field(200_000, ge=1, description="disk: candidate pairs confirmed at once.")
    work_dir: Path | None = Field(
        None,
        description="disk, inline executor: where the files go (default: a temporary folder, removed "
        "after). datatrove executors use the output folder's datatrove/near.",
    )


EXECUTION_FIELDS = {"executor", "workers", "progress", "slurm", "ray", "near_dedup"}


class CurationConfig(BaseModel):
    """Everything `curate` needs besides the input and the output folder."""

    model_config = ConfigDict(extra="forbid")

    text_fields: list[str] = Field(
        ..., min_length=1, description="Fields that carry the language, e.g. [premise, hypothesis]."
    )
    lang_field: str = Field("lang", description="Field holding the declared language (BCP-47 or ISO 639).")
    default_language: LanguageCode | None = Field(
        None, description="Declared language for records without `lang_field` (a monolingual pool)."
    )
    label_field: str | None = Field(
        None, description="Optional label; near pairs with different labels are kept."
    )
    id_field: str | None = Field(None, description="Optional record id; the input line number otherwise.")
    languages: list[LanguageCode] | None = Field(
        None, description="Allow-list; records in other languages are dropped as language_not_selected."
    )
    lid: LidSettings = Field(default_factory=LidSettings, description="Language identification (C1).")
    dedup: DedupSettings = Field(default_factory=DedupSettings, description="Exact and near dedup (C1).")
    quality: QualitySettings = Field(
        default_factory=QualitySettings, description="Length and perplexity (C2)."
    )
    decontaminate: DecontaminationSettings = Field(
        default_factory=DecontaminationSettings,
        description="Evaluation files or rows: records copying one are dropped as eval_contamination (C1, "
        "before LID and dedup). A list or a comma-separated string is read as files.",
    )
    executor: Literal["inline", "datatrove_local", "datatrove_slurm", "datatrove_ray"] = Field(
        "inline",
        description="inline: plain functions in this process. datatrove_local / datatrove_slurm / "
        "datatrove_ray: the same steps through datatrove's Local / Slurm / Ray PipelineExecutor (pip extra "
        "hyft[scale]; Ray also needs hyft[ray]); identical outputs (docs/governance-scale.md).",
    )
    workers: int = Field(1, ge=1, description="Parallel tasks for the datatrove executor.")
    slurm: SlurmSettings | None = Field(
        None,
        description="Required by executor datatrove_slurm: partition, time limit, resources per task.",
    )
    ray: RaySettings = Field(
        default_factory=lambda: RaySettings(), description="Used by executor datatrove_ray."
    )
    near_dedup: NearDedupScale = Field(
        default_factory=lambda: NearDedupScale(),
        description="Where near-dedup keeps its working data: memory, or disk for pools that do not fit. "
        "Decisions are identical either way.",
    )
    seed: int = Field(0, ge=0, description="Seeds the MinHash permutations (the only randomness).")
    progress: bool = Field(True, description="Show tqdm progress bars.")

    @field_validator("text_fields")
    @classmethod
    def _distinct_fields(cls, fields: list[str]) -> list[str]:
        if len(set(fields)) != len(fields):
            raise ValueError(f"text_fields must be distinct, got {fields}")
        return fields

    @field_validator("languages")
    @classmethod
    def _normalise_languages(cls, languages: list[str] | None) -> list[str] | None:
        return None if languages is None else sorted({_lid176(code) for code in languages})

    @field_validator("default_language")
    @classmethod
    def _normalise_default(cls, code: str | None) -> str | None:
        return None if code is None else _lid176(code)

    @model_validator(mode="after")
    def _fields_do_not_overlap(self) -> CurationConfig:
        others = {"lang_field": self.lang_field, "label_field": self.label_field, "id_field": self.id_field}
        clashes = [name for name, value in others.items() if value in self.text_fields]
        if clashes:
            raise ValueError(f"{', '.join(clashes)} must not also be a text field")
        return self

    @model_validator(mode="after")
    def _executor_settings(self) -> CurationConfig:
        if self.executor == "datatrove_slurm" and self.slurm is None:
            raise ValueError(
                "executor datatrove_slurm needs a `slurm` block, at least {partition: <name>, time: "
                "<HH:MM:SS>} (docs/governance-scale.md)"
            )
        return self

    def decision_hash(self) -> str:
        """BLAKE2b of every setting that can change a decision (not where or how the steps run)."""
        payload = self.model_dump(mode="json", exclude=EXECUTION_FIELDS)
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.blake2b(blob, digest_size=16).hexdigest()


class CurateJob(BaseModel):
    """The file `hyft curate config.yaml` reads: where the pool is, where to write, how to curate."""

    model_config = ConfigDict(extra="forbid")

    input: Path | None = Field(
        None,
        description="The pool: a JSONL file (one record per line), or a CSV / Parquet file (written row for "
        "row to <output_dir>/input.jsonl, which is curated). Give input or dataset.",
    )
    input_format: FileFormat = Field(
        "auto", description="jsonl | csv | parquet; auto: from the suffix of input."
    )
    dataset: str | None = Field(
        None,
        description="Instead of input: a dataset for datasets.load_dataset, a Hub name (offline: from the "
        "local Hugging Face cache) or a local folder of data files named by split; its split is written to "
        "<output_dir>/input.jsonl and curated.",
    )
    dataset_config: str | None = Field(None, description="dataset: its configuration (subset) name.")
    dataset_split: str = Field("train", description="dataset: the split curated.")
    output_dir: Path = Field(..., description="Where ledger, C0/C1/C2 views and the report are written.")
    data_dir: Path | None = Field(
        None,
        description="Where `curation.decontaminate` task splits (xnli:test) are read from; default "
        "$HYFT_DATA_DIR, else ../shared/data.",
    )
    curation: CurationConfig = Field(..., description="The curation settings.")

    @model_validator(mode="after")
    def _input_or_dataset(self) -> CurateJob:
        if (self.input is None) == (self.dataset is None):
            raise ValueError(
                "give input (a JSONL, CSV or Parquet file; --input) or dataset (a Hub name or local "
                "dataset folder; --dataset), exactly one of them"
            )
        return self
