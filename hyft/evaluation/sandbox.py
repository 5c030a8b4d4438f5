"""Run untrusted Python (model-written code, HumanEval tests) in a sandbox the kernel enforces.

Layers (``SandboxResult.isolation`` lists those that held for the run; details in ``sandbox_child.py``):
  - a fresh interpreter in its own session, stdin closed, minimal environment; the parent kills the whole
    process group at the wall-clock limit;
  - new user, mount, PID, network, IPC and UTS namespaces ("userns", "mountns", "pidns", "netns", "ipcns",
    "utsns"): the sandbox's root is an unprivileged host id; the file system is a read-only tmpfs with
    read-only binds of /usr, the interpreter and site-packages ("readonly-root"), a fresh /proc
    ("procfs"), and a size-capped tmpfs work dir ("tmpfs-cap"); the only interface is its own loopback;
    when the program ends, its PID namespace ends and every process it started dies with it;
  - no capabilities, no_new_privs, no nested user namespaces ("no-capabilities", "no-nested-userns");
  - a Landlock domain when the kernel has one ("landlock-abi<N>");
  - rlimits (CPU seconds, address space, file size, processes, open files, no core);
  - an audit hook ("audit-hook"): an extra layer only, Python code can switch it off (PEP 578).
Without user namespaces there is no kernel layer: ``run`` refuses (status "error", reason
"no_kernel_sandbox") unless unsafe code was allowed (``allow_unsafe=True``, ``set_unsafe_code_allowed``,
``hyft evaluate --unsafe-code``); then only the rlimits and the audit hook remain.

Outcome: "passed" (exit 0 and the per-run completion token, which the harness appends to stdout only after
the program's last statement ran, so ``sys.exit(0)`` or ``os._exit(0)`` before ``check()`` is "failed",
reason "incomplete"), "failed" (uncaught AssertionError), "timeout" (wall clock), "error" (anything else:
other exception, blocked action, limit, signal). ``reason`` says which. The parent never raises because of
the program; it raises ValueError only for invalid arguments.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
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
    child.EXIT_NO_KERNEL_SANDBOX: "no_kernel_sandbox",
}
# The layers without which a run is not confined by the kernel.
KERNEL_LAYERS = ("userns", "mountns", "pidns", "netns", "readonly-root", "tmpfs-cap")
_unsafe_code_allowed = False
_try_kernel_sandbox = True  # tests switch it off to exercise the refusal and the --unsafe-code fallback


def set_unsafe_code_allowed(allowed: bool) -> None:
    """Process-wide default of ``run(..., allow_unsafe=None)``: ``hyft evaluate --unsafe-code`` sets it."""
    global _unsafe_code_allowed
    _unsafe_code_allowed = bool(allowed)


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run.

    status: "passed" | "failed" | "timeout" | "error"; reason: finer cause ("ok", "assertion",
    "incomplete" (exit 0 before the end of the program), "wall_clock", "blocked", "exception", "memory",
    "cpu_limit", "signal:<NAME>", "exit_code", "sandbox_setup", "no_kernel_sandbox", "sandbox_failure");
    returncode: the program's exit status (negative = signal; None if it never started); stdout/stderr:
    decoded text, cut at ``max_output_bytes`` (the completion token removed); duration_s: wall time;
    isolation: the layers that held for this run.
    """

    status: Status
    stdout: str
    stderr: str
    returncode: int | None
    duration_s: float
    reason: str = ""
    isolation: tuple[str, ...] = ()


def _classify(returncode: int, timed_out: bool, completed: bool) -> tuple[Status, str]:
    if timed_out:
        return "timeout", "wall_clock"
    if returncode == 0:
        return ("passed", "ok") if completed else ("failed", "incomplete")
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


def _read_output(path: Path, limit: int, token: str) -> tuple[str, bool]:
    """(text cut at limit, whether the harness's completion token ended the file); the token is removed."""
    marker = f"\n{token}\n".encode()
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        completed = False
        if size >= len(marker):
            handle.seek(size - len(marker))
            completed = handle.read() == marker
        keep = size - len(marker) if completed else size
        handle.seek(0)
        data = handle.read(min(keep, limit + 1))
    text = data[:limit].decode("utf-8", errors="replace")
    return (text + "\n[hyft-sandbox: output truncated]" if keep > limit else text), completed


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


def _run(
    code: str, timeout_s: float, memory_mb: int, max_output_bytes: int, audit_guard: bool, work_mb: int,
    allow_unsafe: bool,
) -> SandboxResult:  # fmt: skip
    run_root = Path(tempfile.mkdtemp(prefix="hyft-sandbox-"))
    try:
        run_root.chmod(0o700)
        workdir = run_root / "work"  # used only without a kernel sandbox (inside it: a tmpfs at /sandbox)
        workdir.mkdir(mode=0o700)
        program = run_root / "program.py"
        program.write_text(code, encoding="utf-8")
        token = f"hyft-sandbox-completed:{secrets.token_hex(16)}"
        token_path = run_root / "token"
        token_path.touch(mode=0o600)
        token_path.write_text(token, encoding="utf-8")
        config = {
            "host_workdir": str(workdir),
            "program_path": str(program),
            "program_name": "<sandbox program>",
            "result_path": str(run_root / "result.json"),
            "token_path": str(token_path),
            "require_kernel": not allow_unsafe,
            "try_kernel": _try_kernel_sandbox,
            "audit_guard": audit_guard,
            "cpu_seconds": math.ceil(timeout_s) + 1,
            "memory_bytes": memory_mb * 1024 * 1024,
            "file_size_bytes": max(16 * 1024 * 1024, 2 * max_output_bytes),
            "work_bytes": work_mb * 1024 * 1024,
            "max_processes": 32,
        }
        (run_root / "config.json").write_text(json.dumps(config), encoding="utf-8")
        command = [
            sys.executable,
            "-I",
            "-B",
            "-X",
            "utf8",
            str(_CHILD_SCRIPT),
            str(run_root / "config.json"),
        ]
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": child.WORKDIR,
            "TMPDIR": child.WORKDIR,
            "LC_ALL": "C.UTF-8",
        }
        stdout_path, stderr_path = run_root / "stdout", run_root / "stderr"
        start = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=environment,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
            timed_out = _wait_for_exit(process, timeout_s)
            # Kill the session's group while its leader is not yet reaped, so the group id cannot have
            # been reused by an unrelated process (the PID namespace ends whatever the program started).
            _kill_group(process.pid)
            returncode = process.wait()
        duration = time.monotonic() - start
        result_path = run_root / "result.json"
        report = json.loads(result_path.read_text()) if result_path.exists() and not timed_out else {}
        if report.get("returncode") is not None:
            returncode = report["returncode"]
        stdout, completed = _read_output(stdout_path, max_output_bytes, token)
        status, reason = _classify(returncode, timed_out, completed and report.get("completed", False))
        return SandboxResult(
            status=status,
            stdout=stdout,
            stderr=_read_output(stderr_path, max_output_bytes, token)[0],
            returncode=returncode,
            duration_s=duration,
            reason=reason,
            isolation=tuple(report.get("isolation", ())),
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
    work_mb: int = 64,
    allow_unsafe: bool | None = None,
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a fresh sandboxed interpreter; never raises for the program's sake.

    timeout_s: wall-clock limit (the CPU limit is ⌈timeout_s⌉ + 1 s); memory_mb: address-space limit;
    max_output_bytes: how much of stdout/stderr is kept; work_mb: size of the work dir (a tmpfs).
    allow_unsafe: run without a kernel sandbox when there is none (default: ``set_unsafe_code_allowed``).
    ``audit_guard=False`` switches off the audit hook and is only for testing the kernel layers.
    """
    if not timeout_s > 0 or memory_mb < 64 or max_output_bytes < 1 or work_mb < 1:
        raise ValueError(
            "sandbox.run: need timeout_s > 0, memory_mb ≥ 64 and work_mb ≥ 1, got "
            f"{timeout_s}, {memory_mb}, {work_mb}"
        )
    unsafe = _unsafe_code_allowed if allow_unsafe is None else allow_unsafe
    start = time.monotonic()
    try:
        return _run(code, timeout_s, memory_mb, max_output_bytes, audit_guard, work_mb, unsafe)
    except Exception as exc:  # the sandbox itself failed (disk full, no fork): report, never raise
        return SandboxResult(
            status="error", stdout="", stderr=f"hyft sandbox could not run the program: {exc!r}",
            returncode=None, duration_s=time.monotonic() - start, reason="sandbox_failure",
        )  # fmt: skip


@functools.lru_cache(maxsize=1)
def kernel_isolation() -> tuple[str, ...]:
    """The layers a trivial run gets on this machine (cached); lacks ``KERNEL_LAYERS`` where there is none."""
    return run("pass", timeout_s=20, allow_unsafe=True).isolation


def kernel_sandbox_available() -> bool:
    """True when programs run behind every layer of ``KERNEL_LAYERS`` here."""
    return set(KERNEL_LAYERS) <= set(kernel_isolation())


class UnsafeCodeRefused(RuntimeError):
    """Raised by :func:`check_code_execution_allowed` where there is no kernel sandbox and no permission."""


def check_code_execution_allowed(allow_unsafe: bool) -> tuple[str, ...]:
    """Before running model-written code: set the process-wide permission and refuse (UnsafeCodeRefused)
    when the kernel gives no sandbox here and unsafe code was not allowed. Returns the layers a run gets."""
    set_unsafe_code_allowed(allow_unsafe)
    layers = kernel_isolation()
    if not allow_unsafe and not set(KERNEL_LAYERS) <= set(layers):
        raise UnsafeCodeRefused(unsafe_code_message(layers))
    return layers


def unsafe_code_message(layers: Sequence[str]) -> str:
    """What ``hyft evaluate`` says when it refuses to run model-written code."""
    return (
        "this machine gives the code sandbox no kernel isolation (user namespaces unavailable; layers: "
        f"{', '.join(layers) or 'none'}), so model-written code would run with rlimits and a Python audit "
        "hook only, which is no security boundary. Enable unprivileged user namespaces "
        "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0), or accept the risk "
        "with --unsafe-code (config: allow_unsafe_code: true)."
    )


def run_many(
    programs: Sequence[str],
    timeout_s: float,
    memory_mb: int = 1024,
    *,
    max_workers: int | None = None,
    progress: bool = True,
) -> list[SandboxResult]:
    """Run several programs in parallel sandboxes (threads wait on child processes);
    results in input order."""
    from tqdm.auto import tqdm

    workers = max_workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda code: run(code, timeout_s, memory_mb), programs)
        return list(tqdm(jobs, total=len(programs), desc="sandbox", disable=not progress, leave=False))


def humaneval_program(problem: Mapping[str, str], completion: str) -> str:
    """HumanEval test program: prompt + completion, then the problem's ``test`` code and
    ``check(entry_point)``."""
    return (
        problem["prompt"]
        + completion
        + "\n\n"
        + problem["test"]
        + "\n\n"
        + f"check({problem['entry_point']})\n"
    )


def run_humaneval_problem(
    problem: Mapping[str, str], completion: str, timeout_s: float = 3.0
) -> SandboxResult:
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
        raise ValueError(
            f"run_humaneval_problems: {len(problems)} problems but {len(completions)} completions"
        )
    programs = [humaneval_program(p, c) for p, c in zip(problems, completions, strict=True)]
    return run_many(programs, timeout_s, max_workers=max_workers)
