"""Reference values as data (``references/``) and the regression check against them.

``references/release/grid_math.csv`` (provenance in ``grid_math.json``): derived from
the released models' names and configs (parameter counts, TPP at 125B tokens).
``references/scaled/<scale>.json``: values
measured by this artifact's own reference run of the scaled-down study, each with a
tolerance from the standard error of the pinned mean, and the verdicts that run reached.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimal_sparsity.errors import IntegrityError
from optimal_sparsity.paths import REPO
from optimal_sparsity.results.points import final_points
from optimal_sparsity.results.table import Row


def references_dir() -> Path:
    """``references/`` in the checkout (``$OPTIMAL_SPARSITY_REFERENCES`` overrides it)."""
    return Path(os.environ.get("OPTIMAL_SPARSITY_REFERENCES", REPO / "references"))

# Tolerance = min(cap, max(floor, TOL_SES x SE of the pinned mean)), so a shift of 3 SE
# fails wherever 3 SE exceeds the floor. SE = seed sd / sqrt(#seeds); with one seed, the
# metric's seed sd pooled over the full-scale pin, else the evaluation's standard error.
# The floor covers float differences across CPUs and thread counts (same seeds, so a rerun
# differs by rounding, not by seed noise); the cap keeps a bimodal metric checkable.
TOL_SES = 2.0
TOL_FLOOR = {"loss": 5e-4, "acc": 1e-3}
TOL_CAP = {"loss": 0.25, "acc": 0.15}
TOLERANCE_BASIS = (f"min(cap {TOL_CAP}, max(floor {TOL_FLOOR}, {TOL_SES:g} x SE of the pinned "
                   "mean)); SE = seed sd / sqrt(#seeds), with one seed the metric's seed sd "
                   "pooled over the pin's own replicated points, else over the full-scale pin "
                   "of the same design, else the evaluation's standard error "
                   "(se null: no error estimate, the cap). "
                   "A shift of 3 SE fails the check wherever 3 SE exceeds the floor; the floor "
                   "covers float differences across CPUs and thread counts")


def scaled_path(scale: str) -> Path:
    return references_dir() / "scaled" / f"{scale}.json"


def load_scaled(scale: str, design: str | None = None) -> dict[str, Any] | None:
    """The pin of ``scale``; with ``design`` (``StudyDesign.fingerprint()``) only if it was
    measured on that design (a pin of an earlier design is no reference for this one)."""
    path = scaled_path(scale)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise IntegrityError(f"reference file {path} is corrupt: {err}") from err
    if design is not None and pinned_design(doc) != design:
        return None
    return doc


def pinned_design(doc: dict[str, Any]) -> str | None:
    """The fingerprint of the design a pin was measured on (None: a pin older than it)."""
    return doc.get("provenance", {}).get("design")


def _kind(metric: str) -> str:
    return "loss" if "loss" in metric else "acc"


def tolerance(metric: str, se: float) -> float:
    k = _kind(metric)
    se = se if math.isfinite(se) else TOL_CAP[k]
    return min(TOL_CAP[k], max(TOL_FLOOR[k], TOL_SES * se))


def pooled_seed_noise(reference: dict[str, Any] | None
                      ) -> dict[tuple[str, str], tuple[float, float]]:
    """Each metric's seed sd pooled over the reference's replicated points (sum of
    (n - 1) sd^2 over sum of (n - 1)), with its degrees of freedom."""
    num: dict[tuple[str, str], float] = {}
    den: dict[tuple[str, str], int] = {}
    for v in (reference or {}).get("values", []):
        if v["n_seeds"] >= 2:
            m = (v["task"], v["metric"])
            num[m] = num.get(m, 0.0) + (v["n_seeds"] - 1) * v["seed_std"] ** 2
            den[m] = den.get(m, 0) + v["n_seeds"] - 1
    return {m: (math.sqrt(num[m] / den[m]), float(den[m])) for m in num}


def pooled_seed_sd(reference: dict[str, Any] | None) -> dict[tuple[str, str], float]:
    return {m: sd for m, (sd, _) in pooled_seed_noise(reference).items()}


def noise_prior(scale: str | None, design: str | None = None
                ) -> dict[tuple[str, str], tuple[float, float]]:
    """The seed noise (sd, df) pinned at ``scale`` (measured on ``design``, if given), the
    prior of a design that does not replicate its seeds (``StudyDesign.noise_from``; none:
    no prior)."""
    return pooled_seed_noise(load_scaled(scale, design)) if scale else {}


def _entry(ident: dict[str, Any], value: float, sd: float, n: int, eval_se: float,
           fallback: dict[tuple[str, str], float]) -> dict[str, Any]:
    m = (ident["task"], ident["metric"])
    if n >= 2:
        se = sd / math.sqrt(n)
    elif m in fallback:  # one seed: its SE is the seed sd, not the evaluation's error
        se = fallback[m]
    else:
        se = eval_se
    out = {**ident, "value": value, "seed_std": sd, "n_seeds": n,
           "se": se if math.isfinite(se) else None,  # none: no error estimate, the cap
           "tolerance": tolerance(ident["metric"], se)}
    if math.isfinite(eval_se):
        out["eval_se"] = eval_se
    return out


def reference_values(rows: list[Row], fallback: dict[tuple[str, str], float] | None = None
                     ) -> list[dict[str, Any]]:
    """Per grid point and metric: the mean over seeds, its standard error and tolerance
    (``fallback``: seed sd per metric for values with neither replicates nor an
    evaluation error)."""
    out = []
    for p in final_points(rows):
        for (task, metric), vals in sorted(p.values.items()):
            ident = {"model": p.name, "d": p.d, "E": p.E, "k": p.k, "n_layers": p.n_layers,
                     "total_params": p.total_params, "active_params": p.active_params,
                     "tokens": p.tokens,
                     "tpp": round(p.tokens / p.total_params, 3) if p.total_params else None,
                     "task": task, "metric": metric}
            sd = float(np.std(vals, ddof=1)) if len(vals) >= 2 else 0.0
            out.append(_entry(ident, float(np.mean(vals)), sd, len(vals),
                              p.eval_se.get((task, metric), math.nan), fallback or {}))
    return out


# What names a pinned value (the size fields are absent from pins older than them).
IDENT_KEYS = ("model", "d", "E", "k", "n_layers", "total_params", "active_params", "tokens",
              "tpp", "task", "metric")


def _old_floor(metric: str) -> float:
    """The per-kind floor of the first pins' tolerances (4 x error, at least this)."""
    if metric.endswith("_loss") and metric != "task_loss":
        return 0.02
    return 0.05 if metric == "task_loss" else 0.03


def recompute_tolerances(doc: dict[str, Any], old_sigmas: float = 4.0,
                         fallback: dict[tuple[str, str], float] | None = None
                         ) -> dict[str, Any]:
    """A pinned reference with its tolerances on the basis above, from the seed sd and
    #seeds it holds. A one-seed value of an older pin carries its evaluation error only
    inside its tolerance (``old_sigmas`` x error, where that exceeded the old floor)."""
    values = []
    for v in doc["values"]:
        ident = {k: v[k] for k in IDENT_KEYS if k in v}
        eval_se = v.get("eval_se", math.nan)
        if "se" not in v and v["n_seeds"] < 2 and not math.isfinite(eval_se) and \
                v.get("tolerance", 0) > _old_floor(v["metric"]) + 1e-12:  # an old-basis pin
            eval_se = v["tolerance"] / old_sigmas
        values.append(_entry(ident, v["value"], v["seed_std"], v["n_seeds"], eval_se,
                             fallback or {}))
    return {**doc, "tolerance_basis": TOLERANCE_BASIS, "values": values}


@dataclass(frozen=True)
class Regression:
    model: str
    task: str
    metric: str
    value: float
    reference: float
    tolerance: float

    def __str__(self) -> str:
        return (f"{self.model} {self.task}/{self.metric} = {self.value:.4g}, reference "
                f"{self.reference:.4g} +- {self.tolerance:.3g}")


def check(rows: list[Row], reference: dict[str, Any],
          tasks: set[tuple[str, str]] | None = None) -> tuple[list[Regression], int]:
    """Compare measured grid-point means with the reference: (regressions, #compared)."""
    measured = {(p.name, t, m): p.mean(t, m) for p in final_points(rows) for (t, m) in p.values}
    bad, n = [], 0
    for ref in reference.get("values", []):
        key = (ref["model"], ref["task"], ref["metric"])
        if tasks is not None and (ref["task"], ref["metric"]) not in tasks:
            continue
        if key not in measured:
            continue
        n += 1
        v = measured[key]
        if not math.isfinite(v) or abs(v - ref["value"]) > ref["tolerance"]:
            bad.append(Regression(*key, v, ref["value"], ref["tolerance"]))
    return bad, n


def pin(scale: str, rows: list[Row], verdicts: dict[str, dict[str, Any]],
        provenance: dict[str, Any], figures: dict[str, Path] | None = None,
        seed_sd: dict[tuple[str, str], float] | None = None) -> Path:
    """Write ``references/scaled/<scale>.json`` (and, for the figures given, their PNGs);
    ``seed_sd``: the per-metric seed sd that one-seed values take as their SE (the
    full-scale pin's, when measured on the current full design)."""
    import shutil

    from optimal_sparsity.atomic import write_json

    seeds = sorted({r.seed for r in rows})
    # one-seed values take the seed sd pooled over this pin's own replicated points first
    own = pooled_seed_sd({"values": reference_values(rows)})
    doc = {
        "about": "Scaled-down reference values measured by this artifact's own reference run. "
                 "Each value is the mean over seeds of a grid point's final checkpoint.",
        "tolerance_basis": TOLERANCE_BASIS,
        "provenance": {**provenance, "scale": scale, "seeds": seeds},
        "verdicts": verdicts,
        "values": reference_values(rows, {**(seed_sd or {}), **own}),
    }
    path = scaled_path(scale)
    write_json(path, doc)
    for fig_id, png in (figures or {}).items():
        dst = references_dir() / "scaled" / "figures" / scale / f"{fig_id}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dst)
    return path
