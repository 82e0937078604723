"""Rows -> one figure's outputs: plot, data CSV, claim verdicts, regression check."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optimal_sparsity.atomic import write_json, write_text
from optimal_sparsity.claims.registry import CLAIMS_BY_ID, ClaimData
from optimal_sparsity.claims.stats import INCONCLUSIVE, NOT_TESTABLE
from optimal_sparsity.claims.verdicts import Verdict, undecided
from optimal_sparsity.figures.plot import draw
from optimal_sparsity.figures.spec import FigureSpec
from optimal_sparsity.paths import ModeFiles
from optimal_sparsity.references import Regression, check
from optimal_sparsity.results.table import Row
from optimal_sparsity.results.tasks import TaskSet


@dataclass
class FigureResult:
    figure: str
    mode: str
    scale: str
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)
    compared: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"figure": self.figure, "mode": self.mode, "scale": self.scale,
                "verdicts": {k: asdict(v) for k, v in self.verdicts.items()},
                "regressions": [asdict(r) for r in self.regressions],
                "compared_with_reference": self.compared, "outputs": self.outputs,
                "skipped": self.skipped, "wall_s": self.wall_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FigureResult:
        return cls(d["figure"], d["mode"], d["scale"],
                   {k: Verdict(**v) for k, v in d["verdicts"].items()},
                   [Regression(**r) for r in d["regressions"]], d["compared_with_reference"],
                   d["outputs"], d["skipped"], d["wall_s"])


def skipped(spec: FigureSpec, mode: str, scale: str, reason: str, out_dir: Path,
            claim_reason: Callable[[str], str | None] | None = None) -> FigureResult:
    """A figure that could not be evaluated here: each claim is not testable, with its
    own reason where ``claim_reason`` gives one (what the mode can never decide), else
    ``reason`` (why nothing ran here)."""
    own = claim_reason or (lambda _: None)
    res = FigureResult(spec.id, mode, scale, skipped=reason,
                       verdicts={c: Verdict(NOT_TESTABLE, own(c) or f"not testable here: {reason}")
                                 for c in spec.claims})
    write_json(ModeFiles(out_dir).figure(spec.id).result_json, res.to_dict())
    return res


def render(spec: FigureSpec, rows: list[Row], out_dir: Path, *, mode: str, scale: str,
           tasks: TaskSet, label: str, reference: dict[str, Any] | None = None,
           decides: frozenset[str] | None = None,
           prior: dict[tuple[str, str], tuple[float, float]] | None = None) -> FigureResult:
    """Draw the figure and check its claims. ``decides``: the claims this scale has the
    power to decide (None: all); any other verdict is reported as inconclusive, with the
    measured statistic and the verdict it would have had. ``prior``: the seed noise of
    metrics without replicated seeds here (``ClaimData``)."""
    data = ClaimData(rows, tasks, prior=prior or {})
    files = ModeFiles(out_dir).figure(spec.id)
    plotted = draw(spec, data, data.final, files.plot_stem, label)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["panel", "series", "model", "x", "y", "yerr"])
    for d in plotted:
        w.writerow([d.panel, d.series, d.model, f"{d.x:.6g}", f"{d.y:.6g}", f"{d.yerr:.4g}"])
    write_text(files.data_csv, buf.getvalue())
    verdicts = {}
    for cid in spec.claims:
        try:
            verdicts[cid] = CLAIMS_BY_ID[cid].check(data)
        except (ValueError, ArithmeticError) as err:
            verdicts[cid] = Verdict(INCONCLUSIVE, f"could not be computed: {err}")
        if decides is not None and cid not in decides:
            verdicts[cid] = undecided(verdicts[cid])
    regressions, compared = [], 0
    if reference is not None:
        metrics = {p.metric(tasks) for p in spec.panels if p.kind == "lines"}
        metrics |= {tasks.train_loss, tasks.val_loss}
        regressions, compared = check(rows, reference, metrics)
    res = FigureResult(spec.id, mode, scale, verdicts, regressions, compared, files.outputs())
    write_json(files.verdicts_json, {k: asdict(v) for k, v in verdicts.items()})
    write_json(files.result_json, res.to_dict())
    return res


def load_result(out_dir: Path, fig_id: str) -> FigureResult | None:
    path = ModeFiles(out_dir).figure(fig_id).result_json
    return FigureResult.from_dict(json.loads(path.read_text())) if path.is_file() else None
