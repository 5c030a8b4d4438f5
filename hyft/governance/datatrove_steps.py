"""Thin datatrove wrappers around the plain stage functions (stages.py). Imports datatrove at module
level, so import this module only through datatrove_run.py, which checks the extra is installed.

Stage split (governance.md §9): A is a map over shards of the input (validate + LID), B runs one
language per task (dedup + quality, which need the whole language at once); assembly then runs
in the calling process. With near-dedup on disk (``near_dedup.mode``), B is preceded by
PrepareNear and the NearDiskStage stages (signatures, bands, candidates, confirm), which spread one
language's near step over all tasks (near_dedup_disk.py). Intermediate files are plain JSONL/JSON under the
work folder, so the same steps run under SlurmPipelineExecutor or RayPipelineExecutor with a
shared filesystem.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from hyft.governance.config import CurationConfig
from hyft.governance.dedup import near_mode
from hyft.governance.ledger import read_jsonl, write_jsonl
from hyft.governance.lid import shared_detectors
from hyft.governance.near_dedup import NearResult
from hyft.governance.near_dedup_disk import collect, plan, run_stage, task_range, write_signatures
from hyft.governance.quality import PplScorer
from hyft.governance.stages import (
    dedup_and_filter_language,
    lid_survivors_by_language,
    near_input,
    validate_and_identify,
)
from hyft.governance.validate import iter_pool


def annotated_shards(work_dir: Path) -> list[Path]:
    """The stage-A outputs, in rank order."""
    return sorted((work_dir / "annotated").glob("*.jsonl"))


class ValidateIdentifyShard(PipelineStep):
    """Stage A: validate + LID for the input lines of this rank (line - 1 = rank mod world size)."""

    name = "validate + LID"
    type = "hyft governance"

    def __init__(
        self, pool_path: str, source_name: str, config_json: str, work_dir: str, wrapped: bool = False
    ):
        super().__init__()
        self.pool_path, self.source_name = pool_path, source_name
        self.config_json, self.work_dir = config_json, work_dir
        self.wrapped = wrapped  # each line is one JSON-encoded item of an in-memory iterable

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        config = CurationConfig.model_validate_json(self.config_json)
        mine = (
            (self.source_name, line, json.loads(raw) if self.wrapped else raw)
            for _, line, raw in iter_pool(self.pool_path)
            if (line - 1) % world_size == rank
        )
        with self.track_time():
            entries = validate_and_identify(mine, config, shared_detectors())
        write_jsonl(Path(self.work_dir) / "annotated" / f"{rank:05d}.jsonl", entries)
        self.stat_update("total", value=len(entries))
        for entry in entries:
            self.stat_update("forwarded" if entry["reason"] is None else f"dropped_{entry['reason']}")
        yield from data or ()


def _rank_languages(
    config_json: str, work_dir: str, rank: int, world_size: int
) -> tuple[CurationConfig, Path, dict[str, list[dict[str, Any]]]]:
    """(config, work folder, {language: LID survivors}) for the languages this rank handles: every annotated
    shard read, grouped by language, sorted languages dealt round robin to the ranks."""
    work = Path(work_dir)
    entries = [e for shard in annotated_shards(work) for e in read_jsonl(shard)]
    groups = lid_survivors_by_language(entries)
    mine = list(groups)[rank::world_size]
    return CurationConfig.model_validate_json(config_json), work, {lang: groups[lang] for lang in mine}


class DecideLanguages(PipelineStep):
    """Stage B: dedup + quality for the languages of this rank (sorted languages, round robin)."""

    name = "dedup + quality"
    type = "hyft governance"

    def __init__(self, config_json: str, work_dir: str, ppl_scorer: PplScorer | None = None):
        super().__init__()
        self.config_json, self.work_dir, self.ppl_scorer = config_json, work_dir, ppl_scorer

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        config, work, groups = _rank_languages(self.config_json, self.work_dir, rank, world_size)
        for lang in groups:
            with self.track_time():
                near = disk_near_result(work, lang, config)
                result = dedup_and_filter_language(lang, groups[lang], config, self.ppl_scorer, near)
            path = work / "decisions" / f"{lang}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
            self.stat_update("total", value=len(result["decisions"]))
            for decision in result["decisions"].values():
                reason = decision["reason"]
                self.stat_update("forwarded" if reason is None else f"dropped_{reason}")
        yield from data or ()


def _near_languages(work: Path) -> list[Path]:
    """The languages whose near step runs on disk (PrepareNear wrote their input), sorted."""
    return sorted(p.parent for p in (work / "near").glob("*/count.json"))


class PrepareNear(PipelineStep):
    """Disk near-dedup, stage 0 (languages round robin): adaptive LID + exact dedup, then write the near
    step's input (feature texts and label code per survivor, one JSON line each) for every language
    whose near step goes to disk (``near_dedup.mode``)."""

    name = "near-dedup input"
    type = "hyft governance"

    def __init__(self, config_json: str, work_dir: str):
        super().__init__()
        self.config_json, self.work_dir = config_json, work_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        config, work, groups = _rank_languages(self.config_json, self.work_dir, rank, world_size)
        for lang in groups:
            with self.track_time():
                prepared = near_input(lang, groups[lang], config)
                if prepared is None or near_mode(len(prepared[1]), config.near_dedup) != "disk":
                    continue
                texts, codes = prepared
                folder = work / "near" / lang
                folder.mkdir(parents=True, exist_ok=True)
                with (folder / "input.jsonl").open("w", encoding="utf-8") as handle:
                    for row in zip(*texts, codes, strict=True):
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                (folder / "count.json").write_text(json.dumps({"n": len(codes)}), encoding="utf-8")
            self.stat_update("languages_on_disk")
        yield from data or ()


class NearDiskStage(PipelineStep):
    """Disk near-dedup stages 1, 3, 4, 5 (near_dedup_disk.py) for this rank, in every disk language.

    signatures: this rank's contiguous share of each language's survivors; bands: band keys of that
    share; candidates / confirm: buckets / pair partitions round robin.
    """

    type = "hyft governance"

    def __init__(self, stage: str, config_json: str, work_dir: str):
        super().__init__()
        self.stage, self.config_json, self.work_dir = stage, config_json, work_dir
        self.name = f"near-dedup {stage}"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        config = CurationConfig.model_validate_json(self.config_json)
        for folder in _near_languages(Path(self.work_dir)):
            with self.track_time():
                if self.stage == "signatures":
                    n = json.loads((folder / "count.json").read_text(encoding="utf-8"))["n"]
                    lo, hi = task_range(n, rank, world_size)
                    with (folder / "input.jsonl").open(encoding="utf-8") as handle:
                        rows = (json.loads(line) for line in islice(handle, lo, hi))
                        write_signatures(
                            folder,
                            rank,
                            lo,
                            ((tuple(r[:-1]), r[-1]) for r in rows),
                            config.near_dedup.chunk_records,
                        )
                else:
                    run_stage(
                        folder, self.stage, rank, world_size, config.dedup, config.seed, config.near_dedup
                    )
        yield from data or ()


def disk_near_result(work: Path, lang: str, config: CurationConfig) -> NearResult | None:
    """The near pairs the disk stages computed for ``lang``; None when its near step ran in memory."""
    folder = work / "near" / lang
    if not (folder / "count.json").is_file():
        return None
    return collect(folder, plan(folder, config.dedup, config.near_dedup))
