"""What a figure is: panels (axes, series, metric), the tiers it needs and the claims it
checks (read from the claims registry)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from optimal_sparsity.claims.registry import CLAIMS
from optimal_sparsity.results.tasks import Metric, TaskSet
from optimal_sparsity.tiers import wants_gpu

Kind = str  # "lines" | "sparsity_scatter" | "sc_curve" | "grpo" | "fewshot"


@dataclass(frozen=True)
class Panel:
    """``y`` names a metric by role ("reasoning_acc[0]", see TaskSet) or literally
    ("pretrain/train_loss")."""

    title: str
    y: str
    x: str = "total_params"
    kind: Kind = "lines"
    log_x: bool = True
    y_label: str = ""

    @property
    def unit_interval(self) -> bool:
        """Accuracies and error rates: the y axis always spans [0, 1]."""
        return self.y_label in ("accuracy", "error rate", "pass@1")

    def metric(self, tasks: TaskSet) -> Metric:
        if m := re.fullmatch(r"(\w+)\[(\d+)\]", self.y):
            return getattr(tasks, m.group(1))[int(m.group(2))]
        task, metric = self.y.split("/", 1)
        return task, metric


@dataclass(frozen=True)
class FigureSpec:
    id: str
    title: str
    paper: str  # what the paper's figure shows
    panels: tuple[Panel, ...]
    tiers: tuple[str, ...]  # evaluation tiers it needs (``tiers``)
    checkpoints: str = "final"  # or "all" (intermediate checkpoints, Fig 4)
    points: str = "all"  # or "posttrain" (the family that gets TTC / GRPO / few-shot)

    @property
    def claims(self) -> tuple[str, ...]:
        """The ids of the claims it checks: those whose ``Claim.figure`` is this figure, in
        the registry's order."""
        return tuple(c.id for c in CLAIMS if c.figure == self.id)

    @property
    def wants_gpu(self) -> bool:
        """A GPU is advised for it at the released checkpoints' size (pull mode)."""
        return wants_gpu(self.tiers)
