"""config -> train -> checkpoint -> evaluate -> results table -> figure + verdicts -> report.

``run_figures`` is what ``./reproduce`` and the nox figure sessions call.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optimal_sparsity.claims.registry import PAPER_TASKS, PROXY_TASKS
from optimal_sparsity.errors import UserError
from optimal_sparsity.figures.registry import FIGURES, get_figure
from optimal_sparsity.figures.render import FigureResult, render, skipped
from optimal_sparsity.figures.spec import FigureSpec
from optimal_sparsity.paths import REPO
from optimal_sparsity.references import load_scaled
from optimal_sparsity.report.build import RunInfo, write_report
from optimal_sparsity.results.table import Row, read_rows
from optimal_sparsity.study.design import StudyDesign, get_design
from optimal_sparsity.study.slurm import SlurmSettings
from optimal_sparsity.study.sweep import PointRun, plan_runs, train_all

MODES = ("retrain", "pull")
RESULTS = REPO / "results"


@dataclass
class Options:
    mode: str = "retrain"
    scale: str = "smoke"
    launcher: str = "local"
    results: Path = RESULTS
    check: bool = True  # compare with the pinned references; regressions fail the run
    progress: bool | None = None
    lock: Path | None = None  # pull mode: checkpoints.lock (default: the checkout's)
    allow_unpinned: bool = False
    hub_cache: Path | None = None
    limit: int = 0  # pull mode: items per task (0: all)
    slurm: SlurmSettings | None = None  # --launcher slurm
    retries: int = 2  # resubmissions of a job that died (submitit launchers)


def _label(design: StudyDesign, mode: str) -> str:
    return (f"scaled-down retrain, {design.scale} scale ({len(design.points)} grid points x "
            f"{len(design.seeds)} seed(s), {design.corpus.train_tokens / 1e6:g}M tokens each)"
            if mode == "retrain" else "released checkpoints (pull mode)")


def _runs_for(design: StudyDesign, spec: FigureSpec) -> list[PointRun]:
    if spec.points == "all":
        return plan_runs(design, design.points)
    return plan_runs(design, design.posttrain_points, design.posttrain_seed_list)


def ensure_results(design: StudyDesign, spec: FigureSpec, table: Path, opts: Options,
                   log: Callable[[str], None]) -> list[Row]:
    """Train what is missing, evaluate what is missing, return this figure's rows."""
    from optimal_sparsity.study.evaluation import evaluate_run

    runs = _runs_for(design, spec)
    train_all(runs, opts.launcher, progress=opts.progress, log=log, slurm=opts.slurm,
              retries=opts.retries)
    for i, run in enumerate(runs, 1):
        log(f"[{i}/{len(runs)}] evaluate {run.point.label} seed {run.seed} ({spec.id})")
        evaluate_run(run, design, spec, table)
    wanted = {r.config.fingerprint() for r in runs}
    return [r for r in read_rows(table) if r.run in wanted]


def print_submissions(opts: Options, log: Callable[[str], None] = print) -> int:
    """The Slurm batch script of every run of the design's grid (every point and seed),
    without submitting anything; returns how many."""
    if opts.mode != "retrain":
        raise UserError("--dry-run prints the retrain grid's submissions: use --mode retrain")
    runs = plan_runs(get_design(opts.scale))
    train_all(runs, opts.launcher, log=log, slurm=opts.slurm, dry_run=True)
    return len(runs)


def run_figure(fig_id: str, opts: Options, log: Callable[[str], None] = print) -> FigureResult:
    spec = get_figure(fig_id)
    t0 = time.perf_counter()
    out_dir = opts.results / opts.scale
    if opts.mode == "pull":
        from optimal_sparsity.study.pull_mode import run_pull_figure

        res = run_pull_figure(spec, opts, opts.results / "pull", log)
    elif opts.mode == "retrain":
        design = get_design(opts.scale)
        if "code" in spec.tiers:
            res = skipped(spec, opts.mode, opts.scale, "the scaled-down study has no code "
                          "corpus; Fig 8 needs the released code models (pull mode)", out_dir)
        else:
            rows = ensure_results(design, spec, out_dir / "table", opts, log)
            reference = load_scaled(opts.scale) if opts.check else None
            res = render(spec, rows, out_dir, mode=opts.mode, scale=opts.scale,
                         tasks=PROXY_TASKS, label=_label(design, opts.mode),
                         reference=reference, decides=None if design.decides is None
                         else frozenset(design.decides))
    else:
        raise UserError(f"unknown mode {opts.mode!r}: one of {', '.join(MODES)}")
    res.wall_s = time.perf_counter() - t0
    return res


def run_figures(fig_ids: list[str] | None, opts: Options, log: Callable[[str], None] = print
                ) -> tuple[list[FigureResult], Path]:
    ids = fig_ids or [f.id for f in FIGURES]
    t0 = time.perf_counter()
    results = [run_figure(f, opts, log) for f in ids]
    command = "./reproduce " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "./reproduce"
    wall = time.perf_counter() - t0
    html, _ = write_report(opts.results, results, RunInfo(opts.mode, opts.scale, wall, command))
    from optimal_sparsity.atomic import write_json
    from optimal_sparsity.provenance import provenance

    run_file = opts.results / opts.scale / "run.json"
    write_json(run_file, {"figures": ids, "mode": opts.mode, "scale": opts.scale, "wall_s": wall,
                          "cold_run": _cold_run(run_file, ids, wall, command),
                          "command": command, **provenance()})
    return results, html


def _cold_run(run_file: Path, ids: list[str], wall: float, command: str) -> dict:
    """The slowest complete run recorded here: the one that trained and evaluated
    everything, whose wall time is what a fresh machine pays (a cached re-run is quick)."""
    import json

    this = {"wall_s": wall, "figures": ids, "command": command}
    try:
        last = json.loads(run_file.read_text())
        prev = last.get("cold_run") or {k: last.get(k) for k in ("wall_s", "figures", "command")}
    except (OSError, ValueError, AttributeError):
        prev = None
    if prev and (prev.get("wall_s") or 0) > wall and set(ids) <= set(prev.get("figures") or ()):
        return prev
    return this


TASKSETS = {"retrain": PROXY_TASKS, "pull": PAPER_TASKS}
