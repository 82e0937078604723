"""Statistics behind the verdicts: the verdict rule, the noise model and the bootstrap.

**The rule** (one place, ``decide``). A statistic comes with its 90% interval. A directional
claim is ``reproduced`` when the interval lies on the claimed side of zero and ``not
reproduced`` when it lies on the other side; a "no effect" claim is ``reproduced`` when the
interval lies inside its stated equivalence margin and ``not reproduced`` when it lies
outside it (a claimed size above a margin: the interval above it, or below it). Anything
else is ``inconclusive``, qualified by the side the point estimate is on. ``not testable``
is for a design or mode that cannot test the claim (with the reason).

**Noise.** Final grid points: a metric's seed variance is pooled over the points of an
analysis (sum of (n_i - 1) s_i^2 over sum of (n_i - 1)), so every point, even one with a
single seed, gets sd_pooled / sqrt(n_i), and the pooled variance's own uncertainty enters
every draw (sigma^2 x df / chi2_df: t quantiles, not normal ones). With no replicated point
the metric's seed variance pinned at full scale is used (a one-seed scale has the same
recipe), else the evaluation's standard error, and with neither the claim is not testable
(never a zero-width interval). Checkpoints of one run share its seed: analyses over checkpoints
resample whole runs (a wild cluster bootstrap of the fit's residuals).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CI = 0.90
B = 1000  # bootstrap draws (``draws_override`` lowers it for calibration)

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE = (
    "reproduced", "not reproduced", "inconclusive", "not testable")
STATUSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)
LEANS_FOR, LEANS_AGAINST = "leans toward", "leans against"  # the claim
# The rule in two sentences, for the README and the report.
RULE_TEXT = ("A claim is reproduced when the 90% interval of its statistic lies on the claimed "
             "side (or, for a no-effect claim, inside its stated margin), not reproduced when "
             "it lies on the other side (or outside the margin), and inconclusive otherwise, "
             "with the side the estimate leans to. It is not testable when the design or mode "
             "cannot test it (the reason is given); a claim of several parts is reproduced "
             "only if every part is, and not reproduced if any part is contradicted.")


@dataclass(frozen=True)
class Estimate:
    """A statistic at the point means and its bootstrap draws (intervals at any level)."""

    value: float
    draws: tuple[float, ...] = ()
    # an analytic interval (level -> (lo, hi)) where there are no draws
    bounds: Callable[[float], tuple[float, float]] | None = None

    def interval(self, level: float = CI) -> tuple[float, float]:
        if self.bounds is not None:
            return self.bounds(level)
        d = np.asarray(self.draws, float)
        d = d[np.isfinite(d)]
        if d.size < 10:
            return math.nan, math.nan
        a = (1 - level) / 2
        return float(np.quantile(d, a)), float(np.quantile(d, 1 - a))

    @property
    def lo(self) -> float:
        return self.interval()[0]

    @property
    def hi(self) -> float:
        return self.interval()[1]

    def fmt(self, f: str = ".3g", level: float = CI) -> str:
        lo, hi = self.interval(level)
        return f"{self.value:{f}} [{lo:{f}}, {hi:{f}}]"

    def __sub__(self, other: Estimate) -> Estimate:
        """Difference of two estimates drawn from the same resamples (paired draws)."""
        return Estimate(self.value - other.value,
                        tuple(np.asarray(self.draws) - np.asarray(other.draws)))


@dataclass(frozen=True)
class Rule:
    """What a claim says about its statistic. ``direction``: its sign (+1 or -1).
    ``equivalence``: a "no effect" claim, |statistic| < margin. ``exceeds``: a size >= 0
    claimed to exceed ``margin`` (contradicted when its interval lies below it)."""

    sign: int = 1
    margin: float | None = None
    kind: str = "direction"

    def describe(self) -> str:
        if self.kind == "equivalence":
            return f"|effect| < {self.margin:g}"
        if self.kind == "exceeds":
            return f"> {self.margin:g}"
        return "> 0" if self.sign > 0 else "< 0"


def equivalence(margin: float) -> Rule:
    return Rule(margin=margin, kind="equivalence")


def exceeds(margin: float) -> Rule:
    return Rule(margin=margin, kind="exceeds")


def decide(est: Estimate, rule: Rule, level: float = CI) -> tuple[str, str]:
    """(status, lean) of one statistic under the symmetric rule (module docstring)."""
    lo, hi = est.interval(level)
    v = est.value
    if not (math.isfinite(v) and math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE, ""
    mg = rule.margin
    if rule.kind == "equivalence":
        if -mg < lo and hi < mg:
            return REPRODUCED, ""
        if lo >= mg or hi <= -mg:
            return NOT_REPRODUCED, ""
        return INCONCLUSIVE, LEANS_FOR if abs(v) < mg else LEANS_AGAINST
    if rule.kind == "exceeds":
        if lo > mg:
            return REPRODUCED, ""
        if hi < mg:
            return NOT_REPRODUCED, ""
        return INCONCLUSIVE, LEANS_FOR if v >= mg else LEANS_AGAINST
    lo, hi, v = [*sorted((rule.sign * lo, rule.sign * hi)), rule.sign * v]
    if lo > 0:
        return REPRODUCED, ""
    if hi < 0:
        return NOT_REPRODUCED, ""
    return INCONCLUSIVE, LEANS_FOR if v > 0 else LEANS_AGAINST


# Noise model -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Noise:
    """Per-point standard errors of one metric and the degrees of freedom of its variance
    (``inf``: a known evaluation error, no variance uncertainty)."""

    se: np.ndarray
    df: float
    basis: str

    def draws(self, means: np.ndarray, rng: np.random.Generator, b: int) -> np.ndarray:
        """(b, n) resampled means; row-wise the variance scale is redrawn (t quantiles)."""
        z = rng.standard_normal((b, means.size))
        if math.isfinite(self.df):
            z *= np.sqrt(self.df / rng.chisquare(self.df, size=(b, 1)))
        return means + z * self.se


def pooled_noise(sds: Sequence[float], ns: Sequence[int], eval_ses: Sequence[float],
                 prior: tuple[float, float] | None = None) -> Noise | str:
    """The pooled variance model (module docstring), or the reason there is none.
    ``prior``: (seed sd, df) of the metric measured elsewhere (the full-scale pin), used
    when no point here is replicated."""
    sds, ns = np.asarray(sds, float), np.asarray(ns, float)
    rep = (ns >= 2) & np.isfinite(sds)
    df = float(np.sum(ns[rep] - 1))
    ev = np.asarray(eval_ses, float)
    if df > 0:
        s2 = float(np.sum((ns[rep] - 1) * sds[rep] ** 2) / df)
        se = np.sqrt(s2 / np.maximum(ns, 1))
        if np.all(np.isfinite(ev)):  # never below the evaluation's own error
            se = np.maximum(se, ev / np.sqrt(np.maximum(ns, 1)))
        if np.all(se > 0):
            return Noise(se, df, f"seed variance pooled over {int(rep.sum())} points "
                                 f"(df {df:g})")
    if prior is not None and prior[0] > 0 and prior[1] > 0:
        se = prior[0] / np.sqrt(np.maximum(ns, 1))
        if np.all(np.isfinite(ev)):
            se = np.maximum(se, ev / np.sqrt(np.maximum(ns, 1)))
        return Noise(se, prior[1], f"seed variance of the full-scale pin (df {prior[1]:g})")
    if ev.size and np.all(np.isfinite(ev)) and np.all(ev > 0):
        return Noise(ev, math.inf, "evaluation standard error (no replicated seeds)")
    return "no seed replicate and no evaluation error: no noise estimate"


# Bootstraps ------------------------------------------------------------------------------

def bootstrap(stat: Callable[..., np.ndarray], inputs: Sequence[tuple[np.ndarray, Noise]],
              seed: int = 0) -> Estimate:
    """``stat`` on the point means and on resamples of every input (independent noise).

    ``stat`` is vectorised: it takes one (draws, points) array per input and returns
    one value per draw.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.vstack([m, noise.draws(m, rng, B)]) for m, noise in inputs]
    out = np.asarray(stat(*arrays), dtype=float)
    return Estimate(float(out[0]), tuple(out[1:].tolist()))


# Webb's six-point weights: a wild bootstrap that stays usable with few clusters.
_WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])


def wild_cluster(X: np.ndarray, y: np.ndarray, clusters: Sequence[str], coef: int | np.ndarray,
                 seed: int = 0, df: float = math.inf) -> Estimate:
    """OLS coefficient ``coef`` (an index, or a contrast vector) with a wild cluster
    bootstrap: the fit's residuals of one cluster (a run) share one random weight. ``df``:
    the degrees of freedom the coefficient really has (the grid points that identify it,
    less one); the draws' spread is widened by t_df / z at the 90% level, since with few
    points the bootstrap's own variance estimate is noisy."""
    c = np.zeros(X.shape[1])
    if isinstance(coef, int | np.integer):
        c[coef] = 1.0
    else:
        c = np.asarray(coef, float)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    fit, resid = X @ beta, y - X @ beta
    ids = {k: i for i, k in enumerate(dict.fromkeys(clusters))}
    g = np.array([ids[k] for k in clusters])
    rng = np.random.default_rng(seed)
    w = rng.choice(_WEBB, size=(B, len(ids)))[:, g]
    Y = fit + w * resid
    bs = np.linalg.lstsq(X, Y.T, rcond=None)[0].T
    # small-sample correction of the residuals' shrinkage: G / (G - 1) x (n - 1) / (n - p)
    n, p, G = X.shape[0], X.shape[1], len(ids)
    scale = math.sqrt(G / max(G - 1, 1) * (n - 1) / max(n - p, 1))
    if math.isfinite(df) and df > 0:
        q = 1 - (1 - CI) / 2
        scale *= float(sps.t.ppf(q, df) / sps.norm.ppf(q))
    draws = beta @ c + (bs @ c - beta @ c) * scale
    return Estimate(float(beta @ c), tuple(draws.tolist()))


# Statistics ------------------------------------------------------------------------------

def slope_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of each row of y on the matching row of x (or on the one x): (draws,)."""
    x = np.broadcast_to(np.asarray(x, float), y.shape)
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = (xc * xc).sum(axis=1)
    return np.where(den > 0, (xc * yc).sum(axis=1) / np.where(den > 0, den, 1), np.nan)
