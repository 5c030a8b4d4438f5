"""Child side of the sandbox: run as ``python -I -B -X utf8 sandbox_child.py <run_root>/config.json``.

Standard library only (no hyft import: the child must not read the repository). In order it
  1. reads its config and the program source (still with the parent's rights),
  2. sets resource limits (CPU seconds, address space, file size, processes, open files, no core files),
  3. drops to user ``nobody`` when running as root and the interpreter is world-readable,
  4. writes ``isolation.json`` (which layers are active) next to the config,
  5. removes process-creation and pidfd functions from ``os``/``posix``/``_signal`` and installs an audit
     hook that ends the process (exit code BLOCKED) on any denied action,
  6. runs the program as ``__main__`` in the work directory and maps its outcome to an exit code.

Exit codes read by the parent: 0 passed, ASSERTION failed, EXCEPTION/MEMORY error, BLOCKED a denied
action, SETUP this script failed. Audit hooks are not a security boundary on their own (PEP 578); they are
one layer next to the separate process, the limits, the network namespace and the parent's kill timer.
"""

import json
import linecache
import os
import resource
import stat
import sys
import threading
import traceback

EXIT_BLOCKED = 91
EXIT_ASSERTION = 92
EXIT_EXCEPTION = 93
EXIT_MEMORY = 94
EXIT_SETUP = 95

NOBODY = 65534
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DENIED_PREFIXES = (
    "socket.", "ctypes.", "subprocess.", "os.fork", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
    "os.startfile", "os.killpg", "pty.", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
    "sqlite3.", "dbm.", "webbrowser.", "syslog.", "os.add_dll_directory",
)  # fmt: skip
# numpy imports ctypes and dlopens the running process (name None); every symbol lookup, call or raw
# memory access through ctypes stays denied.
_ALLOWED_CTYPES_EVENT = ("ctypes.dlopen", (None,))
_DENIED_IMPORTS = {"_posixsubprocess"}
# event → (positions of paths that must lie in the work dir, positions of dir_fd arguments). A dir_fd
# makes a relative path mean something the hook cannot see, so any real dir_fd is denied.
_PATH_WRITE_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)),
    "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)), "os.truncate": ((0,), ()),
    "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "os.chflags": ((0,), ()),
    "os.lchflags": ((0,), ()), "os.lchmod": ((0,), ()),
}  # fmt: skip
# event → (positions of paths that must be readable, positions of dir_fd arguments)
_PATH_READ_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.listdir": ((0,), ()), "os.scandir": ((0,), ()), "glob.glob": ((0,), ()),
    "glob.glob/2": ((0, 2), (3,)), "os.getxattr": ((0,), ()), "os.listxattr": ((0,), ()),
}  # fmt: skip
_REMOVED_FUNCTIONS = (
    "fork", "forkpty", "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
    "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe", "posix_spawn",
    "posix_spawnp", "system", "popen", "killpg", "pidfd_open", "mknod", "mkfifo", "chroot", "setuid",
    "setgid", "setreuid", "setresuid", "setsid", "setpgid", "setpgrp", "register_at_fork",
)  # fmt: skip


def _set_limits(config: dict) -> list[str]:
    limits = {
        resource.RLIMIT_CPU: (config["cpu_seconds"], config["cpu_seconds"] + 1),
        resource.RLIMIT_AS: (config["memory_bytes"],) * 2,
        resource.RLIMIT_FSIZE: (config["file_size_bytes"],) * 2,
        resource.RLIMIT_NPROC: (config["max_processes"],) * 2,
        resource.RLIMIT_NOFILE: (256, 256),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in limits.items():
        resource.setrlimit(which, value)
    return ["rlimit_cpu", "rlimit_as", "rlimit_fsize", "rlimit_nproc", "rlimit_nofile"]


def _world_readable(path: str) -> bool:
    """True when user nobody can list ``path`` and traverse every directory above it."""
    path = os.path.realpath(path)
    mode = os.stat(path).st_mode
    if not (mode & stat.S_IROTH and mode & stat.S_IXOTH):
        return False
    while path != os.path.dirname(path):
        path = os.path.dirname(path)
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
    return True


def _read_roots() -> list[str]:
    """Directories the program may read: the standard library, extension modules, site-packages."""
    stdlib = os.path.dirname(os.__file__)
    candidates = [stdlib, os.path.join(stdlib, "lib-dynload")]
    candidates += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    return sorted({os.path.realpath(p) for p in candidates if os.path.isdir(p)})


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _install_guard(workdir: str, read_roots: list[str]) -> None:
    own_pid = os.getpid()
    write_roots = [workdir]
    read_roots = [workdir, *read_roots]
    device_reads = {"/dev/null", "/dev/urandom"}
    checking = threading.local()

    def resolve(path: object) -> str:
        text = os.fsdecode(os.fspath(path))
        return os.path.realpath(os.path.join(os.getcwd(), text))

    def allowed_path(path: object, write: bool) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor
        resolved = resolve(path)
        if resolved == "/dev/null" or (not write and resolved in device_reads):
            return True
        return _inside(resolved, write_roots if write else read_roots)

    def decide(event: str, args: tuple) -> bool:
        if event == "open":
            path, mode, flags = args
            # os.open has mode None and may carry a dir_fd the event does not show: absolute paths only
            if mode is None and not isinstance(path, int) and not os.path.isabs(os.fsdecode(os.fspath(path))):
                return False
            return allowed_path(path, write=bool((flags or 0) & _WRITE_FLAGS))
        if event == _ALLOWED_CTYPES_EVENT[0] and args == _ALLOWED_CTYPES_EVENT[1]:
            return True
        if event == "import":
            return args[0].split(".")[0] not in _DENIED_IMPORTS
        if event.startswith(_DENIED_PREFIXES):
            return False
        if event == "os.kill":
            return args[0] == own_pid
        spec = _PATH_WRITE_EVENTS.get(event) or _PATH_READ_EVENTS.get(event)
        if spec is not None:
            write = event in _PATH_WRITE_EVENTS
            paths, dir_fds = spec
            if any(args[i] not in (None, -1) for i in dir_fds if i < len(args)):
                return False
            for i in paths:
                path = args[i] if i < len(args) else None
                if path is None:
                    continue
                # a descriptor is fine to read from; changing a file through one could reach any file
                if isinstance(path, int) and write:
                    return False
                if not allowed_path(path, write=write):
                    return False
        return True

    def hook(event: str, args: tuple) -> None:
        if getattr(checking, "active", False):  # an event raised by the check itself
            return
        checking.active = True
        try:
            ok = decide(event, args)
        except Exception:
            ok = False
        finally:
            checking.active = False
        if not ok:
            try:
                sys.stdout.flush()
            except Exception:
                pass
            shown = args[:1] if event == "import" else args  # the rest of an import event is sys.path
            os.write(2, f"hyft-sandbox: blocked {event} {shown!r:.300}\n".encode(errors="replace"))
            os._exit(EXIT_BLOCKED)

    import _signal
    import posix

    for module in (os, posix):
        for name in _REMOVED_FUNCTIONS:
            module.__dict__.pop(name, None)
    _signal.__dict__.pop("pidfd_send_signal", None)
    sys.addaudithook(hook)


def _setup(config_path: str) -> tuple[str, str]:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    with open(config["program_path"], encoding="utf-8") as handle:
        source = handle.read()
    workdir = config["workdir"]
    layers = ["process", "session", "workdir", "stdin_closed", *_set_limits(config)]
    if os.readlink("/proc/self/ns/net") != config["parent_netns"]:
        layers.append("netns")
    read_roots = _read_roots()
    if os.geteuid() == 0 and all(_world_readable(p) for p in read_roots):
        os.chown(workdir, NOBODY, NOBODY)
        layers.append("uid_nobody")
    layers.append("audit_hook" if config["audit_guard"] else "no_audit_hook")
    with open(config["isolation_path"], "w", encoding="utf-8") as handle:
        json.dump(layers, handle)
    if "uid_nobody" in layers:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    os.chdir(workdir)
    if config["audit_guard"]:
        _install_guard(os.path.realpath(workdir), read_roots)
    return source, config["program_name"]


def _print_program_traceback(error: BaseException) -> None:
    """Traceback without this script's own frame (reading this file would be a denied read)."""
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    sys.stderr.write("".join(traceback.format_exception(type(error), error, tb)))


def main() -> None:
    try:
        source, program_name = _setup(sys.argv[1])
    except Exception:
        traceback.print_exc()
        os._exit(EXIT_SETUP)
    linecache.cache[program_name] = (len(source), None, source.splitlines(True), program_name)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, program_name, "exec"), namespace)
    except SystemExit:
        raise
    except AssertionError as error:
        _print_program_traceback(error)
        sys.exit(EXIT_ASSERTION)
    except MemoryError:
        os.write(2, b"MemoryError\n")
        sys.exit(EXIT_MEMORY)
    except BaseException as error:
        _print_program_traceback(error)
        sys.exit(EXIT_EXCEPTION)


if __name__ == "__main__":
    main()
