"""Run untrusted Python (model-generated code) in a contained subprocess.

Every program runs as ``python -I -S main.py`` (isolated mode, no site-packages) in a
fresh temporary directory that is its working directory, ``HOME`` and ``TMPDIR``, with a
minimal environment, closed stdin, output to size-capped files, and a wall-clock
timeout after which its whole process group is killed. On top of that, the strongest of
two modes that this machine permits applies (``SandboxResult.isolation`` names the
layers that did):

``namespaces`` (root, and ``unshare`` permitted): ``unshare --net --mount --pid --fork
--kill-child --mount-proc`` starts a short launcher that, inside the new namespaces,
bind-mounts the working directory onto itself and remounts every other mount point
read-only (per-mount ``MS_BIND|MS_REMOUNT``: the host's mounts are untouched), sets the
resource limits, drops to an otherwise unused uid/gid (so ``RLIMIT_NPROC`` counts only
this program's processes) and execs the program. There is no network (a new network
namespace has only a loopback that is down), no write outside the working directory,
and the program is PID 1 of its own PID namespace: when it exits or the launcher is
killed, every process it started dies with it, even ones that left its process group.

``rlimits`` (otherwise): the resource limits are set in ``preexec_fn``; as root the child
also drops to an unused uid (files are then protected by their permissions only:
world-writable directories such as /tmp stay writable); a prelude injected before the
program replaces ``socket.socket`` and friends with functions that raise (best effort:
a program can still reach the C module ``_socket``). As a non-root user nothing stops
writes where that user may write.

Resource limits (``SandboxLimits``): CPU seconds, address space, file size, open files,
processes (``RLIMIT_NPROC``; not enforced for root, hence the uid drop), no core files.

Status of a run: ``passed`` (exit 0), ``failed`` (non-zero exit or killed by a signal:
an assertion, an exception, ``MemoryError``, the file-size limit), ``timeout`` (the wall
clock or the CPU limit), ``error`` (the sandbox itself could not run the program).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "error"]
Mode = Literal["namespaces", "rlimits"]

LAUNCHER_FAILED = 125  # exit status of the launcher when it cannot set up the sandbox
_UID_BASE = 3_000_000_000  # unused uids (no passwd entry): one per run, counted alone
_uid_counter = itertools.count()
_TAIL = 2000


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 0  # RLIMIT_CPU; 0: ceil(timeout) + 1
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE (also caps stdout/stderr)
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 8  # RLIMIT_NPROC (threads count too)

    def cpu_limit(self) -> int:
        return self.cpu_s or int(-(-self.timeout_s // 1)) + 1

    def rlimits(self) -> list[tuple[int, int, int]]:
        cpu = self.cpu_limit()
        return [(resource.RLIMIT_CPU, cpu, cpu + 1),
                (resource.RLIMIT_AS, self.memory_bytes, self.memory_bytes),
                (resource.RLIMIT_FSIZE, self.file_bytes, self.file_bytes),
                (resource.RLIMIT_NOFILE, self.open_files, self.open_files),
                (resource.RLIMIT_NPROC, self.processes, self.processes),
                (resource.RLIMIT_CORE, 0, 0)]


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    returncode: int | None
    duration_s: float
    stdout_tail: str = ""
    stderr_tail: str = ""
    isolation: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# The launcher runs as root inside the new namespaces (see the module docstring). It
# takes: working directory, uid, rlimits as "res:soft:hard,...", then the program argv.
_LAUNCHER = r"""
import ctypes, os, resource, sys
work, uid, limits, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_NOATIME, MS_NODIRATIME, MS_REMOUNT, MS_BIND, MS_REC = 1024, 2048, 32, 4096, 16384
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
         "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]

def die(msg):
    sys.stderr.write("sandbox: " + msg + "\n")
    os._exit(125)

def mount(src, dst, flags):
    if libc.mount(src, dst.encode(), None, flags, None) != 0:
        return os.strerror(ctypes.get_errno())

def unescape(s):
    return s.encode().decode("unicode_escape").encode("latin-1").decode()

def setup():
    err = mount(work.encode(), work, MS_BIND | MS_REC)
    if err:
        die("cannot bind-mount the working directory: " + err)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for m in mounts:
        point, opts = unescape(m[4]), m[5].split(",")
        if point == work or "ro" in opts:
            continue
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for o in opts:
            flags |= FLAGS.get(o, 0)
        err = mount(None, point, flags)
        if err and not point.startswith(("/proc", "/sys", "/dev/pts", "/dev/mqueue")):
            die("cannot make " + point + " read-only: " + err)
    for spec in limits.split(","):
        res, soft, hard = map(int, spec.split(":"))
        resource.setrlimit(res, (soft, hard))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    os.chdir(work)

try:
    setup()
except OSError as e:
    die(repr(e))
os.execv(argv[0], argv)
"""

# Best-effort network block for the ``rlimits`` mode (prepended to the program).
_NET_PRELUDE = """\
def __sandbox_no_network():
    import socket
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in this sandbox")
    for name in ("socket", "create_connection", "create_server", "getaddrinfo",
                 "socketpair", "fromfd"):
        setattr(socket, name, refuse)
__sandbox_no_network()
del __sandbox_no_network
"""


@functools.cache
def sandbox_mode() -> Mode:
    """``namespaces`` where root may ``unshare`` here (probed once), else ``rlimits``."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None or not sys.platform.startswith("linux"):
        return "rlimits"
    try:
        probe = subprocess.run(
            [unshare, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
             "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "rlimits"
    return "namespaces" if probe.returncode == 0 else "rlimits"


def _world_usable(path: str) -> bool:
    """Whether any user may execute ``path`` (a file) or enter it (a directory), with
    every ancestor directory searchable."""
    p = Path(path)
    try:
        if not p.stat().st_mode & stat.S_IXOTH:
            return False
        return all(a.stat().st_mode & stat.S_IXOTH for a in p.parents)
    except OSError:
        return False


@functools.cache
def sandbox_python() -> str:
    """The interpreter for sandboxed programs (they need only the standard library).

    After the uid drop it must be usable by any user: this interpreter if it and its
    standard library are, else the system's ``python3``."""
    exe = os.path.realpath(sys.executable)
    stdlib = os.path.dirname(os.__file__)
    if os.geteuid() != 0 or (_world_usable(exe) and _world_usable(stdlib)):
        return exe
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if _world_usable(os.path.realpath(cand)):
            return os.path.realpath(cand)
    return exe


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return f.read().decode("utf-8", "replace")


def _env(work: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
            "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is ``uid`` (a uid used by this run only):
    catches children that left the process group (``setsid``)."""
    for _ in range(20):
        found = False
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(ln.split(":", 1) for ln in status.read_text().splitlines()
                              if ":" in ln)
                if int(fields["Uid"].split()[0]) == uid and "Z" not in fields["State"]:
                    found = True
                    os.kill(int(status.parent.name), signal.SIGKILL)
            except (OSError, KeyError, IndexError, ValueError):
                continue
        if not found:
            return
        time.sleep(0.01)


def run_python(code: str, limits: SandboxLimits | None = None,
               mode: Mode | None = None) -> SandboxResult:
    """Run ``code`` as a Python program in the sandbox and classify the outcome."""
    limits = limits or SandboxLimits()
    mode = mode or sandbox_mode()
    root = Path(tempfile.mkdtemp(prefix="os-sandbox-"))
    work = root / "work"
    work.mkdir()
    os.chmod(root, 0o711)  # the dropped uid must reach work/ (but not list root/)
    is_root = os.geteuid() == 0
    uid = _UID_BASE + (os.getpid() * 4096 + next(_uid_counter)) % 1_000_000_000
    python = os.path.realpath(sys.executable)
    prog = [sandbox_python(), "-I", "-S", "main.py"]
    if mode == "namespaces":
        layers = ("namespaces:net,mount(read-only),pid", f"uid={uid}", "rlimits",
                  "process-group")
        spec = ",".join(f"{r}:{s}:{h}" for r, s, h in limits.rlimits())
        argv = [shutil.which("unshare") or "unshare", "--net", "--mount", "--pid", "--fork",
                "--kill-child", "--mount-proc", python, "-I", "-S", "-c", _LAUNCHER,
                str(work), str(uid), spec, *prog]
        preexec = None
    else:
        code = _NET_PRELUDE + code
        layers = ("rlimits", "socket-prelude", "process-group",
                  *((f"uid={uid}", "kill-uid") if is_root else ()))
        argv = prog
        preexec = functools.partial(_child_limits, limits, uid if is_root else None)
    (work / "main.py").write_text(code)
    if is_root:
        os.chown(work, uid, uid)
        os.chmod(work, 0o700)
    start = time.monotonic()
    timed_out = False
    try:
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            try:
                proc = subprocess.Popen(argv, cwd=work, env=_env(work), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, start_new_session=True,
                                        preexec_fn=preexec, close_fds=True)
            except (OSError, subprocess.SubprocessError) as e:
                return SandboxResult("error", None, 0.0, "", f"sandbox: {e}", layers)
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc.pid)  # timeout, or stragglers left behind
            proc.wait()
            if mode == "rlimits" and is_root:
                _kill_uid(uid)
        duration = time.monotonic() - start
        rc = proc.returncode
        stdout, stderr = _tail(root / "stdout"), _tail(root / "stderr")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        status: Status = "timeout"
    elif rc == 0:
        status = "passed"
    elif mode == "namespaces" and rc == LAUNCHER_FAILED and "sandbox: " in stderr:
        status = "error"
    else:
        status = "failed"
    return SandboxResult(status, rc, duration, stdout, stderr, layers)


def _child_limits(limits: SandboxLimits, uid: int | None) -> None:
    """``preexec_fn`` of the ``rlimits`` mode: limits, then (as root) the uid drop."""
    for res, soft, hard in limits.rlimits():
        resource.setrlimit(res, (soft, hard))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def run_many(programs: Iterable[str], limits: SandboxLimits | None = None
             ) -> list[SandboxResult]:
    """Run programs one after another; a bad one never stops the rest."""
    out = []
    for code in programs:
        try:
            out.append(run_python(code, limits))
        except Exception as e:  # an evaluation must go on after any failure
            out.append(SandboxResult("error", None, 0.0, "", f"sandbox: {e!r}"))
    return out
