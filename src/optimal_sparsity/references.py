"""Reference values as data (``references/``) and the regression check against them.

``references/release/grid.json``: derived from the released models' names and configs
(parameter counts, TPP at 125B tokens). ``references/scaled/<scale>.json``: values
measured by this artifact's own reference run of the scaled-down study, each with a
tolerance from the seed spread, and the verdicts that run reached.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimal_sparsity.claims.data import final_points
from optimal_sparsity.errors import IntegrityError
from optimal_sparsity.paths import REPO
from optimal_sparsity.results.table import Row

REFERENCES = REPO / "references"
# Tolerance = max(TOL_SIGMAS x seed std, floor): the floor covers machines whose float
# rounding differs (other CPUs, thread counts) when the seed spread is tiny.
TOL_SIGMAS = 4.0
TOL_FLOOR = {"loss": 0.02, "task_loss": 0.05, "acc": 0.03}


def scaled_path(scale: str) -> Path:
    return REFERENCES / "scaled" / f"{scale}.json"


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
