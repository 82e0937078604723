"""Results-table rows -> per-grid-point values (mean over seeds, standard error)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from optimal_sparsity.claims.stats import binomial_se
from optimal_sparsity.results.table import Row

PointKey = tuple[int, int, int, int]  # d, E, k, n_layers


@dataclass
class Point:
    """One grid point (final checkpoints, over seeds) or one checkpoint (one seed)."""

    d: int
    E: int
    k: int
    n_layers: int
    total_params: int
    active_params: int
    tokens: int
    step: int = 0
    seeds: tuple[int, ...] = ()
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    eval_se: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def key(self) -> PointKey:
        return self.d, self.E, self.k, self.n_layers

    @property
    def family(self) -> tuple[int, int, int]:
        return self.d, self.k, self.n_layers

    @property
    def density(self) -> float:
        return self.k / self.E

    @property
    def sparsity(self) -> float:
        return 1 - self.density

    @property
    def tpp(self) -> float:
        return self.tokens / self.total_params

    @property
    def name(self) -> str:
        extra = f"-L{self.n_layers}" if self.n_layers != 4 else ""
        return f"d{self.d}-E{self.E}-k{self.k}{extra}"

    def has(self, task: str, metric: str) -> bool:
        return bool(self.values.get((task, metric)))

    def mean(self, task: str, metric: str) -> float:
        v = self.values.get((task, metric))
        return float(np.mean(v)) if v else math.nan

    def se(self, task: str, metric: str) -> float:
        v = self.values.get((task, metric)) or []
        if len(v) >= 2:
            return float(np.std(v, ddof=1) / math.sqrt(len(v)))
        return self.eval_se.get((task, metric), math.nan)


def _row_se(r: Row) -> float:
    if r.stderr is not None and math.isfinite(r.stderr):
        return float(r.stderr)
    if r.metric.startswith(("acc", "maj@", "cov@", "pass@", "step_acc")) and r.n:
        return binomial_se(r.value, r.n)
    return math.nan


def final_points(rows: list[Row], source: str | None = None) -> list[Point]:
    """Each grid point's final checkpoint, aggregated over seeds."""
    rows = [r for r in rows if source is None or r.source == source]
    last: dict[str, int] = {}
    for r in rows:
        last[r.run] = max(last.get(r.run, -1), r.step)
    points: dict[PointKey, Point] = {}
    for r in rows:
        if r.step != last[r.run]:
            continue
        key = (r.d, r.E, r.k, r.n_layers)
        p = points.setdefault(key, Point(r.d, r.E, r.k, r.n_layers, r.total_params,
                                         r.active_params, r.tokens, r.step))
        p.values.setdefault((r.task, r.metric), []).append(r.value)
        if r.seed not in p.seeds:
            p.seeds = (*p.seeds, r.seed)
        se = _row_se(r)
        if math.isfinite(se):
            p.eval_se[(r.task, r.metric)] = se
    return sorted(points.values(), key=lambda p: p.key)


def checkpoint_points(rows: list[Row], source: str | None = None) -> list[Point]:
    """Every evaluated checkpoint (intermediate ones included), one point per (run, step)."""
    out: dict[tuple[str, int], Point] = {}
    for r in rows:
        if source is not None and r.source != source:
            continue
        p = out.setdefault((r.run, r.step), Point(r.d, r.E, r.k, r.n_layers, r.total_params,
                                                  r.active_params, r.tokens, r.step, (r.seed,)))
        p.values.setdefault((r.task, r.metric), []).append(r.value)
        se = _row_se(r)
        if math.isfinite(se):
            p.eval_se[(r.task, r.metric)] = se
    return list(out.values())


def families(points: list[Point]) -> dict[tuple[int, int, int], list[Point]]:
    fam: dict[tuple[int, int, int], list[Point]] = defaultdict(list)
    for p in points:
        fam[p.family].append(p)
    return {k: sorted(v, key=lambda p: p.E) for k, v in sorted(fam.items())}


def having(points: list[Point], *metrics: tuple[str, str]) -> list[Point]:
    return [p for p in points if all(p.has(*m) for m in metrics)]
