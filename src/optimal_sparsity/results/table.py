"""The results table: one row per (run, checkpoint step, task, metric), with provenance.

Stored as a directory of JSONL parts, one per evaluation question (a checkpoint and a
tier or task), each written atomically (a crashed job leaves no partial part). Concurrent
writers never share a file, and a file lock serialises writers of the same part.

Every part ``NAME.jsonl`` has an integrity record ``NAME.jsonl.sha256`` (``sha256sum``
format, so ``sha256sum -c`` checks it too), written under the same lock right after the
part. A part whose bytes do not match its record (a changed digit, a cut at a line
boundary, a byte that is not UTF-8, a crash between the two writes) or that has no record
is treated as missing: ``read_part`` and ``read_rows`` warn in one line that names the
file and leave it out, and the evaluation that owns it recomputes it (parts without a
record, such as those of a table written before records existed, share one line).

A cached part is valid for one set of settings: every row carries the settings that
produced it in ``extra["settings"]``, and ``cached_part`` serves a part only when they
equal the settings asked for. A part name never includes the settings, so a rerun with
other settings replaces the part instead of adding a second answer to the same question.

Row fields (``Row``): identity -- ``run`` (the run identity: ``TrainConfig.run_id``, the
training config with its corpus named by fingerprint, the name of the run's directory in a
sweep; for a released checkpoint a hash of its name and config), ``model``
(grid name), ``seed``, ``step``, ``tokens``; grid point -- ``d``, ``E``, ``k``,
``n_layers``, ``total_params``, ``active_params``, ``tpp``; measurement -- ``task``,
``metric``, ``value``, ``n`` (items), ``stderr``; provenance -- ``config_hash``,
``corpus``, ``commit``, ``versions``, ``hardware``, ``time``, ``source`` (what
produced it: "retrain" or "pull").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from optimal_sparsity.atomic import is_temporary, sha256_bytes, write_bytes, write_text

PARTS = "parts"
RECORD_SUFFIX = ".sha256"  # the integrity record of part NAME is NAME + RECORD_SUFFIX


@dataclass(frozen=True)
class Row:
    run: str
    model: str
    step: int
    task: str
    metric: str
    value: float
    seed: int = 0
    tokens: int = 0
    d: int = 0
    E: int = 0
    k: int = 0
    n_layers: int = 0
    total_params: int = 0
    active_params: int = 0
    tpp: float = 0.0
    n: int = 0
    stderr: float | None = None
    config_hash: str = ""
    corpus: str = ""
    source: str = "retrain"
    commit: str = ""
    hardware: str = ""
    time: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def density(self) -> float:
        return self.k / self.E if self.E else float("nan")

    @property
    def sparsity(self) -> float:
        return 1 - self.density

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def part_name(*key: object) -> str:
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:24] + ".jsonl"


def write_part(root: str | Path, name: str, rows: Iterable[Row]) -> Path:
    """Write (or replace) one part of the table atomically."""
    root = Path(root)
    path = root / PARTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in rows:
        if not isinstance(r.value, int | float) or math.isnan(r.value):
            raise ValueError(
                f"row {r.model}/{r.task}/{r.metric}: value {r.value!r} is not a number")
        lines.append(json.dumps(r.to_dict(), sort_keys=True))
    data = ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
    with FileLock(str(path) + ".lock"):
        write_bytes(path, data)
        write_text(_record(path), f"{sha256_bytes(data)}  {path.name}\n")
    return path


def remove_part(root: str | Path, name: str) -> bool:
    """Remove part ``name`` and its record (under the part's lock); False if absent."""
    path = Path(root) / PARTS / name
    if not path.exists():
        return False
    with FileLock(str(path) + ".lock"):
        _record(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    return True


def _record(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def _verified_rows(path: Path) -> tuple[list[Row] | None, str]:
    """(rows, "") for a part that matches its integrity record, else (None, why)."""
    try:
        data = path.read_bytes()
        record = _record(path).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None, "has no integrity record" if path.is_file() else "vanished"
    except (OSError, UnicodeDecodeError) as err:
        return None, f"cannot be read ({err})"
    if not record or record[0] != sha256_bytes(data):
        return None, f"does not match its integrity record {_record(path).name}"
    try:
        rows = [Row.from_dict(json.loads(line))
                for line in data.decode("utf-8").splitlines() if line.strip()]
    except (ValueError, TypeError, AttributeError) as err:  # not UTF-8, not JSON, not a row
        return None, f"is corrupt ({err})"
    return rows, ""


def _read_verified(path: Path) -> tuple[list[Row] | None, str]:
    """(rows, "") for a valid part, else (None, why). A mismatch is read again under the
    part's lock, in case a writer was between its part and its record."""
    rows, why = _verified_rows(path)
    if rows is None and why != "vanished":
        try:
            with FileLock(str(path) + ".lock", timeout=30):
                rows, why = _verified_rows(path)
        except OSError:  # a read-only table: keep the first answer
            pass
    return rows, why


def _warn(what: str) -> None:
    print(f"warning: {what}: treated as missing (the evaluation that needs it recomputes it)",
          file=sys.stderr)


def read_part(root: str | Path, name: str) -> list[Row] | None:
    """The rows of one part; None if it is absent or damaged (damage is warned about)."""
    path = Path(root) / PARTS / name
    if not path.is_file():
        return None
    rows, why = _read_verified(path)
    if rows is None and why != "vanished":
        _warn(f"results part {path} {why}")
    return rows


def settings_key(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as they read back from a part's rows (JSON-normalised: tuples -> lists)."""
    return json.loads(json.dumps(dict(settings), sort_keys=True))


def cached_part(root: str | Path, name: str, settings: Mapping[str, Any]) -> list[Row] | None:
    """The rows of part ``name`` if it is valid and every row was made with ``settings``;
    None means: (re)compute it and replace the part."""
    rows = read_part(root, name)
    key = settings_key(settings)
    if not rows or any(r.extra.get("settings") != key for r in rows):
        return None
    return rows


def read_rows(root: str | Path) -> list[Row]:
    """Every row of every valid part (damaged parts are warned about and left out)."""
    parts = Path(root) / PARTS
    if not parts.is_dir():
        return []
    rows, unrecorded = [], []
    for path in sorted(parts.glob("*.jsonl")):
        if is_temporary(path):
            continue
        got, why = _read_verified(path)
        if got is not None:
            rows += got
        elif why == "has no integrity record":  # e.g. a table older than the records
            unrecorded.append(path)
        elif why != "vanished":
            _warn(f"results part {path} {why}")
    if unrecorded:
        more = f" and {len(unrecorded) - 1} more in {parts}" if len(unrecorded) > 1 else ""
        _warn(f"results part {unrecorded[0]}{more} has no integrity record")
    return rows

