"""Run untrusted Python (model-generated code) in a contained subprocess.

Every program runs as ``python -I -S main.py`` (isolated mode, no site-packages) with a
minimal environment, closed stdin, output to size-capped files, resource limits, no new
privileges (``PR_SET_NO_NEW_PRIVS``) and a seccomp filter that refuses ``socket(2)`` (no
TCP, UDP or Unix socket, pathname or abstract; ``socketpair`` stays) and io_uring. The
processes between this module and the program are in ``eval.sandbox_init``. The first of
these modes that works here applies (``SandboxResult.isolation`` names its layers;
docs/sandbox.md has what each one contains and the tests that prove it):

``namespaces`` (root, ``unshare`` permitted): fresh PID, mount and network namespaces whose
PID 1 is ours: every mount read-only, a private tmpfs of ``disk_bytes`` on /tmp as the
only writable directory, the program under a uid of its own (so ``RLIMIT_NPROC`` counts
only its processes). When the program exits, or its PID 1 is killed, the kernel kills
every process left in the namespace, whatever session or process group it moved to.

``bwrap`` (bubblewrap with user namespaces, the mode of a non-root user such as the
containers' uid 1000): the same containment from ``bwrap --unshare-all``: read-only /,
read-only /dev, a private tmpfs of ``disk_bytes`` on /tmp, no network, a PID namespace.

``landlock`` (Linux 6.12 or newer, Landlock ABI 6, any user): the program runs under a
subreaper supervisor in a Landlock domain that may write only beneath its working
directory (and /dev/null), may not use TCP or abstract Unix sockets, and may not signal
any process outside the domain, so not its supervisor. Its directory is on the host's
temporary directory; ``disk_bytes`` there is watched (sampled), not enforced by the kernel.

``unconfined`` (only when asked for: ``allow_unconfined=True``, the environment variable
``OPTIMAL_SPARSITY_UNCONFINED_SANDBOX=1`` or the CLI's ``--unconfined-sandbox``): where
none of the above is available. Process cleanup (a child-subreaper supervisor),
limits, no new privileges and the seccomp filter apply; writes are limited by file
permissions only (as root the program runs under an unused uid). Without that opt-in,
``run_python`` refuses (``SandboxUnavailable``) rather than run generated code unconfined.

In every mode the caller watches the program's whole process tree: the wall-clock
timeout, the number of processes and the resident memory of all of them together
(``memory_bytes``; sampled every ``POLL_S``) each end the run, and when ``run_python``
returns every process the program started has been killed (SIGKILL, until none is left).

Resource limits (``SandboxLimits``): CPU seconds, address space (per process) and resident
memory (all processes together), file size, disk (the tmpfs), open files, processes, no
core files. Status of a run: ``passed`` (exit 0), ``failed`` (non-zero exit, a signal, a
limit: ``killed_by`` names a watched one), ``timeout`` (the wall clock or the CPU limit),
``error`` (the sandbox itself could not start the program).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import json
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

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval import sandbox_init

Status = Literal["passed", "failed", "timeout", "error"]
Mode = Literal["namespaces", "bwrap", "landlock", "unconfined"]
CONTAINED_MODES: tuple[Mode, ...] = ("namespaces", "bwrap", "landlock")
UNCONFINED_ENV = "OPTIMAL_SPARSITY_UNCONFINED_SANDBOX"
POLL_S = 0.025  # how often the process tree is measured

# Unused uids (no passwd entry), one per run so that RLIMIT_NPROC counts that run alone;
# below 2**31, which bubblewrap's uid map requires.
_UID_BASE, _UID_SPAN = 1_500_000_000, 500_000_000
_uid_counter = itertools.count()
_TAIL = 2000


class SandboxUnavailable(UserError):
    """No containment here and no explicit permission to run generated code unconfined."""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 0  # RLIMIT_CPU; 0: ceil(timeout) + 1
    memory_bytes: int = 1 << 30  # RLIMIT_AS per process, and resident total of all
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE (also caps stdout/stderr)
    disk_bytes: int = 64 << 20  # the private tmpfs (namespaces, bwrap); watched (landlock)
    open_files: int = 64  # RLIMIT_NOFILE
    processes: int = 8  # RLIMIT_NPROC (threads count too), and the watched tree

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
    killed_by: str = ""  # "timeout", "memory", "processes" or "disk": the watcher ended it

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# Modes ---------------------------------------------------------------------------------

@functools.cache
def _init_source() -> str:
    return Path(sandbox_init.__file__).read_text()


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


@functools.cache
def _bwrap_options() -> frozenset[str]:
    """The options this bubblewrap accepts (its --help)."""
    try:
        out = subprocess.run([shutil.which("bwrap") or "bwrap", "--help"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(w for w in out.split() if w.startswith("--"))


@functools.cache
def unavailable_reason(mode: Mode) -> str | None:
    """Why ``mode`` cannot run here (None: it can). Probed once, by running a program."""
    if mode == "unconfined":
        return None
    if not sys.platform.startswith("linux"):
        return f"{mode} mode needs Linux"
    if sandbox_init.seccomp_filter() is None:
        return f"no seccomp filter for this machine ({os.uname().machine})"
    if mode == "namespaces":
        if os.geteuid() != 0:
            return "namespaces mode needs root"
        if shutil.which("unshare") is None:
            return "namespaces mode needs unshare (util-linux)"
    elif mode == "landlock":
        abi = sandbox_init.landlock_abi()
        if abi < sandbox_init.LANDLOCK_MIN_ABI:
            return (f"Landlock ABI {abi} here; landlock mode needs "
                    f"{sandbox_init.LANDLOCK_MIN_ABI} (Linux 6.12 or newer)")
    elif shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    elif "--size" not in _bwrap_options():
        return "this bubblewrap lacks --size (0.7.0 or newer), so it cannot cap the disk"
    probe = run_python("pass", SandboxLimits(timeout_s=30), mode=mode)
    if not probe.passed:
        last = (probe.stderr_tail.strip().splitlines() or [probe.status])[-1]
        return f"{mode} mode does not work here: {last}"
    return None


def contained_mode() -> Mode | None:
    """The first mode that contains writes and the network here, if any."""
    return next((m for m in CONTAINED_MODES if unavailable_reason(m) is None), None)


def unconfined_allowed(allow_unconfined: bool | None = None) -> bool:
    if allow_unconfined is not None:
        return allow_unconfined
    return os.environ.get(UNCONFINED_ENV, "") == "1"


def sandbox_mode(allow_unconfined: bool | None = None) -> Mode:
    """The mode ``run_python`` uses: a contained one, else ``unconfined`` if allowed;
    otherwise ``SandboxUnavailable`` (one line saying what is missing)."""
    mode = contained_mode()
    if mode is not None:
        return mode
    if unconfined_allowed(allow_unconfined):
        return "unconfined"
    reasons = "; ".join(str(unavailable_reason(m)) for m in CONTAINED_MODES)
    raise SandboxUnavailable(
        f"sandbox: cannot contain generated code here ({reasons}); refusing to run it "
        f"unconfined without --unconfined-sandbox or {UNCONFINED_ENV}=1 (docs/sandbox.md)")


# The process tree ----------------------------------------------------------------------

def _kill_tree(root: int) -> None:
    """SIGKILL every descendant of ``root``, again until none is left, then ``root``."""
    for _ in range(1000):
        if not sandbox_init.kill_descendants(root):
            break
        time.sleep(0.002)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(root, signal.SIGKILL)


def _disk_used(top: Path, max_entries: int = 10_000) -> float:
    """Bytes allocated beneath ``top`` (inf past ``max_entries`` files and directories)."""
    used, seen, todo = 0, 0, [top]
    while todo:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as it:
            for entry in it:
                seen += 1
                if seen > max_entries:
                    return float("inf")
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    used += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        todo.append(Path(entry.path))
    return used


def _watch(proc: subprocess.Popen, limits: SandboxLimits, machinery: int,
           disk: Path | None) -> str:
    """Wait for ``proc``; the limit that ended it early ("" when it exited by itself).
    ``disk``: a directory whose contents count against ``disk_bytes`` (landlock mode)."""
    deadline = time.monotonic() + limits.timeout_s
    page = os.sysconf("SC_PAGE_SIZE")
    while True:
        try:
            proc.wait(timeout=POLL_S)
            return ""
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            return "timeout"
        table = sandbox_init.process_table()
        pids = sandbox_init.descendants(proc.pid, table)
        if len(pids) > limits.processes + machinery:
            return "processes"
        if sum(table[p][1] for p in pids if p in table) * page > limits.memory_bytes:
            return "memory"
        if disk is not None and _disk_used(disk) > limits.disk_bytes:
            return "disk"


# Running a program ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _launch_preexec(uid: int | None) -> None:
    """Between fork and exec of the sandbox's first process: the uid drop (bubblewrap
    started by root), then death with this process."""
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _libc.prctl(sandbox_init.PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return f.read().decode("utf-8", "replace")


def _env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home,
            "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _command(mode: Mode, root: Path, limits: SandboxLimits, uid: int | None
             ) -> tuple[list[str], int | None, tuple[str, ...], int]:
    """(argv, uid for the launch preexec, isolation layers, machinery processes)."""
    inner = "/tmp" if mode in ("namespaces", "bwrap") else str(root / "work")
    seccomp = sandbox_init.seccomp_filter()
    cfg = {"argv": [sandbox_python(), "-I", "-S", "main.py"], "env": _env(inner),
           "cwd": inner, "rlimits": limits.rlimits(), "uid": uid,
           "seccomp": seccomp.hex() if seccomp else None}
    common = ("rlimits", "no-new-privs", *(("seccomp:no-socket",) if seccomp else ()),
              "watched-tree:timeout,processes,memory")
    disk = f"tmpfs:/tmp:{limits.disk_bytes >> 20}MiB"
    machinery_python = os.path.realpath(sys.executable)
    if mode == "namespaces":
        cfg.update(code=str(root / "main.py"), tmpfs_bytes=limits.disk_bytes)
        argv = [shutil.which("unshare") or "unshare", "--net", "--mount", "--pid", "--fork",
                "--kill-child", "--mount-proc", machinery_python, "-I", "-S", "-c",
                _init_source(), "init", json.dumps(cfg)]
        layers = ("namespaces:pid,mount,net", "read-only-mounts", disk, f"uid={uid}", *common)
        return argv, None, layers, 1
    if mode == "bwrap":
        cfg["uid"] = None  # bubblewrap itself runs as the run's uid when started by root
        nested = ["--disable-userns"] if "--disable-userns" in _bwrap_options() else []
        argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user", *nested,
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--ro-bind", "/", "/", "--dev", "/dev", "--remount-ro", "/dev",
                "--proc", "/proc", "--size", str(limits.disk_bytes), "--tmpfs", "/tmp",
                "--ro-bind", str(root / "main.py"), "/tmp/main.py", "--chdir", "/tmp",
                sandbox_python(), "-I", "-S", "-c", _init_source(), "exec", json.dumps(cfg)]
        layers = ("bwrap:user,pid,mount,net,ipc,uts", "read-only-mounts", disk,
                  *(("no-nested-userns",) if nested else ()),
                  *((f"uid={uid}",) if uid is not None else ()), *common)
        return argv, uid, layers, 1
    if mode == "landlock":
        cfg["landlock"] = inner
        layers = ("landlock:writes-in-work-dir,no-tcp,scoped-signals,scoped-abstract-unix",
                  f"watched-disk:{limits.disk_bytes >> 20}MiB")
    else:
        layers = ("unconfined",)
    argv = [machinery_python, "-I", "-S", "-c", _init_source(), "supervisor", json.dumps(cfg)]
    layers = (*layers, "subreaper", *((f"uid={uid}",) if uid is not None else ()), *common)
    return argv, None, layers, 0


def run_python(code: str, limits: SandboxLimits | None = None, mode: Mode | None = None,
               *, allow_unconfined: bool | None = None) -> SandboxResult:
    """Run ``code`` as a Python program in the sandbox and classify the outcome.

    ``mode`` None: ``sandbox_mode(allow_unconfined)`` (which may refuse)."""
    limits = limits or SandboxLimits()
    mode = mode or sandbox_mode(allow_unconfined)
    root = Path(tempfile.mkdtemp(prefix="os-sandbox-"))
    os.chmod(root, 0o711)  # the run's uid must reach main.py and work/ (not list root/)
    is_root = os.geteuid() == 0
    uid = (_UID_BASE + (os.getpid() * 4096 + next(_uid_counter)) % _UID_SPAN
           if is_root else None)
    argv, launch_uid, layers, machinery = _command(mode, root, limits, uid)
    work = root / "work"
    work.mkdir()
    (work / "main.py").write_text(code)
    os.link(work / "main.py", root / "main.py")
    if uid is not None:
        for p in (work, work / "main.py"):
            os.chown(p, uid, uid)
        os.chmod(work, 0o700)
    start = time.monotonic()
    try:
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            try:
                proc = subprocess.Popen(
                    argv, cwd=root, env=_env(str(root)), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=err, start_new_session=True, close_fds=True,
                    preexec_fn=functools.partial(_launch_preexec, launch_uid))
            except (OSError, subprocess.SubprocessError) as e:
                return SandboxResult("error", None, 0.0, "", f"sandbox: {e}", layers)
            try:
                killed_by = _watch(proc, limits, machinery,
                                   work if mode == "landlock" else None)
            finally:
                _kill_tree(proc.pid)  # a limit, or stragglers; none is left after this
                proc.wait()
        duration = time.monotonic() - start
        rc = proc.returncode
        stdout, stderr = _tail(root / "stdout"), _tail(root / "stderr")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if killed_by in ("memory", "processes", "disk"):
        limit = {"memory": f"{limits.memory_bytes >> 20} MiB resident",
                 "processes": f"{limits.processes} processes",
                 "disk": f"{limits.disk_bytes >> 20} MiB of disk"}[killed_by]
        stderr = (stderr + f"\nsandbox: killed: the program's processes exceeded {limit}\n"
                  )[-_TAIL:]
    if killed_by == "timeout" or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        status: Status = "timeout"
    elif killed_by:
        status = "failed"
    elif rc == 0:
        status = "passed"
    elif rc == sandbox_init.SETUP_FAILED and "sandbox: " in stderr:
        status = "error"
    else:
        status = "failed"
    return SandboxResult(status, rc, duration, stdout, stderr, layers, killed_by)


def run_many(programs: Iterable[str], limits: SandboxLimits | None = None, *,
             allow_unconfined: bool | None = None) -> list[SandboxResult]:
    """Run programs one after another; a bad one never stops the rest (a sandbox that
    refuses to run, ``SandboxUnavailable``, stops them all)."""
    mode = sandbox_mode(allow_unconfined)
    out = []
    for code in programs:
        try:
            out.append(run_python(code, limits, mode))
        except Exception as e:  # an evaluation must go on after any failure
            out.append(SandboxResult("error", None, 0.0, "", f"sandbox: {e!r}"))
    return out
