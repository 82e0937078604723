"""Checks a downloaded directory must pass before anything loads it.

- every expected file: size and sha256 (errors name the file and both hashes);
- no pickled weights;
- models: config.json describes the lock's grid point (Mixtral, d, E, k, layers), the
  safetensors headers are well formed, shards agree with the index, and the parameter
  counts from the headers equal the lock's expected counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from optimal_sparsity.atomic import sha256_file
from optimal_sparsity.errors import IntegrityError
from optimal_sparsity.hub import safetensors_header
from optimal_sparsity.hub.lock import Entry, LockedFile, is_refused


@dataclass(frozen=True)
class ExpectedFile:
    """What a file must be: its size and either a sha256 or (hub metadata of a non-LFS file
    when unpinned) a git blob id."""

    path: str
    size: int
    sha256: str | None = None
    git_blob: str | None = None


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def verify_file(directory: Path, want: ExpectedFile, *, name: str, against: str) -> LockedFile:
    """Check one file; return what it is. ``against`` names the reference in messages."""
    p = directory / want.path
    if not p.is_file():
        raise IntegrityError(f"{name}: {want.path} is missing from {directory}")
    size = p.stat().st_size
    got = sha256_file(p)
    if want.sha256 is not None:
        if got != want.sha256 or size != want.size:
            raise IntegrityError(
                f"{name}: {want.path} failed verification: sha256 {got} ({size} bytes), "
                f"{against} says sha256 {want.sha256} ({want.size} bytes)")
    else:
        blob = git_blob_sha1(p)
        if blob != want.git_blob or size != want.size:
            raise IntegrityError(
                f"{name}: {want.path} failed verification: git blob {blob} ({size} bytes), "
                f"{against} says {want.git_blob} ({want.size} bytes)")
    return LockedFile(want.path, size, got)


def refuse_pickles(paths: Iterable[str], name: str) -> None:
    bad = sorted(p for p in paths if is_refused(p))
    if bad:
        raise IntegrityError(f"{name}: {', '.join(bad)} would load through pickle; only "
                             "safetensors weights are pulled")


_CONFIG_KEYS = (("hidden_size", "d"), ("num_local_experts", "E"), ("num_experts_per_tok", "k"),
                ("num_hidden_layers", "n_layers"))


def check_config(config: dict, entry: Entry) -> None:
    """config.json must describe the lock entry's grid point."""
    assert entry.grid is not None
    if config.get("model_type") != "mixtral" or "MixtralForCausalLM" not in (
            config.get("architectures") or []):
        raise IntegrityError(
            f"{entry.name}: config.json describes model_type={config.get('model_type')!r} "
            f"architectures={config.get('architectures')!r}, expected mixtral / "
            "MixtralForCausalLM")
    for key, field in _CONFIG_KEYS:
        want = getattr(entry.grid, field)
        if config.get(key) != want:
            raise IntegrityError(f"{entry.name}: config.json {key} is {config.get(key)!r}, the "
                                 f"lock's grid point has {field}={want}")


def read_config(directory: Path, name: str) -> dict:
    try:
        data = json.loads((directory / "config.json").read_text())
    except FileNotFoundError:
        raise IntegrityError(f"{name}: config.json is missing from {directory}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(f"{name}: config.json is not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise IntegrityError(f"{name}: config.json is not a JSON object")
    return data


def weight_files(directory: Path, paths: Sequence[str], name: str) -> list[Path]:
    """The safetensors shards, checked against model.safetensors.index.json if present."""
    shards = sorted(p for p in paths if p.endswith(".safetensors"))
    if not shards:
        raise IntegrityError(f"{name}: no .safetensors weights among {sorted(paths)}")
    index = directory / "model.safetensors.index.json"
    if "model.safetensors.index.json" in paths:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise IntegrityError(f"{name}: model.safetensors.index.json is unreadable ({err})"
                                 ) from None
        listed = sorted(set(weight_map.values()))
        if listed != shards:
            raise IntegrityError(f"{name}: the index names shards {listed}, the download has "
                                 f"{shards}")
        for shard in shards:
            keys = set(safetensors_header.read_header(directory / shard))
            want = {k for k, v in weight_map.items() if v == shard}
            if keys != want:
                raise IntegrityError(f"{name}: {shard} holds {len(keys)} tensors, the index "
                                     f"assigns it {len(want)}")
    return [directory / s for s in shards]


def check_model(directory: Path, entry: Entry, paths: Sequence[str]) -> None:
    """Config, safetensors structure and parameter counts against the lock entry."""
    assert entry.grid is not None and entry.expected is not None
    check_config(read_config(directory, entry.name), entry)
    counts = safetensors_header.count_params(weight_files(directory, paths, entry.name),
                                             entry.grid.E, entry.grid.k)
    exp = entry.expected
    if (counts.total, counts.active) != (exp.total_params, exp.active_params):
        raise IntegrityError(
            f"{entry.name}: the safetensors headers hold {counts.total:,} parameters "
            f"({counts.active:,} active), the lock expects {exp.total_params:,} "
            f"({exp.active_params:,} active)")
