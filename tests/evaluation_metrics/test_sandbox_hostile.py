"""Hostile programs against the kernel sandbox, each judged by its side effect, not by the reported status.

Every attempt first defeats the audit hook the ways an attacker found (patching the guard's globals
through ``sys.modules['__main__']``, replacing ``os.path.realpath`` and ``os._exit``, a fresh ``posix``
from ``_imp.create_builtin``) or runs with the hook off, so what holds is the kernel: namespaces, the
read-only minimal root, the tmpfs cap, rlimits, no capabilities, Landlock. Targets are only paths under
pytest's tmp_path (a secret written there, files it must not gain) and sockets this test opens on loopback
and in tmp_path. Runs as root (CI) and as a user.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import time
from pathlib import Path

import pytest

from hyft.evaluation import sandbox
from hyft.sandbox import run, run_humaneval_problem

# Defeats the audit hook from inside the program (every route the attacker reported); harmless without it.
BYPASS = """
import sys, os
guard = sys.modules.get("__main__")
if guard is not None and hasattr(guard, "_DENIED_PREFIXES"):
    guard._DENIED_PREFIXES = ("no-such-event",)
    guard._DENIED_IMPORTS = set()
    guard._inside = lambda path, roots: True
    guard._PATH_WRITE_EVENTS = {}
    guard._PATH_READ_EVENTS = {}
os.path.realpath = lambda path, *args, **kwargs: "/sandbox/innocent"
import _imp, importlib.machinery
posix = _imp.create_builtin(importlib.machinery.ModuleSpec("posix", None, origin="built-in"))
_imp.exec_builtin(posix)
def attempt(label, action):
    try:
        action()
        print("DONE", label, flush=True)
    except BaseException as error:
        print("FAILED", label, type(error).__name__, error, flush=True)
"""
GUARDS = [pytest.param(True, id="hook-bypassed"), pytest.param(False, id="hook-off")]


def _userns_possible() -> bool:
    for path, off in (
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
    ):
        try:
            if Path(path).read_text().strip() == off and (
                os.geteuid() != 0 or path.endswith("max_user_namespaces")
            ):
                return False
        except OSError:
            pass
    return True


pytestmark = pytest.mark.skipif(
    not _userns_possible(), reason="user namespaces are switched off on this kernel"
)


@pytest.fixture()
def area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """tmp_path with a secret; sandbox run dirs in a private temp root that must be empty afterwards."""
    runs = Path(tempfile.mkdtemp(prefix="hyft-hostile-runs-"))
    monkeypatch.setattr(tempfile, "tempdir", str(runs))
    secret = f"TOPSECRET-{secrets.token_hex(8)}"
    (tmp_path / "secret.txt").write_text(secret)
    (tmp_path / "outside").mkdir()
    yield tmp_path, secret
    leftovers = list(runs.iterdir())
    runs.rmdir() if not leftovers else None
    assert leftovers == [], "a sandbox run directory was left behind"


def _processes_with(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_the_kernel_layers_hold_here() -> None:
    layers = set(run("pass", timeout_s=20).isolation)
    assert set(sandbox.KERNEL_LAYERS) <= layers, layers
    assert {"no-capabilities", "rlimits", "audit-hook"} <= layers, layers
    assert sandbox.kernel_sandbox_available()


@pytest.mark.parametrize("guard", GUARDS)
def test_no_file_outside_the_work_dir_is_written(area, guard: bool) -> None:
    tmp, _ = area
    target = tmp / "outside" / "evil.txt"
    relative = os.path.relpath(target, "/")
    code = (
        BYPASS
        + f"""
import threading, itertools
target = {str(target)!r}
attempt("inside", lambda: open("inside.txt", "w").write("x"))
attempt("open", lambda: open(target, "w").write("x"))
attempt("posix.open", lambda: posix.write(posix.open(target, posix.O_WRONLY | posix.O_CREAT, 0o644), b"x"))
attempt("mkdir", lambda: posix.mkdir(target + ".d"))
attempt("rename into", lambda: (open("mine", "w").write("x"), posix.rename("mine", target)))
attempt("symlink out", lambda: (posix.symlink({str(tmp / "outside")!r}, "link"), \
open("link/evil.txt", "w").write("x")))
attempt("usr", lambda: open("/usr/evil.txt", "w").write("x"))
attempt("root", lambda: open("/evil.txt", "w").write("x"))
class Flip:  # __fspath__ answers the work dir to the check, the target to the open
    calls = 0
    def __fspath__(self):
        Flip.calls += 1
        return "inside.txt" if Flip.calls % 2 else target
for _ in range(20):
    attempt("fspath", lambda: open(Flip(), "w").write("x"))
stop = []
def flip_cwd():  # a thread that changes the working directory during path resolution
    for _ in itertools.count():
        if stop:
            return
        posix.chdir("/")
        posix.chdir("/sandbox")
thread = threading.Thread(target=flip_cwd)
thread.start()
for _ in range(200):
    attempt("chdir race", lambda: open({relative!r}, "w").write("x"))
stop.append(1)
thread.join()
import readline
attempt("readline history", lambda: readline.write_history_file(target))
"""
    )
    result = run(code, timeout_s=10, audit_guard=guard)
    assert list((tmp / "outside").iterdir()) == [], (result.stdout[-2000:], result.stderr[-2000:])
    assert not (tmp / "evil.txt").exists()
    assert "DONE inside" in result.stdout and "hyft-sandbox: blocked" not in result.stderr  # the hook was out


@pytest.mark.parametrize("guard", GUARDS)
def test_a_secret_file_is_not_read(area, guard: bool) -> None:
    tmp, secret = area
    path = tmp / "secret.txt"
    code = (
        BYPASS
        + f"""
path = {str(path)!r}
attempt("open", lambda: print(open(path).read()))
attempt("posix.open", lambda: print(posix.read(posix.open(path, posix.O_RDONLY), 200)))
attempt("listdir", lambda: print(posix.listdir({str(tmp)!r})))
import readline
attempt("readline history", lambda: (readline.read_history_file(path), print(readline.get_history_item(1))))
attempt("proc root of pid 1", lambda: print(open("/proc/1/root" + path).read()))
attempt("proc of parent", lambda: print(open("/proc/" + str(posix.getppid()) + "/root" + path).read()))
import ctypes
libc = ctypes.CDLL(None)
attempt("ctypes open", lambda: print(libc.open(path.encode(), 0)))
"""
    )
    result = run(code, timeout_s=10, audit_guard=guard)
    assert secret not in result.stdout + result.stderr, result.stdout[-2000:]
    assert "DONE open" not in result.stdout and "DONE posix.open" not in result.stdout


def _survivor_program(tag: str, marker: Path, spawn: str) -> str:
    """Spawns a process meant to outlive the run: it sleeps, then tries to write the marker."""
    return (
        BYPASS
        + f"""
import time
def survivor():
    pid = posix.fork()
    if pid == 0:
        posix.setsid()
        if posix.fork() == 0:
            for _ in range(50):
                time.sleep(0.1)
                try:
                    open({str(marker)!r}, "w").write("alive")
                except OSError:
                    pass
            posix._exit(0)
        posix.execv("/usr/bin/sleep", ["sleep", "{tag}"])
    return pid
def setsid_subprocess():
    import subprocess
    subprocess.Popen(["/usr/bin/sleep", "{tag}"], start_new_session=True)
{spawn}
print("spawned", flush=True)
"""
    )


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("ending", ["returns", "times_out"])
def test_no_process_outlives_the_run(area, guard: bool, ending: str) -> None:
    tmp, _ = area
    tag = f"1000.{secrets.randbelow(10**9):09d}"
    marker = tmp / "marker.txt"
    spawn = 'attempt("fork+setsid", survivor)\nattempt("setsid subprocess", setsid_subprocess)\n'
    if ending == "times_out":
        spawn += "time.sleep(30)\n"
    result = run(_survivor_program(tag, marker, spawn), timeout_s=3, audit_guard=guard)
    assert "DONE fork+setsid" in result.stdout or "FAILED fork+setsid" in result.stdout, result
    time.sleep(6)  # the double-forked child would have written the marker by now
    assert not marker.exists()
    assert _processes_with(tag) == [], result.stdout


@pytest.mark.parametrize("guard", GUARDS)
def test_no_connection_reaches_the_host(area, guard: bool) -> None:
    tmp, _ = area
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix_path = str(tmp / "host.sock")
    unix.bind(unix_path)
    abstract_name = f"\0hyft-hostile-{secrets.token_hex(6)}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    for listener in (tcp, unix, abstract):
        listener.listen(4)
        listener.setblocking(False)
    code = (
        BYPASS
        + f"""
import socket
def tcp(host):
    socket.create_connection((host, {tcp.getsockname()[1]}), timeout=1).sendall(b"hi")
def unix(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect(address)
    s.sendall(b"hi")
attempt("tcp loopback", lambda: tcp("127.0.0.1"))
attempt("tcp localhost6", lambda: tcp("::1"))
attempt("unix path", lambda: unix({unix_path!r}))
attempt("unix abstract", lambda: unix({abstract_name!r}))
"""
    )
    try:
        result = run(code, timeout_s=10, audit_guard=guard)
        for listener in (tcp, unix, abstract):
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody connected
        assert "DONE" not in result.stdout, result.stdout
    finally:
        for listener in (tcp, unix, abstract):
            listener.close()


@pytest.mark.parametrize("guard", GUARDS)
def test_the_work_dir_is_capped(area, guard: bool) -> None:
    code = (
        BYPASS
        + """
written = 0
block = b"x" * (1 << 20)
try:
    for index in range(64):
        with open(f"fill{index}", "wb") as handle:
            handle.write(block)
        written += len(block)
except OSError as error:
    print("stopped", error.errno)
print("written", written)
"""
    )
    result = run(code, timeout_s=10, work_mb=4, audit_guard=guard)
    written = int(result.stdout.split("written")[-1].split()[0])
    assert written <= 4 << 20, result.stdout
    assert "stopped 28" in result.stdout  # ENOSPC: the tmpfs is full


@pytest.mark.parametrize("guard", GUARDS)
def test_a_fork_bomb_is_bounded(area, guard: bool) -> None:
    tag = f"2000.{secrets.randbelow(10**9):09d}"
    code = (
        BYPASS
        + f"""
spawned = 0
for _ in range(200):
    try:
        if posix.fork() == 0:
            posix.execv("/usr/bin/sleep", ["sleep", "{tag}"])
        spawned += 1
    except OSError:
        pass
print("spawned", spawned, flush=True)
import time
time.sleep(30)
"""
    )
    start = time.monotonic()
    result = run(code, timeout_s=3, audit_guard=guard)
    assert time.monotonic() - start < 10 and result.status == "timeout"
    spawned = int(result.stdout.split("spawned")[-1].split()[0]) if "spawned" in result.stdout else 0
    assert spawned < 40, result.stdout  # RLIMIT_NPROC binds (the sandbox is no host root)
    time.sleep(0.5)
    assert _processes_with(tag) == []


def test_exiting_before_check_is_not_a_pass() -> None:
    problem = {
        "prompt": "def add(a, b):\n",
        "test": "def check(f):\n    assert f(2, 3) == 5\n",
        "entry_point": "add",
    }
    assert run_humaneval_problem(problem, "    return a + b\n").status == "passed"
    for ending in (
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "raise SystemExit",
        "raise SystemExit(0)",
    ):
        outcome = run_humaneval_problem(problem, f"    return a - b\n\n{ending}\n")
        assert (outcome.status, outcome.reason) == ("failed", "incomplete"), (ending, outcome)
    # faking the end: the token is not in any sandboxed process, and printing something else is not it
    fake = run_humaneval_problem(
        problem, '    return a - b\n\nprint("hyft-sandbox-completed:" + "0" * 32)\nimport os\nos._exit(0)\n'
    )
    assert fake.status == "failed"


def test_without_a_kernel_sandbox_code_runs_only_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_try_kernel_sandbox", False)
    refused = run("print('ran')", timeout_s=10)
    assert (refused.status, refused.reason, refused.stdout) == ("error", "no_kernel_sandbox", "")
    assert "--unsafe-code" in refused.stderr
    allowed = run("print('ran')", timeout_s=10, allow_unsafe=True)
    assert (allowed.status, allowed.stdout) == ("passed", "ran\n")
    assert "userns" not in allowed.isolation and "audit-hook" in allowed.isolation
    monkeypatch.setattr(sandbox, "_unsafe_code_allowed", True)
    assert run("print('ran')", timeout_s=10).status == "passed"


def test_evaluate_refuses_without_a_kernel_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyft.cli.errors import UserError
    from hyft.cli.evaluate import _check_code_sandbox

    monkeypatch.setattr(sandbox, "_try_kernel_sandbox", False)
    monkeypatch.setattr(sandbox, "_unsafe_code_allowed", False)
    sandbox.kernel_isolation.cache_clear()
    try:
        with pytest.raises(UserError, match="--unsafe-code"):
            _check_code_sandbox(False)
        _check_code_sandbox(True)  # allowed: a warning, then code runs with rlimits and the hook
        assert sandbox._unsafe_code_allowed
    finally:
        sandbox.kernel_isolation.cache_clear()
    monkeypatch.setattr(sandbox, "_try_kernel_sandbox", True)
    _check_code_sandbox(False)  # here the kernel sandbox holds: no refusal
