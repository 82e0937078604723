"""The processes between ``eval.sandbox`` and a sandboxed program (standard library only).

``eval.sandbox`` runs this file's source as ``python -I -S -c SOURCE ROLE CONFIG`` (the
source travels in argv, so no file of the checkout needs to be readable by the sandbox's
uid). ``CONFIG`` is JSON: ``argv``, ``env``, ``cwd``, ``rlimits`` ([resource, soft, hard]),
``uid`` (or null), ``seccomp`` (hex of a BPF program, or null) and, for ``init``, ``code``
(the host path of the program's source) and ``tmpfs_bytes``. Roles:

``init``: PID 1 of fresh PID, mount and network namespaces (``unshare``, as root). It makes
every mount read-only, mounts a private tmpfs of ``tmpfs_bytes`` on /tmp (the program's
only writable directory), copies the program there and forks it. When the program exits,
init exits with its status and the kernel kills every process left in the namespace,
whatever session or process group it moved to.

``supervisor``: a child subreaper (``PR_SET_CHILD_SUBREAPER``) outside namespaces: every
process the program leaves behind (double fork, ``setsid``) becomes its child. When the
program exits it kills all of its descendants, again until none is left, then exits. With
``landlock`` (a directory) the program's process also enters a Landlock domain: writes
only beneath that directory (and to /dev/null), no TCP, no abstract Unix socket and no
signal to any process outside the domain (so not to the supervisor).

``exec`` (inside bubblewrap): prepares the process and execs the program in place.

In every role the program's process gets the resource limits, the uid drop (when ``uid``
is set), no new privileges (``PR_SET_NO_NEW_PRIVS``), the Landlock domain (when set) and
the seccomp filter, then execs.
Init and the supervisor die with their parent (``PR_SET_PDEATHSIG``). A setup failure
exits with status 125 and a ``sandbox: `` line on stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import resource
import signal
import struct
import sys
import time

SETUP_FAILED = 125
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 22, 36, 38
SECCOMP_MODE_FILTER = 2

# Seccomp: refuse socket(2) for every address family (socketpair(2), which reaches no one,
# stays), and io_uring, whose requests would bypass the filter; kill any other syscall ABI
# (x32, i386) so the numbers below are the only ones that reach the kernel.
_ARCH = {  # machine: (AUDIT_ARCH_*, socket, io_uring_setup/enter/register)
    "x86_64": (0xC000003E, 41, (425, 426, 427)),
    "aarch64": (0xC00000B7, 198, (425, 426, 427)),
}
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_KILL, _RET_EPERM = 0x7FFF0000, 0x80000000, 0x00050000 | 1


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """The BPF program (``struct sock_filter[]``), or None on a machine without numbers."""
    spec = _ARCH.get(machine or platform.machine())
    if spec is None:
        return None
    arch, socket_nr, uring = spec
    denied = (socket_nr, *uring)
    ins = [(_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
           (_JEQ_K, 1, 0, arch),
           (_RET_K, 0, 0, _RET_KILL),
           (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
           (_JGE_K, 0, 1, 0x40000000),  # x32 numbers
           (_RET_K, 0, 0, _RET_KILL)]
    for i, nr in enumerate(denied):  # jump to the EPERM return after the ALLOW
        ins.append((_JEQ_K, len(denied) - i, 0, nr))
    ins += [(_RET_K, 0, 0, _RET_ALLOW), (_RET_K, 0, 0, _RET_EPERM)]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# Landlock (the same syscall numbers on x86_64 and aarch64).
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_VERSION, _LL_RULE_PATH_BENEATH = 1, 1
_FS_WRITE_FILE, _FS_TRUNCATE = 1 << 1, 1 << 14
_FS_WRITES = (1 << 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10
              | 1 << 11 | 1 << 12 | 1 << 13)  # write, remove, make *, refer
_NET_TCP = 1 << 0 | 1 << 1  # bind, connect
_SCOPES = 1 << 0 | 1 << 1  # abstract Unix sockets, signals
LANDLOCK_MIN_ABI = 6  # signal scoping: the program cannot kill its supervisor


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none, or not permitted here)."""
    v = _libc.syscall(_LL_CREATE, None, 0, _LL_VERSION)
    return max(0, int(v))


def _landlock(writable: str) -> None:
    abi = landlock_abi()
    if abi < LANDLOCK_MIN_ABI:
        raise OSError(0, f"Landlock ABI {abi} < {LANDLOCK_MIN_ABI}")
    fs = _FS_WRITES | _FS_TRUNCATE
    attr = struct.pack("QQQ", fs, _NET_TCP, _SCOPES)
    fd = _libc.syscall(_LL_CREATE, attr, len(attr), 0)
    _check(0 if fd >= 0 else -1, "landlock_create_ruleset")
    try:
        for path, access in ((writable, fs), ("/dev/null", _FS_WRITE_FILE | _FS_TRUNCATE)):
            target = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", access, target)
                _check(_libc.syscall(_LL_ADD_RULE, int(fd), _LL_RULE_PATH_BENEATH, rule, 0),
                       f"landlock_add_rule {path}")
            finally:
                os.close(target)
        _check(_libc.syscall(_LL_RESTRICT, int(fd), 0), "landlock_restrict_self")
    finally:
        os.close(fd)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0), "PR_SET_PDEATHSIG")


def _install_seccomp(prog: bytes) -> None:
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    fprog = SockFprog(len(prog) // 8, prog)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
           "seccomp")


def exec_program(cfg: dict) -> None:
    """In the program's own process: limits, uid drop, no new privileges, seccomp, exec."""
    try:
        for res, soft, hard in cfg["rlimits"]:
            resource.setrlimit(res, (soft, hard))
        if cfg.get("uid") is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
        die_with_parent()  # after the uid change, which clears it
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        if cfg.get("landlock"):
            _landlock(cfg["landlock"])
        if cfg.get("seccomp"):
            _install_seccomp(bytes.fromhex(cfg["seccomp"]))
        os.chdir(cfg["cwd"])
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except OSError as e:
        die(f"cannot start the program: {e}")


def die(msg: str) -> None:
    sys.stderr.write(f"sandbox: {msg}\n")
    sys.stderr.flush()
    os._exit(SETUP_FAILED)


def _exit_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# init ----------------------------------------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND = 1024, 2048, 4096
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
_KEEP = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
         "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]


def _mount(src: bytes | None, dst: str, fstype: bytes | None, flags: int,
           data: bytes | None = None) -> str | None:
    if _libc.mount(src, dst.encode(), fstype, flags, data) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def _unescape(s: str) -> str:
    return s.encode().decode("unicode_escape").encode("latin-1").decode()


def _read_only_everywhere() -> None:
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for m in mounts:
        point, opts = _unescape(m[4]), m[5].split(",")
        if "ro" in opts:
            continue
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for o in opts:
            flags |= _KEEP.get(o, 0)
        err = _mount(None, point, None, flags)
        if err and not point.startswith(("/proc", "/sys", "/dev/pts", "/dev/mqueue")):
            die(f"cannot make {point} read-only: {err}")


def init(cfg: dict) -> None:
    die_with_parent()
    try:
        with open(cfg["code"], "rb") as f:
            code = f.read()
        _read_only_everywhere()
        uid = cfg["uid"]
        opts = f"size={cfg['tmpfs_bytes']},mode=0700,uid={uid},gid={uid}".encode()
        err = _mount(b"tmpfs", "/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opts)
        if err:
            die(f"cannot mount a tmpfs on /tmp: {err}")
        main = os.path.join(cfg["cwd"], "main.py")
        with open(main, "wb") as f:
            f.write(code)
        os.chown(main, uid, uid)
    except OSError as e:
        die(repr(e))
    pid = os.fork()
    if pid == 0:
        exec_program(cfg)
    while True:  # PID 1 reaps every orphan until the program itself exits
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(SETUP_FAILED)
        if done == pid:
            os._exit(_exit_code(status))  # the kernel kills the rest of the namespace


# supervisor ----------------------------------------------------------------------------

def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, resident pages) of every live (non-zombie) process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
            fields = raw[raw.rindex(b")") + 2:].split()
            if fields[0] not in (b"Z", b"X"):
                table[int(name)] = (int(fields[1]), int(fields[21]))
        except (OSError, ValueError, IndexError):
            continue
    return table


def descendants(root: int, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """The live descendants of ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in (process_table() if table is None else table).items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def kill_descendants(root: int) -> bool:
    """SIGKILL every live descendant of ``root``; whether there was any."""
    pids = descendants(root)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return bool(pids)


def _kill_everything_and_exit(me: int, code: int) -> None:
    while True:
        kill_descendants(me)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(code)


def supervisor(cfg: dict) -> None:
    me = os.getpid()
    # When the caller dies: SIGTERM, so that the descendants are killed before it exits.
    signal.signal(signal.SIGTERM, lambda *_: _kill_everything_and_exit(me, 128 + 15))
    die_with_parent(signal.SIGTERM)
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "PR_SET_CHILD_SUBREAPER")
    pid = os.fork()
    if pid == 0:
        exec_program(cfg)
    code = None
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:  # no descendant left
            os._exit(SETUP_FAILED if code is None else code)
        if done == pid:
            code = _exit_code(status)
        if code is not None:  # the program is gone: everything it left goes too
            kill_descendants(me)
            time.sleep(0.001)


def main() -> None:
    role, cfg = sys.argv[1], json.loads(sys.argv[2])
    {"init": init, "supervisor": supervisor, "exec": exec_program}[role](cfg)


if __name__ == "__main__":
    main()
