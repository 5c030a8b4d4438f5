"""Sandbox: hostile programs are contained and reported; canonical HumanEval solutions pass."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from hyft.sandbox import humaneval_program, run, run_humaneval_problem, run_humaneval_problems


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture()
def parent_area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A directory of the parent's with a secret file, snapshotted before and checked after the test.

    Sandbox run directories go to a private temp root (other test sessions may run sandboxes at the same
    time), which must be empty again afterwards.
    """
    runs = Path(tempfile.mkdtemp(prefix="hyft-test-runs-"))
    runs.chmod(0o711)
    monkeypatch.setattr(tempfile, "tempdir", str(runs))
    secret = f"TOPSECRET-{uuid.uuid4()}"
    (tmp_path / "secret.txt").write_text(secret)
    before = _snapshot(tmp_path)
    yield tmp_path, secret
    leftovers = list(runs.iterdir())
    if not leftovers:
        runs.rmdir()
    assert _snapshot(tmp_path) == before, "a sandboxed program changed the parent's files"
    assert leftovers == [], "a sandbox run directory was left behind"


def test_well_behaved_programs(parent_area) -> None:
    ok = run("import math, json, re, itertools\nprint(math.comb(5, 2))", timeout_s=5)
    assert (ok.status, ok.reason, ok.returncode, ok.stdout) == ("passed", "ok", 0, "10\n")
    local = run("open('note.txt', 'w').write('hi')\nprint(open('note.txt').read())", timeout_s=5)
    assert (local.status, local.stdout) == ("passed", "hi\n")  # its own directory is writable
    failed = run("def f():\n    return 1\nassert f() == 2, 'wrong'", timeout_s=5)
    assert (failed.status, failed.reason) == ("failed", "assertion")
    assert "AssertionError: wrong" in failed.stderr and "assert f() == 2" in failed.stderr
    crashed = run("raise KeyError('k')", timeout_s=5)
    assert (crashed.status, crashed.reason) == ("error", "exception") and "KeyError" in crashed.stderr
    exited = run("import sys; sys.exit(3)", timeout_s=5)
    assert (exited.status, exited.reason, exited.returncode) == ("error", "exit_code", 3)
    huge = run("print('x' * 5_000_000)", timeout_s=5, max_output_bytes=1000)
    assert huge.status == "passed" and len(huge.stdout) < 1100 and huge.stdout.endswith("output truncated]")
    assert {"audit-hook", "rlimits", "userns", "mountns", "pidns", "netns"} <= set(ok.isolation)


def test_hostile_programs_are_contained(parent_area) -> None:
    area, secret = parent_area
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: received.append(number))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    hostile = {
        "infinite loop": ("while True:\n    pass", {"timeout"}),
        "sleep": ("import time\ntime.sleep(60)", {"timeout"}),
        "fork bomb": ("import os\nwhile True:\n    os.fork()", {"error"}),
        "subprocess bomb": (
            "import subprocess, sys\nwhile True:\n    subprocess.Popen([sys.executable, '-c', 'pass'])",
            {"error"},
        ),
        "10 GB allocation": ("block = bytearray(10 * 1024 ** 3)\nprint(len(block))", {"error"}),
        "socket connect": (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
            {"error"},
        ),
        "write outside": (f"open({str(area / 'evil.txt')!r}, 'w').write('x')", {"error"}),
        "write to parent dir": ("open('../evil.txt', 'w').write('x')", {"error"}),
        "overwrite parent file": (f"open({str(area / 'secret.txt')!r}, 'w').write('gone')", {"error"}),
        "read parent file": (f"print(open({str(area / 'secret.txt')!r}).read())", {"error"}),
        "list parent dir": (f"import os\nprint(os.listdir({str(area)!r}))", {"error"}),
        "remove parent file": (f"import os\nos.remove({str(area / 'secret.txt')!r})", {"error"}),
        "kill parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)", {"error"}),
        "killpg parent": (
            "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGUSR1)",
            {"error"},
        ),
        "ctypes fork": ("import ctypes\nctypes.CDLL(None).fork()", {"error"}),
    }
    try:
        results = {name: run(code, timeout_s=1.5, memory_mb=512) for name, (code, _) in hostile.items()}
        for name, (_, allowed) in hostile.items():
            assert results[name].status in allowed, (name, results[name])
        assert results["10 GB allocation"].reason == "memory"
        assert all(results[name].duration_s < 5 for name in hostile)
        for name in ["socket connect", "write outside", "read parent file", "kill parent", "ctypes fork"]:
            assert results[name].reason == "blocked" and "hyft-sandbox: blocked" in results[name].stderr, name
        assert all(secret not in r.stdout + r.stderr for r in results.values())
        assert received == []  # no signal reached this process
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
        assert not (area / "evil.txt").exists() and not (area.parent / "evil.txt").exists()
    finally:
        listener.close()
        signal.signal(signal.SIGUSR1, previous)


def test_network_namespace_alone_blocks_connections() -> None:
    """With the audit hook off (trusted code), the OS layer by itself still has no route to the parent."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    code = (
        "import socket\ntry:\n"
        f"    socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}), timeout=2)\n"
        "    print('CONNECTED')\nexcept OSError as error:\n    print('refused', error.errno)"
    )
    try:
        result = run(code, timeout_s=5, audit_guard=False)
        if "netns" not in result.isolation:
            pytest.skip(f"no network namespace on this machine (layers: {result.isolation})")
        assert result.status == "passed" and result.stdout.startswith("refused"), result
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_humaneval_canonical_solutions_pass(shared_data) -> None:
    path = shared_data / "humaneval" / "HumanEval.jsonl"
    problems = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(problems) == 164
    results = run_humaneval_problems(problems, [p["canonical_solution"] for p in problems], timeout_s=10)
    passed = [r.status == "passed" for r in results]
    failures = {
        p["task_id"]: (r.status, r.reason, r.stderr[-300:])
        for p, r in zip(problems, results, strict=True)
        if r.status != "passed"
    }
    assert sum(passed) >= 0.95 * len(problems), failures
    # the harness discriminates: an empty body fails the tests of the first 20 problems
    wrong = run_humaneval_problems(problems[:20], ["    return None\n"] * 20, timeout_s=10)
    assert sum(r.status == "passed" for r in wrong) <= 1
    assert sum(r.status == "failed" for r in wrong) >= 15


def test_humaneval_program_layout() -> None:
    problem = {
        "prompt": "def add(a, b):\n",
        "test": "def check(f):\n    assert f(2, 3) == 5\n",
        "entry_point": "add",
    }
    assert humaneval_program(problem, "    return a + b\n").endswith("check(add)\n")
    assert run_humaneval_problem(problem, "    return a + b\n").status == "passed"
    assert run_humaneval_problem(problem, "    return a - b\n").status == "failed"
    assert run_humaneval_problem(problem, "    while True:\n        pass\n", timeout_s=1).status == "timeout"
