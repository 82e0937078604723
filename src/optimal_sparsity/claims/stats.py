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
B = 1000


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float

    def fmt(self, f: str = ".3g") -> str:
        return f"{self.value:{f}} [{self.lo:{f}}, {self.hi:{f}}]"


def bootstrap(stat: Callable[[np.ndarray], np.ndarray], means: Sequence[float],
              ses: Sequence[float], seed: int = 0) -> Estimate:
    """Statistic on the point means, and its ``CI`` interval under per-point noise.

    ``stat`` is vectorised: it maps a (draws, points) array to one value per draw.
    """
    m = np.asarray(means, dtype=float)
    s = np.nan_to_num(np.asarray(ses, dtype=float), nan=0.0)
    rng = np.random.default_rng(seed)
    v = np.vstack([m, m + rng.standard_normal((B, m.size)) * s])
    out = np.asarray(stat(v), dtype=float)
    value, draws = float(out[0]), out[1:]
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Estimate(value, math.nan, math.nan)
    a = (1 - CI) / 2
    return Estimate(value, float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a)))


def spearman(x: Sequence[float], y: np.ndarray) -> np.ndarray:
    """Spearman rho of x with each row of y (or with y itself): nan when x is constant."""
    x = np.asarray(x, float)
    y2 = np.atleast_2d(np.asarray(y, float))
    if x.size < 3 or np.ptp(x) == 0:
        out = np.full(y2.shape[0], math.nan)
    else:
        rx = sps.rankdata(x)
        ry = sps.rankdata(y2, axis=1)
        rx = rx - rx.mean()
        ry = ry - ry.mean(axis=1, keepdims=True)
        den = np.sqrt((rx ** 2).sum() * (ry ** 2).sum(axis=1))
        out = np.where(den > 0, (ry @ rx) / np.where(den > 0, den, 1), 0.0)
    return out if np.ndim(y) > 1 else out[0]


def lstsq_rows(X: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Least-squares coefficients for each row of V: (draws, n) -> (draws, p)."""
    return np.linalg.lstsq(X, V.T, rcond=None)[0].T


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
