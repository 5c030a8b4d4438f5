"""Thin datatrove wrappers around the plain stage functions (stages.py). Imports datatrove at module
level, so import this module only through datatrove_run.py, which checks the extra is installed.

Stage split (governance.md §9): A is a map over shards of the input (validate + LID), B runs one
language per task (dedup + quality, which need the whole language at once); assembly then runs
in the calling process. Intermediate files are plain JSONL/JSON under the work folder, so the same
steps run under SlurmPipelineExecutor or RayPipelineExecutor with a shared filesystem.
"""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from hyft.governance.config import CurationConfig
from hyft.governance.ledger import read_jsonl, write_jsonl
from hyft.governance.lid import shared_detectors
from hyft.governance.quality import PplScorer
from hyft.governance.stages import annotate, decide_language, lid_survivors_by_language
from hyft.governance.validate import iter_pool


def annotated_shards(work_dir: Path) -> list[Path]:
    """The stage-A outputs, in rank order."""
    return sorted((work_dir / "annotated").glob("*.jsonl"))


class AnnotateShard(PipelineStep):
    """Stage A: validate + LID for the input lines of this rank (line - 1 = rank mod world size)."""

    name = "validate + LID"
    type = "hyft governance"

    def __init__(self, pool_path: str, source_name: str, config_json: str, work_dir: str, wrapped: bool = False):
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
            entries = annotate(mine, config, shared_detectors())
        write_jsonl(Path(self.work_dir) / "annotated" / f"{rank:05d}.jsonl", entries)
        self.stat_update("total", value=len(entries))
        for entry in entries:
            self.stat_update("forwarded" if entry["reason"] is None else f"dropped_{entry['reason']}")
        yield from data or ()


class DecideLanguages(PipelineStep):
    """Stage B: dedup + quality for the languages of this rank (sorted languages, round robin)."""

    name = "dedup + quality"
    type = "hyft governance"

    def __init__(self, config_json: str, work_dir: str, ppl_scorer: PplScorer | None = None):
        super().__init__()
        self.config_json, self.work_dir, self.ppl_scorer = config_json, work_dir, ppl_scorer

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        config = CurationConfig.model_validate_json(self.config_json)
        work = Path(self.work_dir)
        entries = [e for shard in annotated_shards(work) for e in read_jsonl(shard)]
        groups = lid_survivors_by_language(entries)
        for lang in list(groups)[rank::world_size]:
            with self.track_time():
                result = decide_language(lang, groups[lang], config, self.ppl_scorer)
            path = work / "decisions" / f"{lang}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
            self.stat_update("total", value=len(result["decisions"]))
            for decision in result["decisions"].values():
                reason = decision["reason"]
                self.stat_update("forwarded" if reason is None else f"dropped_{reason}")
        yield from data or ()
