"""Reference values as data (``references/``) and the regression check against them.

``references/release/grid_math.csv`` (provenance in ``grid_math.json``): derived from
the released models' names and configs (parameter counts, TPP at 125B tokens).
``references/scaled/<scale>.json``: values
measured by this artifact's own reference run of the scaled-down study, each with a
tolerance from the seed spread, and the verdicts that run reached.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimal_sparsity.claims.data import final_points
from optimal_sparsity.errors import IntegrityError
from optimal_sparsity.paths import REPO
from optimal_sparsity.results.table import Row


def references_dir() -> Path:
    """``references/`` in the checkout (``$OPTIMAL_SPARSITY_REFERENCES`` overrides it)."""
    return Path(os.environ.get("OPTIMAL_SPARSITY_REFERENCES", REPO / "references"))

# Tolerance = max(TOL_SIGMAS x seed std, floor): the floor covers machines whose float
# rounding differs (other CPUs, thread counts) when the seed spread is tiny.
TOL_SIGMAS = 4.0
TOL_FLOOR = {"loss": 0.02, "task_loss": 0.05, "acc": 0.03}


def scaled_path(scale: str) -> Path:
    return references_dir() / "scaled" / f"{scale}.json"


def load_scaled(scale: str) -> dict[str, Any] | None:
    path = scaled_path(scale)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise IntegrityError(f"reference file {path} is corrupt: {err}") from err


def _floor(metric: str) -> float:
    if metric.endswith("_loss") and metric != "task_loss":
        return TOL_FLOOR["loss"]
    return TOL_FLOOR["task_loss"] if metric == "task_loss" else TOL_FLOOR["acc"]


def reference_values(rows: list[Row]) -> list[dict[str, Any]]:
    """Per grid point and metric: the mean over seeds and a tolerance from their spread."""
    out = []
    for p in final_points(rows):
        for (task, metric), vals in sorted(p.values.items()):
            sd = float(np.std(vals, ddof=1)) if len(vals) >= 2 else 0.0
            eval_se = p.eval_se.get((task, metric), 0.0)
            spread = sd if len(vals) >= 2 else eval_se
            out.append({"model": p.name, "d": p.d, "E": p.E, "k": p.k,
                        "n_layers": p.n_layers, "task": task, "metric": metric,
                        "value": float(np.mean(vals)), "seed_std": sd, "n_seeds": len(vals),
                        "tolerance": max(TOL_SIGMAS * spread, _floor(metric))})
    return out


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
        provenance: dict[str, Any], figures: dict[str, Path] | None = None) -> Path:
    """Write ``references/scaled/<scale>.json`` (and, for the figures given, their PNGs)."""
    import shutil

    from optimal_sparsity.atomic import write_json

    seeds = sorted({r.seed for r in rows})
    doc = {
        "about": "Scaled-down reference values measured by this artifact's own reference run. "
                 "Each value is the mean over seeds of a grid point's final checkpoint.",
        "tolerance_basis": f"max({TOL_SIGMAS:g} x seed standard deviation (or the evaluation's "
                           f"standard error with one seed), a floor per metric kind "
                           f"{TOL_FLOOR}) -- the floor covers float differences across CPUs "
                           "and thread counts",
        "provenance": {**provenance, "scale": scale, "seeds": seeds},
        "verdicts": verdicts,
        "values": reference_values(rows),
    }
    path = scaled_path(scale)
    write_json(path, doc)
    for fig_id, png in (figures or {}).items():
        dst = references_dir() / "scaled" / "figures" / f"{fig_id}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dst)
    return path
