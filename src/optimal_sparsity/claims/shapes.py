"""The statistical shape tests the claim predicates are made of: a slope, its sign in every
family, a quadratic's extremum inside the range, an effect at equal x, each on the points'
means with a bootstrap over seed (and evaluation) noise."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from optimal_sparsity.claims import stats
from optimal_sparsity.claims.stats import (
    Estimate,
    Rule,
)
from optimal_sparsity.claims.verdicts import Part, Test, Verdict, claim_verdict, missing
from optimal_sparsity.results.points import Point, families, having
from optimal_sparsity.results.tasks import Metric

X = Callable[[Point], float] | tuple[str, str]  # an exact x, or a measured metric


def fmt_metric(m: Metric) -> str:
    return f"{m[0]} {m[1]}"


def metric_series(points: list[Point], m: Metric) -> tuple[np.ndarray, stats.Noise] | str:
    """A metric's point means and its noise model (or why it has none)."""
    noise = stats.pooled_noise([p.sd(*m) for p in points], [p.n(*m) for p in points],
                               [p.eval_se.get(m, math.nan) for p in points],
                               points[0].prior.get(m) if points else None)
    if isinstance(noise, str):
        return f"{fmt_metric(m)}: {noise}"
    return np.array([p.mean(*m) for p in points]), noise


def _inputs(points: list[Point], x: X, m: Metric) -> list[tuple[np.ndarray, stats.Noise]] | str:
    """[y] or [y, x] (x measured, with its own noise) for the bootstrap."""
    y = metric_series(points, m)
    if isinstance(y, str):
        return y
    if callable(x):
        return [y]
    xs = metric_series(points, x)
    return xs if isinstance(xs, str) else [y, xs]


def xvals(points: list[Point], x: X) -> np.ndarray:
    return np.array([x(p) if callable(x) else p.mean(*x) for p in points])


def need_metric(points: list[Point], x: X, m: Metric) -> list[Point]:
    return having(points, m) if callable(x) else having(points, m, x)


def seed_of(*names: Any) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(repr(names))) % (2 ** 31)


def resample_points(stat: Callable[[np.ndarray, np.ndarray], np.ndarray], points: list[Point],
              x: X, m: Metric) -> Estimate | str:
    """``stat(y_draws, x_draws)`` on the means and on the bootstrap draws."""
    inp = _inputs(points, x, m)
    if isinstance(inp, str):
        return inp
    xv = xvals(points, x)
    if len(inp) == 1:
        return stats.bootstrap(lambda y: stat(y, np.broadcast_to(xv, y.shape)), inp,
                               seed=seed_of(m))
    return stats.bootstrap(stat, inp, seed=seed_of(m, x))


# Statistics ------------------------------------------------------------------------------

def slope(points: list[Point], x: X, m: Metric, sign: int, what: str,
          within: bool = False) -> Part:
    """Slope of m on x across the points (``within``: the common within-family slope, so
    gaps between families cannot make it)."""
    pts = need_metric(points, x, m)
    if len(pts) < 3:
        return missing(f"{what}: needs >= 3 points with {fmt_metric(m)}; have {len(pts)}")
    ids = {f: i for i, f in enumerate(sorted({p.family for p in pts}))}
    fam = np.array([ids[p.family] if within else 0 for p in pts])

    def stat(y: np.ndarray, xx: np.ndarray) -> np.ndarray:
        xc, yc = xx.copy(), y.copy()
        for f in np.unique(fam):
            sel = fam == f
            xc[:, sel] -= xc[:, sel].mean(axis=1, keepdims=True)
            yc[:, sel] -= yc[:, sel].mean(axis=1, keepdims=True)
        den = (xc * xc).sum(axis=1)
        return np.where(den > 0, (xc * yc).sum(axis=1) / np.where(den > 0, den, 1), np.nan)

    if within and all(np.sum(fam == f) < 2 for f in np.unique(fam)):
        return missing(f"{what}: needs a family with >= 2 points")
    est = resample_points(stat, pts, x, m)
    if isinstance(est, str):
        return missing(est)
    return Test(f"{what}: {'within-family ' if within else ''}slope", est, Rule(sign))


def family_slopes(points: list[Point], x: X, m: Metric, sign: int, xname: str
                  ) -> list[tuple[str, Part]]:
    """One slope test per (d, k) family with >= 3 points (an "always" claim)."""
    fams = [f for f in families(having(points, m)).values() if len(f) >= 3]
    if not fams:
        return [(fmt_metric(m), missing(f"{fmt_metric(m)}: needs a family with >= 3 points"))]
    return [(f"{fmt_metric(m)}, {family_name(f)}",
             slope(f, x, m, sign, f"{fmt_metric(m)} vs {xname}")) for f in fams]


def family_name(pts: list[Point]) -> str:
    p = pts[0]
    return f"d{p.d}-k{p.k}" + (f"-L{p.n_layers}" if p.n_layers != 4 else "")


def _levels(points: list[Point], by: Callable[[Point], Any] | None) -> np.ndarray:
    if by is None:
        return np.ones((len(points), 1))
    keys = sorted({by(p) for p in points})
    return np.stack([np.array([by(p) == k for p in points], float) for k in keys], axis=1)


def batched_ols(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """(draws, n, p) designs and (draws, n) responses -> (draws, p) coefficients."""
    return np.einsum("bpn,bn->bp", np.linalg.pinv(X), Y)


def _family(p: Point) -> tuple[int, int, int]:
    return p.family


def quadratic_test(points: list[Point], x: X, m: Metric, kind: str, xname: str,
                   levels: Callable[[Point], Any] | None = _family,
                   x_fmt: Callable[[float], str] = lambda v: f"{v:.3g}"
                   ) -> list[tuple[str, Part]] | Verdict:
    """An interior extremum of m in x: with a quadratic fit (a level per family), the slope
    at the low end of the data and at the high end have the claimed signs (``max``: rising
    then falling; ``min``: falling then rising). Two parts, and the vertex with its interval
    in the details."""
    pts = need_metric(points, x, m)
    if len(pts) < 3:
        return missing(f"{fmt_metric(m)}: needs >= 3 points to fit a curve; have {len(pts)}")
    xr = xvals(pts, x)
    L = _levels(pts, levels)
    if len(pts) < L.shape[1] + 2:
        return missing(f"{fmt_metric(m)}: needs >= {L.shape[1] + 2} points to fit a curve")
    mu, sd = xr.mean(), xr.std() or 1.0
    zlo, zhi = (xr.min() - mu) / sd, (xr.max() - mu) / sd
    base = np.column_stack([((xr - mu) / sd) ** 2, (xr - mu) / sd, L])
    if np.linalg.matrix_rank(base) < base.shape[1]:
        return missing(f"{fmt_metric(m)}: the grid cannot separate a curve in {xname} "
                        "from the family levels")

    def coefs(y: np.ndarray, xx: np.ndarray) -> np.ndarray:
        z = (xx - mu) / sd
        Xb = np.concatenate([np.stack([z * z, z], axis=2),
                             np.broadcast_to(L, (*z.shape, L.shape[1]))], axis=2)
        return batched_ols(Xb, y)

    ests = {}
    for name, fn in (("low", lambda c: 2 * c[:, 0] * zlo + c[:, 1]),
                     ("high", lambda c: 2 * c[:, 0] * zhi + c[:, 1]),
                     ("vertex", lambda c: np.where(np.abs(c[:, 0]) > 1e-12, -c[:, 1] / (
                         2 * np.where(np.abs(c[:, 0]) > 1e-12, c[:, 0], 1)), np.nan) * sd + mu)):
        est = resample_points(lambda y, xx, fn=fn: fn(coefs(y, xx)), pts, x, m)
        if isinstance(est, str):
            return missing(est)
        ests[name] = est
    v = ests["vertex"]
    lo, hi = v.interval()
    where = (f"{'peak' if kind == 'max' else 'minimum'} at {x_fmt(v.value)} "
             f"[{x_fmt(lo)}, {x_fmt(hi)}], data {x_fmt(xr.min())}..{x_fmt(xr.max())}")
    det = {"vertex": v.value, "vertex_lo": lo, "vertex_hi": hi, "n": len(pts),
           "x_range": [float(xr.min()), float(xr.max())]}
    s = 1 if kind == "max" else -1
    return [(f"{fmt_metric(m)} rises" if kind == "max" else f"{fmt_metric(m)} falls",
             Test(f"slope vs {xname} at the low end ({where})", ests["low"], Rule(s), det)),
            (f"{fmt_metric(m)} falls" if kind == "max" else f"{fmt_metric(m)} rises",
             Test(f"slope vs {xname} at the high end", ests["high"], Rule(-s)))]


def extremum(points: list[Point], x: X, m: Metric, kind: str, xname: str, **kw) -> Verdict:
    q = quadratic_test(points, x, m, kind, xname, **kw)
    return q if isinstance(q, Verdict) else claim_verdict(q)


def effect_test(points: list[Point], x: X, effect: Callable[[Point], float], m: Metric,
                what: str, rule: Rule, levels: Callable[[Point], Any] | None = None) -> Part:
    """Coefficient of ``effect`` (in its own units) in m ~ quadratic(x) + effect + levels.
    Points that are checkpoints of runs (several per run) are resampled by run."""
    est = effect_estimate(points, x, effect, m, levels)
    if isinstance(est, str):
        return missing(f"{what}: {est}")
    return Test(what, est, rule)


def effect_estimate(points: list[Point], x: X, effect: Callable[[Point], float], m: Metric,
            levels: Callable[[Point], Any] | None = None) -> Estimate | str:
    pts = need_metric(points, x, m)
    if len(pts) < 5:
        return f"needs >= 5 points with {fmt_metric(m)}; have {len(pts)}"
    e = np.array([effect(p) for p in pts], float)
    if np.ptp(e) == 0:
        return "the effect does not vary over the grid"
    xr = xvals(pts, x)
    mu, sd = xr.mean(), xr.std() or 1.0
    L = _levels(pts, levels)

    def design(xx: np.ndarray) -> np.ndarray:
        z = (xx - mu) / sd
        return np.concatenate([np.stack([z * z, z, np.broadcast_to(e, z.shape)], axis=-1),
                               np.broadcast_to(L, (*z.shape, L.shape[1]))], axis=-1)

    X0 = design(xr)
    if np.linalg.matrix_rank(X0) < X0.shape[1]:
        return "the grid cannot separate the effect from the loss curve and levels"
    runs = [p.run for p in pts]
    if all(runs) and all(p.n(*m) == 1 for p in pts) and len(set(runs)) < len(runs):
        # checkpoints of runs: resample whole runs
        return stats.wild_cluster(X0, np.array([p.mean(*m) for p in pts]), runs, 2,
                                  seed=seed_of(m), df=len({p.key for p in pts}) - 1)
    return resample_points(lambda y, xx: batched_ols(design(xx), y)[:, 2], pts, x, m)


def log_params(p: Point) -> float:
    return math.log(p.total_params)


def log_tpp(p: Point) -> float:
    return math.log(p.tpp)


def log2_density(p: Point) -> float:
    return math.log2(p.density)


def fmt_exp(v: float) -> str:
    return f"{math.exp(v):.3g}" if math.isfinite(v) else "nan"
