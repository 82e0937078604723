"""The README's claims table as the study stands now: each scale's pin of its current design
and each claim's pull-mode status, rendered by ``report.claims_table``."""

from __future__ import annotations

from optimal_sparsity.claims.registry import CLAIMS
from optimal_sparsity.report.claims_table import SCALES, render_table
from optimal_sparsity.study.design import get_design
from optimal_sparsity.study.pull_claims import pull_runs, pull_status


def claims_markdown() -> str:
    runs = pull_runs()
    return render_table({s: get_design(s).pin() for s in SCALES},
                        {c.id: pull_status(c.id, runs).text for c in CLAIMS})
