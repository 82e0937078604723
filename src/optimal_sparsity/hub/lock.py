"""``checkpoints.lock``: what ``./reproduce pull`` may download, pinned to the byte.

The lock is JSON. Each model entry carries its hub repo, its grid point, the parameter
counts the artifact expects (``accounting.count_params`` on the paper's architecture) and,
once resolved, the 40-hex revision and every file's size and sha256. An entry whose
revision is not known yet says so (``revision: null`` and ``unresolved_reason``);
``pull`` refuses it unless the user passes ``--allow-unpinned``.

This module is the lock as data: its schema, validation, reading and writing. The static
part (names, repos, grid points, expected counts, data sets) is generated from code
(``hub.skeleton``); ``hub.update`` resolves revisions and file hashes from a hub.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from optimal_sparsity.atomic import write_text
from optimal_sparsity.errors import IntegrityError, UserError
from optimal_sparsity.grid import GridPoint
from optimal_sparsity.paths import REPO

FORMAT = "optimal-sparsity-checkpoints-lock/1"
DEFAULT_LOCK = REPO / "checkpoints.lock"
LOCK_ENV = "OPTIMAL_SPARSITY_LOCK"
DEFAULT_HUB = "https://huggingface.co"

# Weights that load through pickle: never downloaded, never loaded.
REFUSED_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

CODE_MODELS_NOTE = (
    "The code-grid checkpoints (llm-jp/optimal-sparsity-code-*) have no public list. Only the "
    "names found in a public source are locked here, each with its source; add others when "
    "their names are published.")


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Expected:
    total_params: int
    active_params: int
    total_name: str  # the sizes written in the released name, e.g. "320M"
    active_name: str


@dataclass(frozen=True)
class Entry:
    """One lock entry: a model (``kind='model'``) or an evaluation data set."""

    kind: str  # "model" | "dataset"
    name: str
    repo_id: str
    revision: str | None
    unresolved_reason: str | None
    files: tuple[LockedFile, ...] | None
    source: str
    family: str | None = None  # models: "math" | "code" | anything a test lock uses
    grid: GridPoint | None = None
    expected: Expected | None = None
    task: str | None = None  # data sets
    config: str | None = None
    split: str | None = None
    shots: int | None = None
    include: tuple[str, ...] | None = None

    @property
    def pinned(self) -> bool:
        return self.revision is not None

    @property
    def repo_type(self) -> str:
        return self.kind

    def static_dict(self) -> dict[str, Any]:
        """Everything but the resolved state (revision, reason, files)."""
        d = self.to_dict()
        for key in ("revision", "unresolved_reason", "files"):
            d.pop(key)
        return d

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "repo_id": self.repo_id}
        if self.kind == "model":
            assert self.grid is not None and self.expected is not None
            d["family"] = self.family
            d["grid"] = {"d": self.grid.d, "E": self.grid.E, "k": self.grid.k,
                         "layers": self.grid.n_layers}
            d["expected"] = {"total_params": self.expected.total_params,
                             "active_params": self.expected.active_params,
                             "total_name": self.expected.total_name,
                             "active_name": self.expected.active_name}
        else:
            d.update(task=self.task, config=self.config, split=self.split, shots=self.shots,
                     include=list(self.include) if self.include is not None else None)
        d["source"] = self.source
        d["revision"] = self.revision
        d["unresolved_reason"] = self.unresolved_reason
        d["files"] = [f.to_dict() for f in self.files] if self.files is not None else None
        return d

    def resolved(self, revision: str, files: Sequence[LockedFile]) -> Entry:
        return replace(self, revision=revision, unresolved_reason=None,
                       files=tuple(sorted(files, key=lambda f: f.path)))

    def unresolved(self, reason: str) -> Entry:
        return replace(self, revision=None, unresolved_reason=reason, files=None)


@dataclass(frozen=True)
class BuiltInput:
    """A task-loss input this artifact builds from a locked data set
    (``eval/taskloss_build.py``), and the sha256 of the built file once built."""

    file: str
    task: str  # lm-eval task
    dataset: str  # the data set entry it is built from
    shots: int
    seed: int
    source: str
    sha256: str | None = None
    size: int | None = None
    lm_eval: str | None = None  # harness version that built it
    unresolved_reason: str | None = None

    @property
    def built(self) -> bool:
        return self.sha256 is not None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "task": self.task, "dataset": self.dataset,
                "shots": self.shots, "seed": self.seed, "source": self.source,
                "sha256": self.sha256, "size": self.size, "lm_eval": self.lm_eval,
                "unresolved_reason": self.unresolved_reason}

    def static_dict(self) -> dict[str, Any]:
        d = self.to_dict()
        for key in ("sha256", "size", "lm_eval", "unresolved_reason"):
            d.pop(key)
        return d

    def with_hash(self, sha256: str, size: int, lm_eval: str) -> BuiltInput:
        return replace(self, sha256=sha256, size=size, lm_eval=lm_eval, unresolved_reason=None)


@dataclass(frozen=True)
class Lock:
    models: tuple[Entry, ...]
    datasets: tuple[Entry, ...]
    taskloss_inputs: tuple[BuiltInput, ...] = ()
    code_models_note: str = CODE_MODELS_NOTE
    hub: str = DEFAULT_HUB
    path: Path | None = field(default=None, compare=False)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self.models + self.datasets

    def find(self, name: str) -> Entry:
        """An entry by name (``d512-E8-k2``, ``code-d512-E8-k2``, ``gsm8k``) or repo id."""
        for e in self.entries:
            if name in (e.name, e.repo_id, e.repo_id.rsplit("/", 1)[-1]):
                return e
        known = ", ".join(e.name for e in self.entries[:4])
        raise UserError(f"{name!r} is not in {self.path or 'the lock'} (names look like {known}, "
                        "...; `./reproduce lock` lists them)")

    def with_entry(self, entry: Entry) -> Lock:
        def swap(entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
            return tuple(entry if e.name == entry.name else e for e in entries)

        return replace(self, models=swap(self.models), datasets=swap(self.datasets))

    def find_input(self, file: str) -> BuiltInput:
        for b in self.taskloss_inputs:
            if b.file == file:
                return b
        raise UserError(f"{file} is not a task-loss input of {self.path or 'the lock'}")

    def with_input(self, built: BuiltInput) -> Lock:
        return replace(self, taskloss_inputs=tuple(built if b.file == built.file else b
                                                   for b in self.taskloss_inputs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "about": ("Released checkpoints and evaluation data sets of arXiv 2508.18672. "
                      "Static fields come from `./reproduce lock --write-skeleton`; revisions "
                      "and file hashes from `./reproduce lock --update`. `./reproduce pull` "
                      "refuses an entry without a revision unless given --allow-unpinned."),
            "hub": self.hub,
            "refused_weight_suffixes": list(REFUSED_SUFFIXES),
            "code_models_note": self.code_models_note,
            "models": [e.to_dict() for e in self.models],
            "datasets": [e.to_dict() for e in self.datasets],
            "taskloss_inputs": [b.to_dict() for b in self.taskloss_inputs],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        validate(self.to_dict(), str(path))
        write_text(path, self.dumps())
        return path

    def static_view(self) -> dict[str, Any]:
        return {"code_models_note": self.code_models_note,
                "models": [e.static_dict() for e in self.models],
                "datasets": [e.static_dict() for e in self.datasets],
                "taskloss_inputs": [b.static_dict() for b in self.taskloss_inputs]}


# Load and validate ---------------------------------------------------------------------

def lock_path(path: str | Path | None = None) -> Path:
    import os

    if path is not None:
        return Path(path)
    return Path(os.environ.get(LOCK_ENV) or DEFAULT_LOCK)


def load_lock(path: str | Path | None = None) -> Lock:
    path = lock_path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no lock file at {path} (create it with `./reproduce lock "
                        "--write-skeleton`)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise IntegrityError(f"cannot read {path}: {err}") from err
    return from_dict(data, str(path), path=path)


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise IntegrityError(f"{where}: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def safe_relative_path(p: Any) -> bool:
    if not isinstance(p, str) or not p or "\\" in p or "\x00" in p:
        return False
    pp = PurePosixPath(p)
    return not pp.is_absolute() and all(part not in ("", ".", "..") for part in p.split("/"))


def is_refused(path: str) -> bool:
    return path.lower().endswith(REFUSED_SUFFIXES)


_MODEL_KEYS = {"name", "repo_id", "family", "grid", "expected", "source", "revision",
               "unresolved_reason", "files"}
_DATASET_KEYS = {"name", "repo_id", "task", "config", "split", "shots", "include", "source",
                 "revision", "unresolved_reason", "files"}
_TOP_KEYS = {"format", "about", "hub", "refused_weight_suffixes", "code_models_note", "models",
             "datasets", "taskloss_inputs"}
_INPUT_KEYS = {"file", "task", "dataset", "shots", "seed", "source", "sha256", "size",
               "lm_eval", "unresolved_reason"}


def _validate_entry(e: Any, where: str, kind: str) -> None:
    _need(isinstance(e, dict), where, "must be an object")
    keys = _MODEL_KEYS if kind == "model" else _DATASET_KEYS
    _need(set(e) == keys, where,
          f"fields must be exactly {sorted(keys)} (extra: {sorted(set(e) - keys)}, "
          f"missing: {sorted(keys - set(e))})")
    where = f"{where} ({e.get('name')})"
    _need(isinstance(e["name"], str) and bool(e["name"]), where, "name must be a string")
    _need(isinstance(e["repo_id"], str) and e["repo_id"].count("/") == 1, where,
          "repo_id must look like org/name")
    if kind == "model":
        g, x = e["grid"], e["expected"]
        _need(isinstance(g, dict) and set(g) == {"d", "E", "k", "layers"}
              and all(_is_int(v) and v >= 1 for v in g.values()), where,
              "grid must be {d, E, k, layers} positive integers")
        _need(g["k"] <= g["E"], where, "grid k exceeds E")
        _need(isinstance(x, dict) and set(x) == {"total_params", "active_params", "total_name",
                                                 "active_name"}
              and _is_int(x["total_params"]) and _is_int(x["active_params"])
              and 0 < x["active_params"] <= x["total_params"], where,
              "expected must hold total_params >= active_params > 0 and the names' sizes")
    rev, reason, files = e["revision"], e["unresolved_reason"], e["files"]
    if rev is None:
        _need(isinstance(reason, str) and bool(reason.strip()), where,
              "revision is null, so unresolved_reason must say why")
        _need(files is None, where, "files must be null while the revision is null")
        return
    _need(isinstance(rev, str) and bool(_HEX40.match(rev)), where,
          f"revision must be 40 lowercase hex digits (got {rev!r})")
    _need(reason is None, where, "a pinned entry has unresolved_reason null")
    _need(isinstance(files, list) and len(files) > 0, where,
          "a pinned entry lists its files")
    seen = set()
    for j, f in enumerate(files):
        fw = f"{where} files[{j}]"
        _need(isinstance(f, dict) and set(f) == {"path", "size", "sha256"}, fw,
              "must be {path, size, sha256}")
        _need(safe_relative_path(f["path"]), fw, f"unsafe path {f['path']!r}")
        _need(not is_refused(f["path"]), fw,
              f"{f['path']} is a pickled-weights file; they are never pulled")
        _need(_is_int(f["size"]) and f["size"] >= 0, fw, "size must be an integer >= 0")
        _need(isinstance(f["sha256"], str) and bool(_HEX64.match(f["sha256"])), fw,
              "sha256 must be 64 lowercase hex digits")
        _need(f["path"] not in seen, fw, f"duplicate path {f['path']}")
        seen.add(f["path"])
    if kind == "model":
        paths = [f["path"] for f in files]
        _need("config.json" in paths, where, "a pinned model lists config.json")
        _need(any(p.endswith(".safetensors") for p in paths), where,
              "a pinned model lists its .safetensors weights")


def validate(data: Any, where: str = "checkpoints.lock") -> None:
    _need(isinstance(data, dict), where, "must be a JSON object")
    _need(data.get("format") == FORMAT, where, f"format must be {FORMAT!r}")
    _need(set(data) == _TOP_KEYS, where, f"top-level keys must be {sorted(_TOP_KEYS)}")
    names: set[str] = set()
    for kind, key in (("model", "models"), ("dataset", "datasets")):
        _need(isinstance(data[key], list), where, f"{key} must be a list")
        for i, e in enumerate(data[key]):
            _validate_entry(e, f"{where}: {key}[{i}]", kind)
            _need(e["name"] not in names, where, f"duplicate name {e['name']}")
            names.add(e["name"])
    _need(isinstance(data["taskloss_inputs"], list), where, "taskloss_inputs must be a list")
    datasets = {e["name"] for e in data["datasets"]}
    for i, b in enumerate(data["taskloss_inputs"]):
        bw = f"{where}: taskloss_inputs[{i}]"
        _need(isinstance(b, dict) and set(b) == _INPUT_KEYS, bw,
              f"fields must be exactly {sorted(_INPUT_KEYS)}")
        _need(safe_relative_path(b["file"]) and "/" not in b["file"], bw, "file must be a name")
        _need(b["dataset"] in datasets, bw, f"data set {b['dataset']!r} is not in the lock")
        if b["sha256"] is None:
            _need(isinstance(b["unresolved_reason"], str) and bool(b["unresolved_reason"]), bw,
                  "sha256 is null, so unresolved_reason must say why")
            _need(b["size"] is None and b["lm_eval"] is None, bw,
                  "size and lm_eval are null until it is built")
        else:
            _need(isinstance(b["sha256"], str) and bool(_HEX64.match(b["sha256"])), bw,
                  "sha256 must be 64 lowercase hex digits")
            _need(_is_int(b["size"]) and b["size"] > 0, bw, "size must be a positive integer")
            _need(isinstance(b["lm_eval"], str) and b["unresolved_reason"] is None, bw,
                  "a built input names its lm_eval version and has unresolved_reason null")


def _entry_from_dict(e: dict[str, Any], kind: str) -> Entry:
    files = (tuple(LockedFile(f["path"], f["size"], f["sha256"]) for f in e["files"])
             if e["files"] is not None else None)
    common = dict(kind=kind, name=e["name"], repo_id=e["repo_id"], revision=e["revision"],
                  unresolved_reason=e["unresolved_reason"], files=files, source=e["source"])
    if kind == "model":
        g, x = e["grid"], e["expected"]
        return Entry(**common, family=e["family"],
                     grid=GridPoint(g["d"], g["E"], g["k"], g["layers"]),
                     expected=Expected(x["total_params"], x["active_params"], x["total_name"],
                                       x["active_name"]))
    inc = tuple(e["include"]) if e["include"] is not None else None
    return Entry(**common, task=e["task"], config=e["config"], split=e["split"],
                 shots=e["shots"], include=inc)


def from_dict(data: Any, where: str = "checkpoints.lock", path: Path | None = None) -> Lock:
    validate(data, where)
    return Lock(models=tuple(_entry_from_dict(e, "model") for e in data["models"]),
                datasets=tuple(_entry_from_dict(e, "dataset") for e in data["datasets"]),
                taskloss_inputs=tuple(BuiltInput(**b) for b in data["taskloss_inputs"]),
                code_models_note=data["code_models_note"], hub=data["hub"], path=path)


def select_files(paths: Iterable[str], include: Sequence[str] | None
                 ) -> tuple[list[str], list[str]]:
    """(kept, refused): repo paths to pull, and the pickled-weights files left out."""
    kept, refused = [], []
    for p in sorted(paths):
        if include is not None and not any(fnmatch.fnmatchcase(p, pat) for pat in include):
            continue
        (refused if is_refused(p) else kept).append(p)
    return kept, refused
