"""The results table: one row per (run, checkpoint step, task, metric), with provenance.

Stored as a directory of JSONL parts, one per evaluation job, each written atomically
(a crashed job leaves no partial part). Concurrent writers never share a file, and a
file lock serialises writers of the same part. ``read_rows`` merges the parts; a part
that fails to parse is an error that names it.

Row fields (``Row``): identity -- ``run`` (hash of the training config), ``model``
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from optimal_sparsity.atomic import is_temporary, write_text
from optimal_sparsity.errors import IntegrityError

PARTS = "parts"


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
    with FileLock(str(path) + ".lock"):
        write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def read_rows(root: str | Path) -> list[Row]:
    parts = Path(root) / PARTS
    if not parts.is_dir():
        return []
    rows = []
    for path in sorted(parts.glob("*.jsonl")):
        if is_temporary(path):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                rows.append(Row.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as err:
                raise IntegrityError(f"results part {path} line {n} is corrupt: {err}") from err
    return rows


def to_csv(rows: list[Row], path: str | Path) -> None:
    import csv
    import io

    cols = [f.name for f in dataclasses.fields(Row) if f.name not in ("versions", "extra")]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r.to_dict())
    write_text(path, buf.getvalue())
