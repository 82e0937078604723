"""``./reproduce lock --update``: resolve lock entries against a hub (the real one, or the
local stand-in in tests): each entry's commit and every file's size and sha256."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optimal_sparsity.errors import IntegrityError, UserError
from optimal_sparsity.hub.lock import Lock
from optimal_sparsity.hub.pull import RemoteRepo, hub_endpoint


@dataclass(frozen=True)
class UpdateReport:
    lock: Lock
    resolved: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (name, why)


def update_lock(lock: Lock, names: Sequence[str] | None = None, *, endpoint: str | None = None,
                token: bool | str | None = None, revision: str = "main",
                log: Callable[[str], None] = print) -> UpdateReport:
    """Resolve ``revision`` (a branch or commit) of each selected entry on the hub: the commit
    sha and every file's size and sha256 (LFS files: the hub's LFS sha256; other files are
    downloaded, checked against their git blob id and hashed). A model whose config.json
    disagrees with its grid point stays unresolved, with the reason."""
    endpoint = endpoint or hub_endpoint()
    chosen = [lock.find(n) for n in names] if names else list(lock.entries)
    resolved, failed = [], []
    for entry in chosen:
        try:
            repo = RemoteRepo.resolve(entry, revision=revision, endpoint=endpoint, token=token)
            files = repo.locked_files(log=log)
            if entry.kind == "model":
                repo.check_config(entry)
        except UserError as err:
            failed.append((entry.name, str(err)))
            log(f"{entry.name}: not pinned: {err}")
            if isinstance(err, IntegrityError) and not entry.pinned:
                # The hub's content disagrees with the paper: record why it stays unpinned.
                lock = lock.with_entry(entry.unresolved(f"`lock --update` refused it: {err}"))
            continue
        lock = lock.with_entry(entry.resolved(repo.revision, files))
        resolved.append(entry.name)
        log(f"{entry.name}: pinned {entry.repo_id}@{repo.revision} ({len(files)} files)")
    return UpdateReport(lock=lock, resolved=tuple(resolved), failed=tuple(failed))
