"""Atomic file and directory writes, and content hashing.

Every file the artifact writes goes through here: written to a temporary name in
the same directory, flushed and fsync'ed, then renamed over the target. A crash or a
full disk leaves either the old file or the new one, never a half-written one. Files get
the mode the umask gives (0644 under umask 022), directories 0755.

An output directory (a corpus, an HF export, a checkpoint, a pulled model) carries a
marker naming its kind (``OUTPUT_MARKER``). ``atomic_dir`` never replaces anything that
is not the project's own earlier output of the same kind, and that only when asked to.
Temporary names carry the writer's process id, so what a killed writer left behind is
removed by the next writer of the same name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from optimal_sparsity.errors import UserError

_TMP_PREFIX = ".tmp-"
OUTPUT_MARKER = ".optimal-sparsity-output"


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


def _tmp_name(name: str) -> str:
    return f"{_TMP_PREFIX}{name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_stale(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary entries for ``name`` in ``directory`` whose writer no longer
    runs. Without ``name``: every temporary entry there, for a caller that holds the
    directory's lock and so knows that nobody else writes there."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if not p.name.startswith(_TMP_PREFIX):
            continue
        if name is not None:
            rest = p.name[len(_TMP_PREFIX):]
            for prefix in ("old-", "delete-"):
                if rest.startswith(prefix + name + "."):
                    rest = rest[len(prefix):]
            if not rest.startswith(name + "."):
                continue
            pid = rest[len(name) + 1:].split(".", 1)[0]
            if not pid.isdigit() or _pid_alive(int(pid)):
                continue
        _remove(p)
        removed.append(p)
    return removed


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _describe(err: OSError, what: Path) -> OSError:
    """Re-raise an OSError with the target path and the failing operation named."""
    msg = f"could not write {what}: {err.strerror or err}"
    return type(err)(err.errno, msg)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of ``path``; on clean exit rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_name(path.name), dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes it 0600
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        raise _describe(err, path) from err
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind recorded in a directory's output marker, or None."""
    try:
        return json.loads((Path(path) / OUTPUT_MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_replaceable(path: str | os.PathLike, kind: str, *, replace: bool = False) -> None:
    """Refuse (one-line ``UserError``) to put a ``kind`` output at ``path`` if something
    is there that is not an empty directory or, with ``replace``, an earlier ``kind``."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink():
        if not any(path.iterdir()):
            return
        have = output_kind(path)
        if have == kind:
            if replace:
                return
            raise UserError(f"{path} already holds a {kind} written earlier; pass --force to "
                            "replace it")
        what = f"a {have}" if have else "something this project did not write there"
        raise UserError(f"{path} exists and holds {what}; refusing to replace it with a "
                        f"{kind} (choose another output path)")
    raise UserError(f"{path} exists and is not a directory; refusing to replace it with a "
                    f"{kind} (choose another output path)")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, kind: str, *, replace: bool = False
               ) -> Iterator[Path]:
    """Build a ``kind`` output directory under a temporary name; rename it into place
    on success.

    Something already at ``path`` is refused (``check_replaceable``) before anything is
    written, and again just before the rename; an earlier ``kind`` output (with
    ``replace``) or an empty directory is replaced only after the new one is complete.
    """
    path = Path(path)
    check_replaceable(path, kind, replace=replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_name(path.name), dir=path.parent))
    try:
        (tmp / OUTPUT_MARKER).write_text(json.dumps({"kind": kind}) + "\n")
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            if p.is_symlink():
                continue
            if p.is_dir():
                os.chmod(p, dir_mode())  # mkdtemp makes it 0700
            elif p.is_file():
                os.chmod(p, file_mode())  # e.g. safetensors' save_file makes 0600
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        check_replaceable(path, kind, replace=replace)
        old = None
        if path.exists():
            old = path.with_name(f"{_TMP_PREFIX}old-{path.name}.{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _describe(err, path) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_temporary(path: str | os.PathLike) -> bool:
    """True for the in-progress names this module creates (never read them)."""
    return Path(path).name.startswith(_TMP_PREFIX)
