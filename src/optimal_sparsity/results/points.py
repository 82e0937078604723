"""Results-table rows (or a pinned reference) -> per-grid-point values: the mean over seeds,
the seed standard deviation and the number of seeds of every metric."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from optimal_sparsity.grid import GridPoint
from optimal_sparsity.results.table import Row

PointKey = tuple[int, int, int, int]  # d, E, k, n_layers


def binomial_se(p: float, n: int) -> float:
    """The standard error of an accuracy p measured on n items."""
    return math.sqrt(max(p * (1 - p), 1e-12) / n) if n else math.nan


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
    # (mean, seed sd, #seeds) per metric where only a summary is known (a pinned reference)
    summary: dict[tuple[str, str], tuple[float, float, int]] = field(default_factory=dict)
    run: str = ""  # the run a checkpoint belongs to (the resampling cluster)
    # (seed sd, df) per metric measured elsewhere: the noise when no point is replicated
    prior: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

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
    def grid(self) -> GridPoint:
        return GridPoint(self.d, self.E, self.k, self.n_layers)

    @property
    def name(self) -> str:
        return self.grid.short + self.grid.layers_suffix

    def has(self, task: str, metric: str) -> bool:
        return bool(self.values.get((task, metric)))

    def mean(self, task: str, metric: str) -> float:
        if (task, metric) in self.summary:
            return self.summary[task, metric][0]
        v = self.values.get((task, metric))
        return float(np.mean(v)) if v else math.nan

    def n(self, task: str, metric: str) -> int:
        if (task, metric) in self.summary:
            return self.summary[task, metric][2]
        return len(self.values.get((task, metric)) or [])

    def sd(self, task: str, metric: str) -> float:
        """Seed standard deviation (nan with fewer than two seeds)."""
        if (task, metric) in self.summary:
            _, sd, n = self.summary[task, metric]
            return sd if n >= 2 else math.nan
        v = self.values.get((task, metric)) or []
        return float(np.std(v, ddof=1)) if len(v) >= 2 else math.nan

    def se(self, task: str, metric: str) -> float:
        """This point's own standard error: seed sd / sqrt(#seeds), else the evaluation's."""
        n = self.n(task, metric)
        if n >= 2:
            return self.sd(task, metric) / math.sqrt(n)
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
    """Every evaluated checkpoint (intermediate ones included), one point per (run, step),
    in grid order (then step, then run): never in the order the rows were written, so a
    verdict does not depend on which evaluations ran first."""
    out: dict[tuple[str, int], Point] = {}
    for r in rows:
        if source is not None and r.source != source:
            continue
        p = out.setdefault((r.run, r.step), Point(r.d, r.E, r.k, r.n_layers, r.total_params,
                                                  r.active_params, r.tokens, r.step, (r.seed,),
                                                  run=r.run))
        p.values.setdefault((r.task, r.metric), []).append(r.value)
        se = _row_se(r)
        if math.isfinite(se):
            p.eval_se[(r.task, r.metric)] = se
    return sorted(out.values(), key=lambda p: (p.key, p.step, p.run))


def families(points: list[Point]) -> dict[tuple[int, int, int], list[Point]]:
    fam: dict[tuple[int, int, int], list[Point]] = defaultdict(list)
    for p in points:
        fam[p.family].append(p)
    return {k: sorted(v, key=lambda p: p.E) for k, v in sorted(fam.items())}


def having(points: list[Point], *metrics: tuple[str, str]) -> list[Point]:
    return [p for p in points if all(p.has(*m) for m in metrics)]


def reference_points(reference: dict, tokens: int, vocab_size: int) -> list[Point]:
    """The final grid points of a pinned reference (``references/scaled/<scale>.json``):
    each metric's mean, seed sd and #seeds as pinned; parameter counts and tokens as
    pinned, or (pins older than those fields) from the grid."""
    from optimal_sparsity.accounting import count_params
    from optimal_sparsity.grid import scaled_config

    points: dict[PointKey, Point] = {}
    for v in reference.get("values", []):
        key = (v["d"], v["E"], v["k"], v["n_layers"])
        if key not in points and "total_params" in v:  # a pin that records the sizes
            points[key] = Point(*key, v["total_params"], v["active_params"], v["tokens"],
                                run=v["model"])
        elif key not in points:
            pc = count_params(scaled_config(v["d"], v["E"], v["k"], n_layers=v["n_layers"],
                                            vocab_size=vocab_size))
            points[key] = Point(*key, pc.total, pc.active, tokens, run=v["model"])
        p = points[key]
        m = (v["task"], v["metric"])
        p.values[m] = [v["value"]]
        p.summary[m] = (float(v["value"]), float(v.get("seed_std", 0.0)), int(v["n_seeds"]))
        if "eval_se" in v:
            p.eval_se[m] = float(v["eval_se"])
    return sorted(points.values(), key=lambda p: p.key)
