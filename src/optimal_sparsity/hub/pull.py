"""``./reproduce pull``: download a locked entry and verify it before anything loads it.

Layout of the cache directory (default ``~/.cache/optimal-sparsity/hub``)::

    models/<name>/          the verified copy: the repo's files + PULL.json
    datasets/<name>/
    .staging/<kind>-<name>-<revision>/   downloads in progress (huggingface_hub local_dir)
    .locks/                 one lock file per entry (concurrent pulls wait)

Files are downloaded with ``huggingface_hub.hf_hub_download`` at the pinned revision into
the staging directory. Completed files stay there across runs, so an interrupted pull
resumes at file granularity; within a file, huggingface_hub resumes dropped connections
with HTTP range requests; a server error (5xx, 429) or a dropped connection is retried
with backoff (``RETRY_DELAYS_S``). Every file is then checked (size and sha256 against the lock),
then the config and parameter count (models). Only then are the files moved into a fresh
directory that replaces ``models/<name>`` in one rename: a failed pull never touches a
previously verified copy and never leaves a half-written one under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimal_sparsity.atomic import atomic_dir
from optimal_sparsity.errors import IntegrityError, UserError
from optimal_sparsity.hub.lock import DEFAULT_HUB, Entry, Lock, LockedFile, select_files
from optimal_sparsity.hub.verify import (
    ExpectedFile,
    check_config,
    check_model,
    read_config,
    refuse_pickles,
    verify_file,
)

CACHE_ENV = "OPTIMAL_SPARSITY_HUB_CACHE"
RECORD = "PULL.json"
RECORD_FORMAT = "optimal-sparsity-pull/1"
Log = Callable[[str], None]
RETRY_DELAYS_S: tuple[float, ...] = (1.0, 4.0, 16.0)  # waits before the 2nd, 3rd, 4th try


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB).rstrip("/")


def offline_mode() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "optimal-sparsity" / "hub"


def entry_dir(cache_dir: str | Path, entry: Entry) -> Path:
    return Path(cache_dir) / f"{entry.kind}s" / entry.name


def _one_line(err: BaseException) -> str:
    parts = []
    e: BaseException | None = err
    while e is not None and len(parts) < 3:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        text = lines[0] if lines else type(e).__name__
        if text not in parts:
            parts.append(text)
        e = e.__cause__
    msg = ": ".join(parts)
    return msg if len(msg) <= 400 else msg[:397] + "..."


def _hub_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    return (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, httpx2.HTTPError,
            OSError, ValueError)


def _transient(err: BaseException) -> bool:
    """A server error or a dropped connection: worth another try."""
    import httpx2

    code = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(code, int):
        return code >= 500 or code == 429
    return isinstance(err, httpx2.TransportError)


def _retrying(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, tried again after each transient hub error, with backoff."""
    for attempt, delay in enumerate((*RETRY_DELAYS_S, None), 1):
        try:
            return fn()
        except _hub_errors() as err:
            if delay is None or not _transient(err):
                raise
            print(f"{what}: {_one_line(err)}; retrying in {delay:g} s (try {attempt + 1} of "
                  f"{len(RETRY_DELAYS_S) + 1})", file=sys.stderr)
            time.sleep(delay)
    raise AssertionError("unreachable")


# The remote side ----------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    blob_id: str | None
    lfs_sha256: str | None

    def expected(self) -> ExpectedFile:
        if self.size is None:
            raise IntegrityError(f"the hub gave no size for {self.path}")
        return ExpectedFile(self.path, self.size, sha256=self.lfs_sha256,
                            git_blob=None if self.lfs_sha256 else self.blob_id)


@dataclass
class RemoteRepo:
    """One entry's repository at one resolved commit on a hub."""

    entry: Entry
    revision: str
    endpoint: str
    token: bool | str | None
    files: dict[str, RemoteFile]

    @classmethod
    def resolve(cls, entry: Entry, *, revision: str = "main", endpoint: str | None = None,
                token: bool | str | None = None) -> RemoteRepo:
        from huggingface_hub import HfApi

        endpoint = endpoint or hub_endpoint()
        api = HfApi(endpoint=endpoint, token=token)
        info_fn = api.model_info if entry.kind == "model" else api.dataset_info
        try:
            info = _retrying(f"{entry.name}: {entry.repo_id}@{revision}", lambda: info_fn(
                entry.repo_id, revision=revision, files_metadata=True))
        except _hub_errors() as err:
            raise UserError(f"{entry.name}: cannot read {entry.repo_id}@{revision} from "
                            f"{endpoint}: {_one_line(err)}") from None
        sha = info.sha or ""
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise IntegrityError(f"{entry.name}: {endpoint} gave no commit sha for "
                                 f"{entry.repo_id}@{revision} (got {info.sha!r})")
        files = {}
        for s in info.siblings or []:
            lfs = s.lfs
            files[s.rfilename] = RemoteFile(s.rfilename, lfs.size if lfs else s.size, s.blob_id,
                                            lfs.sha256 if lfs else None)
        return cls(entry=entry, revision=sha, endpoint=endpoint, token=token, files=files)

    def wanted(self) -> tuple[list[str], list[str]]:
        kept, refused = select_files(self.files, self.entry.include)
        if not kept:
            raise IntegrityError(f"{self.entry.name}: no file of {self.entry.repo_id}@"
                                 f"{self.revision} matches {self.entry.include}")
        if self.entry.kind == "model" and not any(p.endswith(".safetensors") for p in kept):
            raise IntegrityError(
                f"{self.entry.name}: {self.entry.repo_id}@{self.revision} has no safetensors "
                f"weights (only {', '.join(refused) or 'none'}); pickled weights are never "
                "loaded")
        return kept, refused

    def download(self, path: str, local_dir: Path, cache_dir: Path) -> Path:
        """One file at this revision into ``local_dir`` (reuses a complete earlier download)."""
        from huggingface_hub import hf_hub_download

        try:
            out = _retrying(f"{self.entry.name}: {path}", lambda: hf_hub_download(
                self.entry.repo_id, path, repo_type=self.entry.repo_type,
                revision=self.revision, local_dir=local_dir, cache_dir=cache_dir,
                endpoint=self.endpoint, token=self.token))
        except _hub_errors() as err:
            raise UserError(f"{self.entry.name}: download of {self.entry.repo_id}/{path}@"
                            f"{self.revision[:12]} failed: {_one_line(err)}") from None
        return Path(out)

    def locked_files(self, log: Log = print) -> list[LockedFile]:
        """Size and sha256 of every wanted file (for ``lock --update``)."""
        kept, refused = self.wanted()
        if refused:
            log(f"{self.entry.name}: leaving out pickled files {', '.join(refused)}")
        out = []
        with tempfile.TemporaryDirectory(prefix="lock-update-") as tmp:
            for p in kept:
                rf = self.files[p]
                if rf.lfs_sha256 is not None and rf.size is not None:
                    out.append(LockedFile(p, rf.size, rf.lfs_sha256))
                    continue
                self.download(p, Path(tmp) / "files", Path(tmp) / "hf-cache")
                out.append(verify_file(Path(tmp) / "files", rf.expected(), name=self.entry.name,
                                       against="the hub's metadata"))
        return out

    def check_config(self, entry: Entry) -> None:
        with tempfile.TemporaryDirectory(prefix="lock-config-") as tmp:
            if "config.json" not in self.files:
                raise IntegrityError(f"{entry.name}: {entry.repo_id}@{self.revision} has no "
                                     "config.json")
            self.download("config.json", Path(tmp) / "files", Path(tmp) / "hf-cache")
            check_config(read_config(Path(tmp) / "files", entry.name), entry)


# Pull ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PullResult:
    name: str
    path: Path
    revision: str
    pinned: bool
    files: tuple[LockedFile, ...]
    reused: bool


def _read_record(directory: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format") == RECORD_FORMAT else None


def _record_files(rec: dict[str, Any]) -> tuple[LockedFile, ...]:
    return tuple(LockedFile(f["path"], f["size"], f["sha256"]) for f in rec["files"])


def verify_pulled(directory: Path, entry: Entry, *, allow_unpinned: bool = False,
                  rehash: bool = True) -> dict[str, Any]:
    """Check a pulled copy against the lock (or, if unpinned, against its own record)."""
    rec = _read_record(directory)
    if rec is None:
        raise IntegrityError(f"{entry.name}: {directory} is not a complete pull ({RECORD} is "
                             "missing or unreadable)")
    if rec.get("repo_id") != entry.repo_id:
        raise IntegrityError(f"{entry.name}: {directory} holds {rec.get('repo_id')}, the lock "
                             f"says {entry.repo_id}")
    if entry.pinned:
        if rec.get("revision") != entry.revision or _record_files(rec) != entry.files:
            raise IntegrityError(
                f"{entry.name}: the copy in {directory} is {rec.get('revision')}, the lock pins "
                f"{entry.revision}; run `./reproduce pull {entry.name}`")
        files = entry.files or ()
        against = "checkpoints.lock"
    else:
        if not allow_unpinned:
            raise UserError(f"{entry.name}: checkpoints.lock pins no revision, so its copy in "
                            f"{directory} was pulled unpinned; pass --allow-unpinned "
                            "(allow_unpinned=True) to use it anyway")
        files = _record_files(rec)
        against = f"its {RECORD}"
    for f in files:
        if rehash:
            verify_file(directory, ExpectedFile(f.path, f.size, f.sha256), name=entry.name,
                        against=against)
        else:
            p = directory / f.path
            if not p.is_file() or p.stat().st_size != f.size:
                raise IntegrityError(f"{entry.name}: {f.path} in {directory} is missing or not "
                                     f"{f.size} bytes")
    if entry.kind == "model":
        check_model(directory, entry, [f.path for f in files])
    return rec


def _staging(cache_dir: Path, entry: Entry, revision: str) -> Path:
    return cache_dir / ".staging" / f"{entry.kind}-{entry.name}-{revision}"


def _discard(staging: Path, path: str) -> None:
    """Remove a file that failed verification (and its download record) from staging."""
    (staging / path).unlink(missing_ok=True)
    (staging / ".cache" / "huggingface" / "download" / f"{path}.metadata").unlink(missing_ok=True)


def pull(entry: Entry, cache_dir: str | Path | None = None, *, allow_unpinned: bool = False,
         force: bool = False, endpoint: str | None = None, token: bool | str | None = None,
         log: Log = print) -> PullResult:
    """Download ``entry`` into ``cache_dir`` and verify it (see the module docstring)."""
    from filelock import FileLock

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not entry.pinned and not allow_unpinned:
        raise UserError(
            f"{entry.name}: checkpoints.lock pins no revision for {entry.repo_id} "
            f"({entry.unresolved_reason}); pass --allow-unpinned to pull the hub's current "
            "main without checking file hashes against the lock")
    final = entry_dir(cache_dir, entry)
    (cache_dir / ".locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / ".locks" / f"{entry.kind}-{entry.name}.lock")):
        if final.exists() and not force and entry.pinned:
            try:
                rec = verify_pulled(final, entry)
                log(f"{entry.name}: verified copy at {final} (revision {rec['revision']})")
                return PullResult(entry.name, final, rec["revision"], True, _record_files(rec),
                                  reused=True)
            except IntegrityError as err:
                log(f"{entry.name}: the copy at {final} does not verify ({err}); downloading "
                    "again (it is replaced only if the new download verifies)")
        if offline_mode():
            raise UserError(f"{entry.name}: HF_HUB_OFFLINE is set and {cache_dir} has no "
                            "verified copy; unset HF_HUB_OFFLINE to download it")
        return _download_and_promote(entry, cache_dir, final, endpoint=endpoint, token=token,
                                     force=force, log=log)


def _download_and_promote(entry: Entry, cache_dir: Path, final: Path, *, endpoint: str | None,
                          token: bool | str | None, force: bool, log: Log) -> PullResult:
    endpoint = endpoint or hub_endpoint()
    if entry.pinned:
        assert entry.revision is not None and entry.files is not None
        revision = entry.revision
        wanted = [ExpectedFile(f.path, f.size, f.sha256) for f in entry.files]
        against = "checkpoints.lock"
        remote = RemoteRepo(entry=entry, revision=revision, endpoint=endpoint, token=token,
                            files={})
    else:
        remote = RemoteRepo.resolve(entry, revision="main", endpoint=endpoint, token=token)
        revision = remote.revision
        kept, refused = remote.wanted()
        if refused:
            log(f"{entry.name}: not pulling pickled files {', '.join(refused)}")
        wanted = [remote.files[p].expected() for p in kept]
        against = "the hub's metadata"
        log(f"{entry.name}: UNPINNED pull of {entry.repo_id} main = {revision}: file hashes are "
            "checked against what the hub reports, not against checkpoints.lock")
        if final.exists() and not force:
            rec = _read_record(final)
            if rec is not None and rec.get("revision") == revision:
                try:
                    verify_pulled(final, entry, allow_unpinned=True)
                    log(f"{entry.name}: verified copy at {final} is already {revision}")
                    return PullResult(entry.name, final, revision, False, _record_files(rec),
                                      reused=True)
                except IntegrityError as err:
                    log(f"{entry.name}: the copy at {final} does not verify ({err})")
    refuse_pickles([w.path for w in wanted], entry.name)
    staging = _staging(cache_dir, entry, revision)
    staging.mkdir(parents=True, exist_ok=True)
    hf_cache = cache_dir / ".staging" / "hf-cache"
    for w in wanted:
        remote.download(w.path, staging, hf_cache)
    verified = []
    for w in wanted:
        try:
            verified.append(verify_file(staging, w, name=entry.name, against=against))
        except IntegrityError:
            _discard(staging, w.path)  # a bad file is not kept: the next pull fetches it again
            raise
    if entry.kind == "model":
        check_model(staging, entry, [w.path for w in wanted])
    record = {"format": RECORD_FORMAT, "name": entry.name, "kind": entry.kind,
              "repo_id": entry.repo_id, "revision": revision, "pinned": entry.pinned,
              "endpoint": endpoint,
              "hashes_checked_against": against,
              "files": [f.to_dict() for f in sorted(verified, key=lambda f: f.path)]}
    with atomic_dir(final, "hub-pull", replace=True) as tmp:
        for f in verified:
            dst = tmp / f.path
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / f.path, dst)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
    pinned = "pinned" if entry.pinned else "UNPINNED (hashes not checked against the lock)"
    log(f"{entry.name}: {entry.repo_id}@{revision} verified ({len(verified)} files, {pinned}) "
        f"-> {final}")
    return PullResult(entry.name, final, revision, entry.pinned,
                      tuple(sorted(verified, key=lambda f: f.path)), reused=False)


def pulled_dir(name: str, lock: Lock, cache_dir: str | Path | None = None, *,
               allow_unpinned: bool = False, rehash: bool = True) -> Path:
    """The verified local copy of a locked entry; raises if it was not pulled or fails."""
    entry = lock.find(name)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = entry_dir(cache_dir, entry)
    if not final.is_dir():
        raise UserError(f"{entry.name} has not been pulled into {cache_dir}: run "
                        f"`./reproduce pull {entry.name}`")
    verify_pulled(final, entry, allow_unpinned=allow_unpinned, rehash=rehash)
    return final


def pulled_model_dir(name: str, lock: Lock, cache_dir: str | Path | None = None, *,
                     allow_unpinned: bool = False, rehash: bool = True) -> Path:
    """A verified ``MixtralForCausalLM`` directory for the evaluation to load."""
    if lock.find(name).kind != "model":
        raise UserError(f"{name} is a data set, not a model")
    return pulled_dir(name, lock, cache_dir, allow_unpinned=allow_unpinned, rehash=rehash)


__all__ = ["PullResult", "RemoteRepo", "default_cache_dir", "hub_endpoint", "pull",
           "pulled_dir", "pulled_model_dir", "verify_pulled"]
