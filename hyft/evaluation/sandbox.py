"""Run untrusted Python (model-written code, HumanEval tests) in a separate, limited process.

Layers, outermost first (the child reports which were active in ``SandboxResult.isolation``):
  - a fresh interpreter (``python -I -B``) in its own session, stdin closed, minimal environment,
    working directory = a throwaway temp dir; the parent kills the whole process group on timeout;
  - a new network namespace (``unshare --net``; ``--user --net`` when not root) when the kernel allows it,
    so there is no interface but a down loopback;
  - resource limits: CPU seconds, address space, output file size, processes, open files, no core;
  - as root, user ``nobody`` when the interpreter is world-readable (not the case when Python lives under
    a 0700 /root: then this layer is absent and RLIMIT_NPROC does not bind root);
  - an audit hook (``sandbox_child.py``) that ends the program on: reading outside the work dir, the
    standard library and site-packages; writing outside the work dir; sockets; process creation; signals
    to other processes; ctypes; raising limits. Audit hooks alone are no security boundary (PEP 578).

Outcome: "passed" (exit 0), "failed" (uncaught AssertionError), "timeout" (wall clock), "error"
(anything else: other exception, blocked action, limit, signal). ``reason`` says which. The parent never
raises because of the program; it raises ValueError only for invalid arguments.
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hyft.evaluation import sandbox_child as child

Status = Literal["passed", "failed", "timeout", "error"]
_CHILD_SCRIPT = Path(child.__file__).resolve()
_EXIT_REASONS = {
    child.EXIT_BLOCKED: "blocked",
    child.EXIT_EXCEPTION: "exception",
    child.EXIT_MEMORY: "memory",
    child.EXIT_SETUP: "sandbox_setup",
}


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run.

    status: "passed" | "failed" | "timeout" | "error"; reason: finer cause ("ok", "assertion",
    "wall_clock", "blocked", "exception", "memory", "cpu_limit", "signal:<NAME>", "exit_code",
    "sandbox_setup", "sandbox_failure"); returncode: the child's exit status (negative = signal; None if it
    never started); stdout/stderr: decoded text, cut at ``max_output_bytes``; duration_s: wall time;
    isolation: the layers the child reported as active.
    """

    status: Status
    stdout: str
    stderr: str
    returncode: int | None
    duration_s: float
    reason: str = ""
    isolation: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1)
def _network_prefix() -> tuple[str, ...]:
    """Command prefix that gives the child its own network namespace, or () when not permitted here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    prefix = (unshare, "--net") if os.geteuid() == 0 else (unshare, "--user", "--net")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix if probe.returncode == 0 else ()


def _classify(returncode: int, timed_out: bool) -> tuple[Status, str]:
    if timed_out:
        return "timeout", "wall_clock"
    if returncode == 0:
        return "passed", "ok"
    if returncode == child.EXIT_ASSERTION:
        return "failed", "assertion"
    if returncode in _EXIT_REASONS:
        return "error", _EXIT_REASONS[returncode]
    if returncode < 0:
        number = -returncode
        if number == signal.SIGXCPU:
            return "error", "cpu_limit"
        try:
            return "error", f"signal:{signal.Signals(number).name}"
        except ValueError:
            return "error", f"signal:{number}"
    return "error", "exit_code"


def _read_text(path: Path, limit: int) -> str:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n[hyft-sandbox: output truncated]" if len(data) > limit else text


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for_exit(process: subprocess.Popen, timeout_s: float) -> bool:
    """Wait up to timeout_s for the child to exit without reaping it; True if it timed out."""
    try:
        pidfd = os.pidfd_open(process.pid)  # readable once the process exits (Linux ≥ 5.3)
    except (AttributeError, OSError):
        try:
            process.wait(timeout=timeout_s)  # fallback: reaps, so the group kill after it is best effort
        except subprocess.TimeoutExpired:
            return True
        return False
    try:
        poller = select.poll()  # unlike select(), no limit on the descriptor number
        poller.register(pidfd, select.POLLIN)
        ready = poller.poll(timeout_s * 1000)
    finally:
        os.close(pidfd)
    return not ready


def _run(code: str, timeout_s: float, memory_mb: int, max_output_bytes: int, audit_guard: bool) -> SandboxResult:
    run_root = Path(tempfile.mkdtemp(prefix="hyft-sandbox-"))
    try:
        run_root.chmod(0o711)  # user nobody may traverse to its work dir, not list the run files
        workdir = run_root / "work"
        workdir.mkdir(mode=0o700)
        program = run_root / "program.py"
        program.write_text(code, encoding="utf-8")
        config = {
            "workdir": str(workdir),
            "program_path": str(program),
            "program_name": "<sandbox program>",
            "isolation_path": str(run_root / "isolation.json"),
            "parent_netns": os.readlink("/proc/self/ns/net"),
            "audit_guard": audit_guard,
            "cpu_seconds": math.ceil(timeout_s) + 1,
            "memory_bytes": memory_mb * 1024 * 1024,
            "file_size_bytes": max(16 * 1024 * 1024, 2 * max_output_bytes),
            "max_processes": 32,
        }
        (run_root / "config.json").write_text(json.dumps(config), encoding="utf-8")
        command = [*_network_prefix(), sys.executable, "-I", "-B", "-X", "utf8", str(_CHILD_SCRIPT)]
        command.append(str(run_root / "config.json"))
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LC_ALL": "C.UTF-8"}
        stdout_path, stderr_path = run_root / "stdout", run_root / "stderr"
        start = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=environment,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
            timed_out = _wait_for_exit(process, timeout_s)
            # Kill the session's group while its leader is not yet reaped, so the group id cannot have
            # been reused by an unrelated process (this also ends anything the program left behind).
            _kill_group(process.pid)
            returncode = process.wait()
        duration = time.monotonic() - start
        isolation_path = run_root / "isolation.json"
        isolation = tuple(json.loads(isolation_path.read_text())) if isolation_path.exists() else ()
        status, reason = _classify(returncode, timed_out)
        return SandboxResult(
            status=status,
            stdout=_read_text(stdout_path, max_output_bytes),
            stderr=_read_text(stderr_path, max_output_bytes),
            returncode=returncode,
            duration_s=duration,
            reason=reason,
            isolation=isolation,
        )
    finally:
        shutil.rmtree(run_root, ignore_errors=True)


def run(
    code: str,
    timeout_s: float,
    memory_mb: int = 1024,
    *,
    max_output_bytes: int = 1 << 20,
    audit_guard: bool = True,
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a fresh sandboxed interpreter; never raises for the program's sake.

    timeout_s: wall-clock limit (the CPU limit is ⌈timeout_s⌉ + 1 s); memory_mb: address-space limit;
    max_output_bytes: how much of stdout/stderr is kept. ``audit_guard=False`` switches off the audit hook
    and is only for testing the OS layers with trusted code.
    """
    if not timeout_s > 0 or memory_mb < 64 or max_output_bytes < 1:
        raise ValueError(f"sandbox.run: need timeout_s > 0 and memory_mb ≥ 64, got {timeout_s}, {memory_mb}")
    start = time.monotonic()
    try:
        return _run(code, timeout_s, memory_mb, max_output_bytes, audit_guard)
    except Exception as exc:  # the sandbox itself failed (disk full, no fork): report, never raise
        return SandboxResult(
            status="error", stdout="", stderr=f"hyft sandbox could not run the program: {exc!r}",
            returncode=None, duration_s=time.monotonic() - start, reason="sandbox_failure",
        )  # fmt: skip


def run_many(
    programs: Sequence[str],
    timeout_s: float,
    memory_mb: int = 1024,
    *,
    max_workers: int | None = None,
    progress: bool = True,
) -> list[SandboxResult]:
    """Run several programs in parallel sandboxes (threads wait on child processes); results in input order."""
    from tqdm.auto import tqdm

    workers = max_workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda code: run(code, timeout_s, memory_mb), programs)
        return list(tqdm(jobs, total=len(programs), desc="sandbox", disable=not progress, leave=False))


def humaneval_program(problem: Mapping[str, str], completion: str) -> str:
    """HumanEval test program: prompt + completion, then the problem's ``test`` code and ``check(entry_point)``."""
    return (
        problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n" + f"check({problem['entry_point']})\n"
    )


def run_humaneval_problem(problem: Mapping[str, str], completion: str, timeout_s: float = 3.0) -> SandboxResult:
    """Run one HumanEval problem (fields prompt, test, entry_point) against a completion of its prompt."""
    return run(humaneval_program(problem, completion), timeout_s)


def run_humaneval_problems(
    problems: Sequence[Mapping[str, str]],
    completions: Sequence[str],
    timeout_s: float = 3.0,
    max_workers: int | None = None,
) -> list[SandboxResult]:
    """Parallel :func:`run_humaneval_problem` over aligned problems and completions."""
    if len(problems) != len(completions):
        raise ValueError(f"run_humaneval_problems: {len(problems)} problems but {len(completions)} completions")
    programs = [humaneval_program(p, c) for p, c in zip(problems, completions, strict=True)]
    return run_many(programs, timeout_s, max_workers=max_workers)
