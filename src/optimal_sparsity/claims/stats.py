"""Statistics behind the verdicts, with seed noise propagated by a parametric bootstrap.

Each grid point's value is the mean over its seeds; its standard error is the seed
standard deviation / sqrt(#seeds) when there are >= 2 seeds, else the evaluation's own
standard error (binomial for accuracies). A statistic's 90% interval comes from
recomputing it on ``B`` draws where every point is perturbed by its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CI = 0.90
B = 2000


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float

    def fmt(self, f: str = ".3g") -> str:
        return f"{self.value:{f}} [{self.lo:{f}}, {self.hi:{f}}]"


def bootstrap(stat: Callable[[np.ndarray], float], means: Sequence[float],
              ses: Sequence[float], seed: int = 0) -> Estimate:
    """Statistic on the point means, and its ``CI`` interval under per-point noise."""
    m = np.asarray(means, dtype=float)
    s = np.nan_to_num(np.asarray(ses, dtype=float), nan=0.0)
    value = float(stat(m))
    rng = np.random.default_rng(seed)
    draws = np.array([stat(m + rng.standard_normal(m.shape) * s) for _ in range(B)], float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Estimate(value, math.nan, math.nan)
    a = (1 - CI) / 2
    return Estimate(value, float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 3 or np.ptp(np.asarray(x, float)) == 0:
        return math.nan
    rho = sps.spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def quadratic_vertex(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit y = a x^2 + b x + c; return (a, vertex x). The vertex is nan for a ~ 0."""
    if len(x) < 3:
        return math.nan, math.nan
    a, b, _ = np.polyfit(x, y, 2)
    return float(a), float(-b / (2 * a)) if abs(a) > 1e-12 else math.nan


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n) if n else math.nan


def direction_verdict(est: Estimate, sign: int = 1) -> str:
    """'reproduced' if the interval is on the claimed side of 0, 'not reproduced' if
    the estimate is on the other side (or exactly 0), else 'inconclusive'."""
    v, lo, hi = sign * est.value, sign * est.lo, sign * est.hi
    lo, hi = min(lo, hi), max(lo, hi)
    if not math.isfinite(v):
        return "inconclusive"
    if math.isfinite(lo) and lo > 0:
        return "reproduced"
    if v <= 0:
        return "not reproduced"
    return "inconclusive"
