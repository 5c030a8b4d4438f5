"""Corpus scale (issue 16.5): near-dedup on disk, and the Slurm and Ray executors, change no output.

- The disk near-dedup path (signatures per task, buckets, partitions) gives the in-memory path's
  decisions, for both engines and any number of tasks.
- The same pool through the inline executor (near-dedup in memory) and through datatrove with disk
  near-dedup on 1 and 3 workers gives byte-identical ledgers, views and reports.
- datatrove_slurm: datatrove's own sbatch scripts, run by stand-in sbatch/srun commands (no cluster
  here), are well formed and give the inline outputs; the Slurm settings are validated.
- datatrove_ray (when ray is installed): a local Ray instance gives the inline outputs.
"""

from __future__ import annotations

import json
import os
import random
import stat
import sys
from pathlib import Path

import pytest
from test_gov_determinism import _config, _same_files, pool  # noqa: F401 - pool is a fixture

from hyft.governance import CurationConfig, curate
from hyft.governance.config import DedupSettings, NearDedupScale
from hyft.governance.dedup import (
    apply_near,
    dedup_language,
    exact_dedup,
    near_inputs,
    resolve_representatives,
)
from hyft.governance.near_dedup_disk import near_in_process

# Tiny chunks, buckets and partitions, so a few hundred records already cross every file boundary.
SMALL_DISK = {
    "mode": "disk",
    "chunk_records": 16,
    "bucket_rows": 400,
    "partition_records": 40,
    "confirm_batch": 7,
}


def _synthetic(n: int = 1500, planted: int = 400) -> tuple[list[list[str]], list[str]]:
    rng = random.Random(0)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
        for _ in range(2000)
    ]
    fields = [
        [
            " ".join(rng.choices(words, k=rng.randint(6, 25))),
            " ".join(rng.choices(words, k=rng.randint(3, 9))),
        ]
        for _ in range(n)
    ]
    labels = [rng.choice("xyz") for _ in range(n)]
    for _ in range(planted):  # one word changed; the label kept (a duplicate) or not (a minimal pair)
        source = rng.randrange(n)
        tokens = fields[source][0].split()
        tokens[rng.randrange(len(tokens))] = rng.choice(words)
        fields.append([" ".join(tokens), fields[source][1]])
        labels.append(labels[source] if rng.random() < 0.7 else "z")
    return fields, labels


def _outcome(result) -> tuple:
    return (
        result.reasons,
        result.representative,
        result.evidence,
        [sorted(f) for f in result.flags],
        result.stats,
    )


@pytest.mark.parametrize("engine", ["simhash", "minhash_lsh"])
def test_disk_near_dedup_makes_the_in_memory_decisions(engine):
    fields, labels = _synthetic()
    settings = DedupSettings(engine=engine)
    memory = dedup_language(fields, labels, settings, seed=0, scale=NearDedupScale(mode="memory"))
    assert memory.stats["confirmed_pairs"] > 200 and memory.stats["label_differing_pairs"] > 50
    for tasks in (1, 3):
        disk = exact_dedup(fields, labels, settings)
        texts, codes = near_inputs(fields, labels, disk)
        near = near_in_process(
            zip(zip(*texts, strict=True), codes.tolist(), strict=True),
            len(codes),
            settings,
            0,
            NearDedupScale(**SMALL_DISK),
            tasks=tasks,
        )
        apply_near(disk, near)
        resolve_representatives(disk)
        assert _outcome(disk) == _outcome(memory), (engine, tasks)
    # the switch inside dedup_language (mode disk, in this process) takes the same path
    switched = dedup_language(fields, labels, settings, seed=0, scale=NearDedupScale(**SMALL_DISK))
    assert _outcome(switched) == _outcome(memory)


def test_auto_mode_goes_to_disk_above_the_threshold(monkeypatch):
    from hyft.governance import near_dedup_disk

    calls = []
    real = near_dedup_disk.near_in_process
    monkeypatch.setattr(
        near_dedup_disk, "near_in_process", lambda *a, **k: calls.append(a[1]) or real(*a, **k)
    )
    fields, labels = _synthetic(200, 50)
    settings = DedupSettings()
    small = dedup_language(fields, labels, settings, 0, NearDedupScale(mode="auto", disk_above=10_000))
    assert calls == []
    large = dedup_language(fields, labels, settings, 0, NearDedupScale(mode="auto", disk_above=100))
    assert calls and calls[0] > 100 and _outcome(small) == _outcome(large)


@pytest.mark.parametrize(("workers", "engine"), [(1, "auto"), (3, "auto"), (3, "minhash_lsh")])
def test_datatrove_with_disk_near_dedup_matches_inline_memory(pool, tmp_path, workers, engine):  # noqa: F811
    pytest.importorskip("datatrove")
    dedup = {"engine": engine}
    inline = curate(pool, _config(dedup=dedup, near_dedup={"mode": "memory"}), tmp_path / "inline")
    scaled = curate(
        pool,
        _config(dedup=dedup, executor="datatrove_local", workers=workers, near_dedup=SMALL_DISK),
        tmp_path / "disk",
    )
    assert _same_files(tmp_path / "inline", tmp_path / "disk") == []
    assert scaled.report == inline.report
    near = tmp_path / "disk" / "datatrove" / "near"
    assert sorted(p.name for p in near.iterdir()) == ["en", "sw", "zh"]  # every language went to disk
    for lang in near.iterdir():
        assert len(list((lang / "sig").glob("*/meta.json"))) == workers
        assert len(list((lang / "confirmed").glob("*.npz"))) >= 2  # several partitions


def test_near_dedup_settings_do_not_change_the_config_hash():
    base = CurationConfig(text_fields=["a"])
    assert (
        base.decision_hash()
        == CurationConfig(
            text_fields=["a"], near_dedup=SMALL_DISK, executor="datatrove_ray", ray={"cpus_per_task": 2}
        ).decision_hash()
    )


# --- Slurm ---------------------------------------------------------------------------------------

_FAKE_SBATCH = '''#!{python}
"""Stand-in sbatch: record the submission, then run each array task of the script here, in order."""
import json, os, re, subprocess, sys
args, script = sys.argv[1:-1], sys.argv[-1]
text = open(script).read()
log = os.environ["FAKE_SLURM_LOG"]
job = sum(1 for _ in open(log)) + 100 if os.path.exists(log) else 100
with open(log, "a") as handle:
    handle.write(json.dumps({{"job": job, "args": args, "script": text}}) + "\\n")
offset = next((a.split("RUN_OFFSET=")[1] for a in args if "RUN_OFFSET=" in a), "0")
array = re.search(r"^#SBATCH --array=0-(\\d+)", text, re.M)
for task in range(int(array.group(1)) + 1 if array else 1):
    env = dict(os.environ, SLURM_JOB_ID=str(job), RUN_OFFSET=offset, SLURM_NODELIST="localhost")
    if array:
        env["SLURM_ARRAY_TASK_ID"] = str(task)
    subprocess.run(["bash", script], env=env, check=True, stdout=subprocess.DEVNULL, \
stderr=subprocess.DEVNULL)
print(f"Submitted batch job {{job}}")
'''
_FAKE_SRUN = """#!/bin/bash
# Stand-in srun: drop its options (-l -n 1), run the command.
while [[ "$1" == -* || "$1" =~ ^[0-9]+$ ]]; do shift; done
exec "$@"
"""
_FAKE_SCONTROL = "#!/bin/bash\necho localhost\n"
_FAKE_SQUEUE = "#!/bin/bash\n# Stand-in squeue: every job has finished.\n"


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch, srun, scontrol and squeue stand-ins first on PATH; returns the submission log."""
    bin_dir = tmp_path / "fake-slurm-bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": _FAKE_SBATCH.format(python=sys.executable),
        "srun": _FAKE_SRUN,
        "scontrol": _FAKE_SCONTROL,
        "squeue": _FAKE_SQUEUE,
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    venv_bin = Path(sys.executable).parent  # launch_pickled_pipeline and merge_stats live there
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{venv_bin}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "submissions.jsonl"
    monkeypatch.setenv("FAKE_SLURM_LOG", str(log))
    return log


SLURM = {"partition": "debug", "time": "00:10:00", "mem_per_cpu_gb": 3, "sbatch_args": {"account": "proj1"}}


def test_slurm_executor_scripts_are_well_formed_and_match_inline(pool, tmp_path, fake_slurm):  # noqa: F811
    pytest.importorskip("datatrove")
    curate(pool, _config(), tmp_path / "inline")
    curate(pool, _config(executor="datatrove_slurm", workers=2, slurm=SLURM), tmp_path / "slurm")
    assert _same_files(tmp_path / "inline", tmp_path / "slurm") == []
    submissions = [json.loads(line) for line in fake_slurm.read_text().splitlines()]
    stages = [s for s in submissions if "launch_pickled_pipeline" in s["script"]]
    assert [s["script"].split("--job-name=")[1].split("\n")[0] for s in stages] == [
        "hyft-curate-validate_and_identify",
        "hyft-curate-decide",
    ]
    work = tmp_path / "slurm" / "datatrove"
    for submission, name in zip(stages, ["validate_and_identify", "decide"], strict=True):
        script = submission["script"]
        lines = script.splitlines()
        assert lines[0] == "#!/bin/bash"
        directives = dict(
            line[len("#SBATCH --") :].partition("=")[::2] for line in lines if line.startswith("#SBATCH")
        )
        assert directives["partition"] == "debug" and directives["time"] == "00:10:00"
        assert directives["array"] == "0-1%2"  # 2 tasks, 2 at a time
        assert directives["cpus-per-task"] == "1" and directives["mem-per-cpu"] == "3G"
        assert directives["account"] == "proj1" and directives["qos"] == "normal"
        assert directives["output"] == str(work / f"logs_{name}" / "slurm_logs" / "%A_%a.out")
        assert f"srun  -l -n 1 launch_pickled_pipeline {work / f'logs_{name}' / 'executor.pik'}" in script
        assert (work / f"logs_{name}" / "launch_script.slurm").read_text() == script  # datatrove's own copy
        assert len(list((work / f"logs_{name}" / "completions").iterdir())) == 2
    # the second stage waits for the first: afterok on its job id
    assert f"--dependency=afterok:{stages[0]['job']}" in stages[1]["args"]


def test_slurm_executor_with_disk_near_dedup_matches_inline(pool, tmp_path, fake_slurm):  # noqa: F811
    pytest.importorskip("datatrove")
    curate(pool, _config(), tmp_path / "inline")
    curate(
        pool,
        _config(executor="datatrove_slurm", workers=3, slurm=SLURM, near_dedup=SMALL_DISK),
        tmp_path / "slurm",
    )
    assert _same_files(tmp_path / "inline", tmp_path / "slurm") == []


@pytest.mark.parametrize(
    ("slurm", "message"),
    [
        (None, r"executor datatrove_slurm needs a `slurm` block, at least \{partition"),
        ({"time": "01:00:00"}, r"partition\n  Field required"),
        ({"partition": "cpu", "time": "1 hour"}, r"not a Slurm time limit: write minutes \(90\), HH:MM:SS"),
        (
            {"partition": "cpu", "time": "60", "cpus_per_task": 0},
            r"cpus_per_task\n  Input should be greater than",
        ),
        (
            {"partition": "cpu", "time": "60", "mem_per_cpu_gb": 0},
            r"mem_per_cpu_gb\n  Input should be greater",
        ),
        (
            {"partition": "cpu", "time": "60", "sbatch_args": {"--account": "x"}},
            r"without dashes \(account, not",
        ),
        (
            {"partition": "cpu", "time": "60", "job_name": "my job"},
            r"job_name\n  String should match pattern",
        ),
        ({"partition": "cpu", "time": "60", "gpus": 1}, r"gpus\n  Extra inputs are not permitted"),
    ],
)
def test_slurm_settings_are_validated_with_what_to_fix(slurm, message):
    from pydantic import ValidationError

    settings = {"text_fields": ["a"], "executor": "datatrove_slurm"} | ({"slurm": slurm} if slurm else {})
    with pytest.raises(ValidationError, match=message):
        CurationConfig(**settings)
    for good in ("90", "04:00:00", "1-00:00:00", "30:00"):
        CurationConfig(text_fields=["a"], executor="datatrove_slurm", slurm={"partition": "p", "time": good})


# --- Ray -----------------------------------------------------------------------------------------


def test_ray_executor_matches_inline(pool, tmp_path):  # noqa: F811
    pytest.importorskip("datatrove")
    pytest.importorskip("ray")
    curate(pool, _config(), tmp_path / "inline")
    curate(pool, _config(executor="datatrove_ray", workers=2, near_dedup=SMALL_DISK), tmp_path / "ray")
    assert _same_files(tmp_path / "inline", tmp_path / "ray") == []
    assert len(list((tmp_path / "ray" / "datatrove" / "logs_decide" / "completions").iterdir())) == 2


def test_missing_ray_names_the_extra(pool, tmp_path, monkeypatch):  # noqa: F811
    from hyft.config import ConfigError

    pytest.importorskip("datatrove")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"hyft\[scale,ray\]"):
        curate(pool, _config(executor="datatrove_ray", workers=2), tmp_path / "x")
