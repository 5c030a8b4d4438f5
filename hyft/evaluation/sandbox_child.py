"""Child side of the sandbox: run as ``python -I -B -X utf8 sandbox_child.py <run_root>/config.json``.

Standard library only (no hyft import: the child must not read the repository). Four processes:

  S  this script, started by the parent with the parent's rights. It reads the config and the program,
     forks C1 and, once C1 has unshared, writes C1's uid/gid maps (sandbox root = an unprivileged host
     id: ``SANDBOX_ID`` when S is root, S's own id otherwise). It collects C2's report, writes
     ``result.json`` and, only when C3 says the program ran to its end, appends the completion token
     (read from a file only after the fork, so no sandboxed process ever holds it) to stdout.
  C1 unshares user, mount, PID, network, IPC and UTS namespaces and forks C2.
  C2 is PID 1 of the new PID namespace. It builds a minimal root (a read-only tmpfs with read-only binds
     of /usr, the interpreter and site-packages, five device nodes, a fresh /proc, and a size-capped
     tmpfs at /sandbox as the work dir), pivots into it and detaches the host tree, brings up loopback (the
     only interface), forbids nested user namespaces, sets the rlimits, drops every capability (bounding
     set, securebits, no_new_privs, non-dumpable) and adds a Landlock domain when the kernel has one.
     It forks C3, waits for it and reports; when C2 exits the kernel kills everything left in the PID
     namespace, whatever the program did (setsid, double fork).
  C3 installs the audit hook (one more layer, never the only one) and runs the program as ``__main__``.
     Only after the program returned does it write a byte to the "done" pipe.

Without user namespaces (old or locked-down kernels) S refuses (EXIT_NO_KERNEL_SANDBOX) unless the config
says ``require_kernel: false`` (``--unsafe-code``); then C3 runs with rlimits and the audit hook only.

Exit codes of the program read by the parent: 0 (passed if completed), ASSERTION failed, EXCEPTION/MEMORY
error, BLOCKED an action the audit hook denied, SETUP this script failed.
"""

import ctypes
import fcntl
import json
import linecache
import os
import platform
import resource
import socket
import struct
import sys
import tempfile
import threading
import traceback

EXIT_BLOCKED = 91
EXIT_ASSERTION = 92
EXIT_EXCEPTION = 93
EXIT_MEMORY = 94
EXIT_SETUP = 95
EXIT_NO_KERNEL_SANDBOX = 96

# Host uid/gid of the sandbox's root when hyft runs as root: an id no host file is expected to own, so
# the kernel grants the sandbox nothing on host files beyond "other" permissions.
SANDBOX_ID = 2_147_000_000
WORKDIR = "/sandbox"  # inside the sandbox: the size-capped tmpfs (no /tmp: TMPDIR and HOME point here)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = (
    1024,
    2048,
    4096,
    16384,
    1 << 18,
    1 << 21,
)
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 1, 4, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SECUREBITS_LOCKED_NOROOT = 0xEF  # noroot, no_setuid_fixup, keep_caps off, no_cap_ambient_raise; all locked
_SYSCALLS = {"x86_64": {"pivot_root": 155, "capset": 126}, "aarch64": {"pivot_root": 41, "capset": 91}}
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
# Landlock file-system rights by ABI (bits 0-12 since ABI 1, REFER 2, TRUNCATE 3, IOCTL_DEV 5)
_LL_EXECUTE, _LL_WRITE, _LL_READ, _LL_READ_DIR = 1, 2, 4, 8
_LL_MAKE_CHAR, _LL_MAKE_BLOCK, _LL_TRUNCATE, _LL_IOCTL_DEV = 1 << 6, 1 << 11, 1 << 14, 1 << 15
_LL_SCOPE_ABSTRACT_UNIX, _LL_SCOPE_SIGNAL = 1, 2

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DENIED_PREFIXES = (
    "socket.", "ctypes.", "subprocess.", "os.fork", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
    "os.startfile", "os.killpg", "pty.", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
    "sqlite3.", "dbm.", "webbrowser.", "syslog.", "os.add_dll_directory",
)  # fmt: skip
# numpy imports ctypes and dlopens the running process (name None); every symbol lookup, call or raw
# memory access through ctypes stays denied.
_ALLOWED_CTYPES_EVENT = ("ctypes.dlopen", (None,))
_DENIED_IMPORTS = {"_posixsubprocess", "readline", "_imp"}
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

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
    return result


def _syscall(name: str, *args: object) -> int:
    number = _SYSCALLS.get(platform.machine(), {}).get(name)
    if number is None:
        raise OSError(f"{name}: unknown syscall number on {platform.machine()}")
    return _check(_libc.syscall(number, *args), name)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {source} on {target}")


def _prctl(option: int, argument: int = 0) -> int:
    return _check(_libc.prctl(option, ctypes.c_ulong(argument), 0, 0, 0), f"prctl {option}")


# ---------------------------------------------------------------------------------------------------
# rlimits and the audit hook (C3 side, also the fallback)


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
    return ["rlimits"]


def _read_roots() -> list[str]:
    """Directories the program may read: the standard library, extension modules, site-packages."""
    stdlib = os.path.dirname(os.__file__)
    candidates = [stdlib, os.path.join(stdlib, "lib-dynload")]
    candidates += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    return sorted({os.path.realpath(p) for p in candidates if os.path.isdir(p)})


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _install_guard(workdir: str, read_roots: list[str]) -> None:
    """The audit hook. Python code in the same process can switch it off;
    the kernel layers are the boundary."""
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


# ---------------------------------------------------------------------------------------------------
# kernel layers (C1/C2 side)


def _bind_plan() -> list[tuple[str, str, bool]]:
    """(host source with symlinks resolved, target path inside, is a directory) for the read-only binds."""
    wanted = ["/usr", "/etc/ld.so.cache", sys.base_prefix, sys.prefix, os.path.dirname(os.__file__)]
    wanted += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    plan: list[tuple[str, str, bool]] = []
    for path in sorted({os.path.abspath(p) for p in wanted if os.path.exists(p)}):
        if any(_inside(path, [target]) for _, target, _ in plan):
            continue  # already visible through a bind above it
        plan.append((os.path.realpath(path), path, os.path.isdir(path)))
    return plan


def _usr_links() -> list[tuple[str, str]]:
    """Merged-/usr symlinks (/lib -> usr/lib, ...) to recreate; real directories there are bound instead."""
    return [(f"/{name}", os.readlink(f"/{name}"))
            for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
            if os.path.islink(f"/{name}")]  # fmt: skip


def _mountinfo_under(target: str) -> list[str]:
    with open("/oldroot/proc/self/mountinfo", encoding="utf-8") as handle:
        points = [line.split()[4] for line in handle]
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        points = [point.replace(escaped, plain) for point in points]  # no codec import: stdlib not bound yet
    decoded = points
    return [point for point in decoded if point == target or point.startswith(target.rstrip("/") + "/")]


def _remount_readonly(target: str) -> None:
    """Make every mount at or under target read-only, keeping the flags the kernel locked (nosuid, ...)."""
    kept = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
            os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME,
            os.ST_RELATIME: MS_RELATIME}  # fmt: skip
    for point in _mountinfo_under(target):
        current = os.statvfs(point).f_flag
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
        flags |= sum(ms for st, ms in kept.items() if current & st)
        _mount(None, point, None, flags)


def _make_target(path: str, directory: bool) -> None:
    if directory:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()


def _build_root(
    config: dict, plan: list[tuple[str, str, bool]], sources: list[int], links: list[tuple[str, str]]
) -> list[str]:
    """Pivot into a minimal read-only root; the host tree is detached. Returns the layers that held.

    sources: O_PATH descriptors of the plan's sources, opened in this mount namespace; closed here.
    """
    layers = []
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # The new root is staged on a tmpfs over the temp dir of this (private) mount namespace.
    staging = tempfile.gettempdir()
    _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=4096,mode=0755")
    os.mkdir(os.path.join(staging, "oldroot"))
    _syscall("pivot_root", os.fsencode(staging), os.fsencode(os.path.join(staging, "oldroot")))
    os.chdir("/")
    for (_, target, directory), descriptor in zip(plan, sources, strict=True):
        _make_target(target, directory)
        _mount(f"/oldroot/proc/self/fd/{descriptor}", target, None, MS_BIND | MS_REC)
        os.close(descriptor)  # a descriptor of a host directory would lead out of the new root
        _remount_readonly(target)
    for link, destination in links:
        if not os.path.lexists(link):
            os.symlink(destination, link)
    os.makedirs("/dev")
    for name in ("null", "zero", "full", "random", "urandom"):
        _make_target(f"/dev/{name}", directory=False)
        _mount(f"/oldroot/dev/{name}", f"/dev/{name}", None, MS_BIND)
    for index, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{index}", f"/dev/{name}")
    os.symlink("/proc/self/fd", "/dev/fd")
    os.mkdir("/proc")
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        try:  # no nested user namespaces for anything in here (the value is per user namespace)
            with open("/proc/sys/user/max_user_namespaces", "w") as handle:
                handle.write("0")
            layers.append("no-nested-userns")
        except OSError:
            pass
        _mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
        _remount_readonly("/proc/sys")
        layers.append("procfs")
    except OSError:
        os.rmdir("/proc")  # no /proc rather than the host's
    os.mkdir(WORKDIR)
    nr_inodes = max(256, config["work_bytes"] // 16384)
    _mount(
        "tmpfs",
        WORKDIR,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={config['work_bytes']},nr_inodes={nr_inodes},mode=0700",
    )
    layers.append("tmpfs-cap")
    _check(_libc.umount2(b"/oldroot", MNT_DETACH), "umount /oldroot")
    os.rmdir("/oldroot")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(WORKDIR)
    return ["mountns", "readonly-root", *layers]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, 0x8913, request)[:18])[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _drop_capabilities() -> None:
    """No capability left, none to regain (not even by exec as uid 0), nothing to gain by setuid files."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) < 0:
            break  # past the last capability this kernel knows
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_NOROOT)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    _syscall("capset", ctypes.c_char_p(header), ctypes.c_char_p(bytes(24)))
    _prctl(PR_SET_DUMPABLE, 0)


def _landlock(plan: list[tuple[str, str, bool]]) -> list[str]:
    """Landlock domain: read/execute the read-only binds, read /proc, write only the work dir; signals
    and abstract unix sockets scoped to the sandbox (ABI 6). Returns ["landlock"] when it was applied."""
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return []
    handled = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (_LL_TRUNCATE if abi >= 3 else 0)
    handled |= _LL_IOCTL_DEV if abi >= 5 else 0
    scoped = _LL_SCOPE_ABSTRACT_UNIX | _LL_SCOPE_SIGNAL if abi >= 6 else 0
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    attr = struct.pack("QQQ", handled, 0, scoped)[:size]
    ruleset = _check(
        _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.c_char_p(attr), size, 0), "landlock ruleset"
    )
    file_rights = handled & (_LL_EXECUTE | _LL_WRITE | _LL_READ | _LL_TRUNCATE | _LL_IOCTL_DEV)
    rules = [
        (target, _LL_EXECUTE | _LL_READ | (_LL_READ_DIR if directory else 0)) for _, target, directory in plan
    ]
    rules += [
        (f"/dev/{name}", file_rights & ~_LL_EXECUTE) for name in ("null", "zero", "full", "random", "urandom")
    ]
    rules += [
        ("/", _LL_READ_DIR),
        ("/proc", _LL_READ | _LL_READ_DIR),
        (WORKDIR, handled & ~(_LL_MAKE_CHAR | _LL_MAKE_BLOCK)),
    ]
    try:
        for path, rights in rules:
            if not os.path.exists(path):
                continue
            descriptor = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", rights & handled, descriptor)
                _check(
                    _libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.c_char_p(rule), 0),
                    f"landlock {path}",
                )
            finally:
                os.close(descriptor)
        _check(_libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock restrict")
    finally:
        os.close(ruleset)
    return [f"landlock-abi{abi}"]


# ---------------------------------------------------------------------------------------------------
# the program (C3)


def _print_program_traceback(error: BaseException) -> None:
    """Traceback without this script's own frame (reading this file would be a denied read)."""
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    sys.stderr.write("".join(traceback.format_exception(type(error), error, tb)))


def _run_program(config: dict, source: str, done_fd: int, workdir: str) -> None:
    """C3: never returns. Writes to done_fd only after the program's last statement ran."""
    os.closerange(3, done_fd)
    os.closerange(done_fd + 1, 65536)
    if config["audit_guard"]:
        _install_guard(os.path.realpath(workdir), _read_roots())
    program_name = config["program_name"]
    linecache.cache[program_name] = (len(source), None, source.splitlines(True), program_name)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    code, finished = EXIT_EXCEPTION, False
    try:
        exec(compile(source, program_name, "exec"), namespace)
    except SystemExit as stop:  # the program ended itself: its status stands, but it did not complete
        if stop.code is not None and not isinstance(stop.code, int):
            sys.stderr.write(f"{stop.code}\n")
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except AssertionError as error:
        _print_program_traceback(error)
        code = EXIT_ASSERTION
    except MemoryError:
        os.write(2, b"MemoryError\n")
        code = EXIT_MEMORY
    except BaseException as error:
        _print_program_traceback(error)
        code = EXIT_EXCEPTION
    else:
        code, finished = 0, True
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        code = code or EXIT_EXCEPTION
    if finished and code == 0:
        os.write(done_fd, b"1")
    os._exit(code & 0xFF)


def _supervise(config: dict, source: str, report_fd: int, workdir: str, layers: list[str]) -> dict:
    """Fork C3, wait for it (reaping orphans meanwhile), and say how it ended."""
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_fd)
            os.close(done_read)
            _run_program(config, source, done_write, workdir)
        finally:
            os._exit(EXIT_SETUP)
    os.close(done_write)
    status = None
    while status is None:
        try:
            reaped, raw = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if reaped == pid:
            status = raw
    os.set_blocking(done_read, False)
    try:
        completed = os.read(done_read, 1) == b"1"
    except BlockingIOError:
        completed = False
    returncode = None if status is None else os.waitstatus_to_exitcode(status)
    return {"returncode": returncode, "completed": completed, "isolation": layers}


def _send(fd: int, message: dict) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def _namespaced_child(config: dict, source: str, report_fd: int, go_read: int, ready_write: int) -> None:
    """C1: unshare, let S write the id maps, fork C2 (PID 1), pass on how C2 ended. Never returns."""
    _prctl(PR_SET_PDEATHSIG, 9)
    plan, links = _bind_plan(), _usr_links()
    try:
        flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        _check(_libc.unshare(flags), "unshare")
    except OSError as error:
        os.write(ready_write, f"unshare failed: {error}".encode())
        os._exit(EXIT_NO_KERNEL_SANDBOX)
    os.write(ready_write, b"ok")
    os.close(ready_write)
    if os.read(go_read, 2) != b"ok":
        os._exit(EXIT_NO_KERNEL_SANDBOX)
    os.close(go_read)
    # Still the host id here: open the bind sources now (a 0700 /root holding the interpreter is fine),
    # in the new mount namespace, so C2 can bind them through /proc/self/fd after dropping to the mapped id.
    sources = [os.open(source, os.O_PATH) for source, _, _ in plan]
    os.setresgid(0, 0, 0)  # become the namespace's root, i.e. the mapped unprivileged host id
    os.setresuid(0, 0, 0)
    pid = os.fork()
    if pid == 0:  # C2: PID 1 of the new namespace
        try:
            _prctl(PR_SET_PDEATHSIG, 9)
            layers = ["userns", "pidns", "ipcns", "utsns", *_build_root(config, plan, sources, links)]
            _loopback_up()
            layers.append("netns")
            _set_limits(config)
            _drop_capabilities()
            layers.append("no-capabilities")
            layers += _landlock(plan)
            layers += ["rlimits", "audit-hook" if config["audit_guard"] else "no-audit-hook"]
        except BaseException:
            _send(report_fd, {"setup_error": traceback.format_exc()})
            os._exit(EXIT_SETUP)
        _send(report_fd, _supervise(config, source, report_fd, WORKDIR, layers))
        os._exit(0)  # the kernel now kills whatever is left in the PID namespace
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _write_id_maps(pid: int) -> None:
    outer_uid, outer_gid = (SANDBOX_ID, SANDBOX_ID) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    with open(f"/proc/{pid}/setgroups", "w") as handle:
        handle.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as handle:
        handle.write(f"0 {outer_uid} 1\n")
    with open(f"/proc/{pid}/gid_map", "w") as handle:
        handle.write(f"0 {outer_gid} 1\n")


def _run_namespaced(config: dict, source: str) -> tuple[dict | None, str]:
    """S side of the kernel sandbox: (C2's report or None, why not)."""
    report_read, report_write = os.pipe()
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (report_read, ready_read, go_write):
                os.close(fd)
            _namespaced_child(config, source, report_write, go_read, ready_write)
        finally:
            os._exit(EXIT_SETUP)
    for fd in (report_write, ready_write, go_read):
        os.close(fd)
    ready = os.read(ready_read, 512)
    os.close(ready_read)
    why = ""
    if ready == b"ok":
        try:
            _write_id_maps(pid)
            os.write(go_write, b"ok")
        except OSError as error:
            why = f"cannot map ids: {error}"
    else:
        why = ready.decode(errors="replace") or "child died"
    os.close(go_write)
    chunks = []
    while chunk := os.read(report_read, 65536):
        chunks.append(chunk)
    os.close(report_read)
    os.waitpid(pid, 0)
    messages = [json.loads(line) for line in b"".join(chunks).decode().splitlines() if line.strip()]
    report = messages[-1] if messages else None
    if report is not None and "setup_error" in report:
        return None, report["setup_error"]
    return report, why or ("" if report else "no report from the sandbox")


def _run_unconfined(config: dict, source: str) -> dict:
    """Fallback (--unsafe-code): rlimits and the audit hook only, in the host's namespaces."""
    workdir = config["host_workdir"]
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_read)
            _set_limits(config)
            layers = ["rlimits", "audit-hook" if config["audit_guard"] else "no-audit-hook"]
            _send(report_write, _supervise(config, source, report_write, workdir, layers))
        finally:
            os._exit(0)
    os.close(report_write)
    chunks = []
    while chunk := os.read(report_read, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks).decode().splitlines()[-1])


def main() -> None:
    try:
        with open(sys.argv[1], encoding="utf-8") as handle:
            config = json.load(handle)
        with open(config["program_path"], encoding="utf-8") as handle:
            source = handle.read()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        report, why = _run_namespaced(config, source) if config["try_kernel"] else (None, "switched off")
        if report is None:
            if config["require_kernel"]:
                os.write(2, f"hyft-sandbox: no kernel sandbox here ({why.strip()}); refusing to run "
                            "model-written code (pass --unsafe-code to run it with rlimits and an audit "
                            "hook only)\n".encode())  # fmt: skip
                os._exit(EXIT_NO_KERNEL_SANDBOX)
            report = _run_unconfined(config, source)
        with open(config["result_path"], "w", encoding="utf-8") as handle:
            json.dump(report, handle)
        if report["completed"] and report["returncode"] == 0:
            with open(config["token_path"], encoding="utf-8") as handle:
                token = handle.read().strip()
            os.write(1, f"\n{token}\n".encode())
    except Exception:
        traceback.print_exc()
        os._exit(EXIT_SETUP)
    os._exit(0)


if __name__ == "__main__":
    main()
