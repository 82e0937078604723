"""A local stand-in for the Hugging Face hub, for tests and offline smoke runs.

It serves a directory of repositories over HTTP on 127.0.0.1 with the endpoints
``huggingface_hub`` 2.4 calls for ``model_info``/``dataset_info``/``hf_hub_download``::

    GET  /api/{models|datasets}/{org}/{name}[/revision/{rev}]     repo info (+ file metadata)
    HEAD /[datasets/]{org}/{name}/resolve/{rev}/{path}            X-Repo-Commit, ETag, sizes
    GET  /[datasets/]{org}/{name}/resolve/{rev}/{path}            the bytes (Range supported)

Layout of the served directory: ``models/{org}/{name}/...`` and ``datasets/{org}/{name}/...``.
A repository's commit sha is a sha1 over its files (so it changes with the content); it
answers to ``main``, to that sha, and to earlier commits made by ``replace_file``.
``*.safetensors``, ``*.parquet`` and other large formats are served as LFS files (ETag =
sha256, as the hub does); the rest as git blobs.

Faults for tests (``add_fault``), applied to successive GETs of one file: ``"ok"``,
``"truncate:N"`` (send N bytes of the body, then close the connection), ``"status:500"``,
``"flip"`` (same length, one byte changed: a substituted file). ``replace_file`` changes a
file's content with metadata to match: as a new commit (a re-upload) or under the same
commit (a tampered hub).

Use::

    with LocalHub(root) as endpoint, client_env(endpoint, home):
        pull(entry, cache_dir)

or from a shell: ``python -m optimal_sparsity.testing.local_hub ROOT [--port N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".parquet", ".arrow", ".h5",
                ".msgpack", ".gz", ".zip", ".model")
LFS_MIN_SIZE = 10 * 1024 * 1024
_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


@dataclass(frozen=True)
class _File:
    path: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_blob(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class _Repo:
    kind: str
    repo_id: str
    files: dict[str, _File]
    sha: str


def _tree_sha(files: dict[str, _File]) -> str:
    h = hashlib.sha1()
    for p in sorted(files):
        h.update(f"{p}\0{files[p].git_blob}\n".encode())
    return h.hexdigest()


@dataclass
class LocalHub:
    """The server; a context manager whose value is the endpoint URL."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    _faults: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _overrides: dict[tuple[str, str], bytes] = field(default_factory=dict)
    _history: dict[str, dict[str, _Repo]] = field(default_factory=dict)  # repo_id -> sha -> repo
    _frozen_sha: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # Repositories ------------------------------------------------------------------
    def repo(self, kind: str, repo_id: str) -> _Repo | None:
        base = Path(self.root) / f"{kind}s" / repo_id
        if not base.is_dir():
            return None
        files = {}
        for p in sorted(base.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(base).as_posix()
            data = self._overrides.get((repo_id, rel), p.read_bytes())
            files[rel] = _File(rel, data, rel.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE)
        return _Repo(kind, repo_id, files, self._frozen_sha.get(repo_id) or _tree_sha(files))

    def repo_at(self, kind: str, repo_id: str, rev: str) -> _Repo | None:
        """The repository at ``rev`` (``main``, its current sha, or an earlier commit)."""
        repo = self.repo(kind, repo_id)
        if repo is None or rev in ("main", repo.sha):
            return repo
        return self._history.get(repo_id, {}).get(rev)

    def commit(self, repo_id: str, kind: str = "model") -> str:
        repo = self.repo(kind, repo_id)
        if repo is None:
            raise KeyError(repo_id)
        return repo.sha

    # Faults --------------------------------------------------------------------------
    def add_fault(self, repo_id: str, path: str, *actions: str) -> None:
        """Apply ``actions`` to the next GETs of ``repo_id/path``, one per request."""
        for a in actions:
            if not re.fullmatch(r"ok|flip|truncate:\d+|status:\d{3}", a):
                raise ValueError(f"unknown fault action {a!r}")
        with self._lock:
            self._faults.setdefault((repo_id, path), []).extend(actions)

    def replace_file(self, repo_id: str, path: str, data: bytes, *, kind: str = "model",
                     new_commit: bool = True) -> None:
        """Serve ``data`` as the file's content, with metadata to match. ``new_commit``: as a
        re-upload, main moves to a new commit and the old one stays served; otherwise the
        bytes change under the same commit sha (a tampered hub or mirror)."""
        before = self.repo(kind, repo_id)
        if before is None:
            raise KeyError(repo_id)
        with self._lock:
            if new_commit:
                self._history.setdefault(repo_id, {})[before.sha] = before
                self._frozen_sha.pop(repo_id, None)
            else:
                self._frozen_sha.setdefault(repo_id, before.sha)
            self._overrides[(repo_id, path)] = data

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._overrides.clear()
            self._history.clear()
            self._frozen_sha.clear()

    def _next_action(self, repo_id: str, path: str) -> str:
        with self._lock:
            queue = self._faults.get((repo_id, path))
            return queue.pop(0) if queue else "ok"

    # Server --------------------------------------------------------------------------
    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="local-hub")
        self._thread.start()
        return self.endpoint

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "the hub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Handler(http.server.BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"
    server_version = "optimal-sparsity-local-hub"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send_json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send_json(status, {"error": message}, headers)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path, self.headers.get("Range")))
        if m := _API.match(path):
            return self._api(m.group(1)[:-1], m.group(2), m.group(3) or "main")
        if m := _RESOLVE.match(path):
            kind = "dataset" if m.group(1) else "model"
            return self._resolve(kind, m.group(2), m.group(3), m.group(4))
        return self._error(404, "NotFound", f"no route for {path}")

    def _repo_at(self, kind: str, repo_id: str, rev: str) -> _Repo | None:
        if self.hub.repo(kind, repo_id) is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        repo = self.hub.repo_at(kind, repo_id, rev)
        if repo is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return repo

    def _api(self, kind: str, repo_id: str, rev: str) -> None:
        repo = self._repo_at(kind, repo_id, rev)
        if repo is None:
            return
        siblings = []
        for f in repo.files.values():
            s: dict[str, object] = {"rfilename": f.path, "size": len(f.data),
                                    "blobId": f.git_blob}
            if f.lfs:
                s["lfs"] = {"size": len(f.data), "sha256": f.sha256, "pointerSize": 134}
            siblings.append(s)
        self._send_json(200, {"id": repo_id, "sha": repo.sha, "private": False,
                              "siblings": siblings})

    def _resolve(self, kind: str, repo_id: str, rev: str, rel: str) -> None:
        repo = self._repo_at(kind, repo_id, rev)
        if repo is None:
            return
        f = repo.files.get(rel)
        if f is None:
            return self._error(404, "EntryNotFound", f"{rel} does not exist", commit=repo.sha)
        data = f.data
        etag = f.sha256 if f.lfs else f.git_blob
        action = self._next_action_for(repo_id, rel) if self.command == "GET" else "ok"
        if action.startswith("status:"):
            return self._error(int(action.split(":")[1]), "ServerError", "injected failure")
        if action == "flip":
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        start = 0
        rng = self.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-", rng.strip())):
            start = int(m.group(1))
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", repo.sha)
        if f.lfs:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(f.data)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        if action.startswith("truncate:"):
            self.wfile.write(body[:int(action.split(":")[1])])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def _next_action_for(self, repo_id: str, rel: str) -> str:
        return self.hub._next_action(repo_id, rel)


@contextlib.contextmanager
def client_env(endpoint: str, home: str | Path) -> Iterator[None]:
    """Point ``huggingface_hub`` in this process at ``endpoint``: sets ``HF_ENDPOINT``, a
    private ``HF_HOME``, no telemetry, and lifts offline mode. huggingface_hub reads
    ``HF_HUB_OFFLINE`` once at import, so its module constant is switched too (restored on
    exit). Subprocesses inherit the environment and need nothing else."""
    from huggingface_hub import constants

    keys = ("HF_ENDPOINT", "HF_HOME", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS")
    saved_env = {k: os.environ.get(k) for k in keys}
    saved_offline = constants.HF_HUB_OFFLINE
    os.environ.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
                      HF_HUB_DISABLE_PROGRESS_BARS="1")
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ.pop("TRANSFORMERS_OFFLINE", None)
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_offline
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_model_repo(root: str | Path, repo_id: str, cfg, *, seed: int = 0,
                     tokenizer_dir: str | Path | None = None,
                     max_shard_size: int | str | None = None,
                     chat_template: str | None = None) -> Path:
    """A released-format repository (our exporter's MixtralForCausalLM directory) for ``cfg``
    under ``root/models/repo_id``; ``max_shard_size`` (bytes) makes a sharded one;
    ``chat_template`` goes into its tokenizer's config."""
    import tempfile

    from optimal_sparsity.atomic import OUTPUT_MARKER
    from optimal_sparsity.checkpoint import save_checkpoint
    from optimal_sparsity.grid import GridPoint
    from optimal_sparsity.hf_export import export_hf
    from optimal_sparsity.model import build_model

    out = Path(root) / "models" / repo_id
    with tempfile.TemporaryDirectory(prefix="tiny-ckpt-") as tmp:
        save_checkpoint(Path(tmp) / "ckpt", build_model(cfg, seed=seed), cfg,
                        tokenizer_dir=tokenizer_dir)
        sharding = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
        export_hf(Path(tmp) / "ckpt", out, **sharding)
    (out / OUTPUT_MARKER).unlink()  # a released repository carries only HF files
    if chat_template is not None:
        tc = out / "tokenizer_config.json"
        tc.write_text(json.dumps({**json.loads(tc.read_text()), "chat_template": chat_template},
                                 indent=2))
    (out / "README.md").write_text(f"# {repo_id}\n\nA tiny {GridPoint.of(cfg).short} test model.\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Serve a directory of repositories as a local "
                                 "stand-in of the Hugging Face hub (set HF_ENDPOINT to the URL).")
    ap.add_argument("root", type=Path, help="directory with models/ORG/NAME and datasets/...")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    hub = LocalHub(args.root, port=args.port)
    endpoint = hub.start()
    print(f"HF_ENDPOINT={endpoint}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
