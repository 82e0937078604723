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
from typing import Any

from optimal_sparsity.errors import UserError
from optimal_sparsity.figures.registry import FIGURES, get_figure
from optimal_sparsity.figures.render import FigureResult, render, skipped
from optimal_sparsity.figures.spec import FigureSpec
from optimal_sparsity.paths import REPO, ModeFiles
from optimal_sparsity.references import load_scaled
from optimal_sparsity.report.build import RunInfo, write_report
from optimal_sparsity.results.table import Row, read_rows
from optimal_sparsity.results.tasks import PROXY_TASKS
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
    jobs: int = 0  # local launcher: runs trained side by side (0: as the cores hold)
    sc_power: int = 7  # pull mode: 2^N self-consistency samples per problem (the paper's)
    sc_max_new_tokens: int = 1024  # pull mode: per self-consistency sample (the paper's)
    grpo_overrides: tuple[tuple[str, Any], ...] = ()  # pull mode: changes to the authors' GRPO


def _label(design: StudyDesign, mode: str) -> str:
    return (f"scaled-down retrain, {design.scale} scale ({len(design.points)} grid points, "
            f"{design.n_runs} runs, {design.corpus.train_tokens / 1e6:g}M tokens each)"
            if mode == "retrain" else "released checkpoints (pull mode)")


class StudyClock:
    """Overall progress of a retrain: trainings and evaluations done of those planned, and
    an ETA from what each has cost so far (training by tokens, evaluation per run)."""

    def __init__(self, to_train: list[PointRun], n_evals: int,
                 log: Callable[[str], None]) -> None:
        self.train_total = sum(_tokens(r) for r in to_train)
        self.n_train, self.n_evals, self.log = len(to_train), n_evals, log
        self.trained_runs = self.trained_tokens = self.evals = 0
        self.train_s = self.eval_s = 0.0
        self.t0 = time.perf_counter()

    def trained(self, run: PointRun, seconds: float) -> None:
        self.trained_runs += 1
        self.trained_tokens += _tokens(run)
        self.train_s += seconds
        self.log(self.line())

    def evaluated(self, seconds: float) -> None:
        self.evals += 1
        self.eval_s += seconds
        self.log(self.line())

    def eta_s(self) -> float:
        """Seconds left; NaN until each kind of work still to do has been timed once."""
        left = 0.0
        if self.trained_tokens < self.train_total:
            if not self.trained_tokens:
                return float("nan")
            left += (self.train_total - self.trained_tokens) * self.train_s / self.trained_tokens
        if self.evals < self.n_evals:
            if not self.evals:
                return float("nan")
            left += (self.n_evals - self.evals) * self.eval_s / self.evals
        return left

    def line(self) -> str:
        from optimal_sparsity.progress import duration

        eta = self.eta_s()
        return (f"overall: {self.trained_runs}/{self.n_train} trainings, {self.evals}/"
                f"{self.n_evals} evaluations, elapsed {duration(time.perf_counter() - self.t0)}"
                f", ETA {duration(eta) if eta == eta else 'after the first of each'}")


def _tokens(run: PointRun) -> int:
    c = run.config
    return c.total_steps(1) * c.micro_batch * c.grad_accum * c.seq_len


def plan_clock(design: StudyDesign, ids: list[str], log: Callable[[str], None]) -> StudyClock:
    """What ``run_figures`` will train (once per run) and evaluate (per run and figure)."""
    specs = [s for s in map(get_figure, ids) if "code" not in s.tiers]
    return StudyClock([r for r in all_runs(design, ids) if not r.finished],
                      sum(len(_runs_for(design, s)) for s in specs), log)


def all_runs(design: StudyDesign, ids: list[str]) -> list[PointRun]:
    """Every run the figures ``ids`` train, once each (the code figure trains none)."""
    specs = [s for s in map(get_figure, ids) if "code" not in s.tiers]
    return list({r.run_dir: r for s in specs for r in _runs_for(design, s)}.values())


def _runs_for(design: StudyDesign, spec: FigureSpec) -> list[PointRun]:
    if spec.points == "all":
        return plan_runs(design, design.points)
    return plan_runs(design, design.posttrain_points, design.posttrain_seed_list)


def ensure_results(design: StudyDesign, spec: FigureSpec, table: Path, opts: Options,
                   log: Callable[[str], None], clock: StudyClock | None = None) -> list[Row]:
    """Train what is missing, evaluate what is missing, return this figure's rows."""
    from optimal_sparsity.study.evaluation import evaluate_run

    runs = _runs_for(design, spec)
    train_all(runs, opts.launcher, progress=opts.progress, log=log, slurm=opts.slurm,
              retries=opts.retries, trained=clock.trained if clock is not None else None,
              jobs=opts.jobs)
    for i, run in enumerate(runs, 1):
        log(f"[{i}/{len(runs)}] evaluate {run.point.label} seed {run.seed} ({spec.id})")
        t0 = time.perf_counter()
        evaluate_run(run, design, spec, table, log=lambda m: log(f"  {m}"))
        if clock is not None:
            clock.evaluated(time.perf_counter() - t0)
    return rows_of(runs, table)


def evaluate_for_figures(scale: str, fig_ids: tuple[str, ...], table: str, run: PointRun
                         ) -> None:
    """Everything ``fig_ids`` evaluate on ``run``, on one thread (a worker of the training
    pool: ``train_and_evaluate``); the per-figure pass after it finds every result cached.
    ``smoke`` and ``full`` evaluate on one thread wherever they run (``EvalPlan.threads``,
    every tier of ``evaluate_run``), so the numbers do not depend on ``--jobs`` or the cores
    (on two threads 9 of smoke's 272 values move in their 8th digit, measured)."""
    import torch

    from optimal_sparsity.study.evaluation import evaluate_run

    torch.set_num_threads(1)
    design = get_design(scale)
    for fid in fig_ids:
        spec = get_figure(fid)
        if "code" not in spec.tiers and any(r.run_id == run.run_id
                                            for r in _runs_for(design, spec)):
            evaluate_run(run, design, spec, Path(table))


def train_and_evaluate(design: StudyDesign, ids: list[str], opts: Options,
                       log: Callable[[str], None], clock: StudyClock | None = None) -> None:
    """Train every run of ``ids`` and evaluate each in the same pool as soon as it is
    trained (local launcher, runs side by side): evaluation fills the cores the last
    trainings leave idle and runs one per core. Other launchers train here and leave the
    evaluation to the per-figure pass."""
    from functools import partial

    runs = all_runs(design, ids)
    after = partial(evaluate_for_figures, design.scale, tuple(ids), str(mode_files(opts).table)
                    ) if opts.launcher == "local" else None
    train_all(runs, opts.launcher, progress=opts.progress, log=log, slurm=opts.slurm,
              retries=opts.retries, trained=clock.trained if clock is not None else None,
              jobs=opts.jobs, after=after)


def rows_of(runs: list[PointRun], table: Path) -> list[Row]:
    """The rows of ``table`` that belong to ``runs`` (matched by run id, never by path)."""
    wanted = {r.run_id for r in runs}
    return [r for r in read_rows(table) if r.run in wanted]


def mode_files(opts: Options) -> ModeFiles:
    """Where one mode and scale writes its figures, results table and ``run.json``
    (``<results>/<scale>`` or ``/pull``)."""
    return ModeFiles.of(opts.results, opts.mode, opts.scale)


def print_submissions(opts: Options, log: Callable[[str], None] = print) -> int:
    """The Slurm batch script of every run of the design's grid (every point and seed),
    without submitting anything; returns how many."""
    if opts.mode != "retrain":
        raise UserError("--dry-run prints the retrain grid's submissions: use --mode retrain")
    runs = plan_runs(get_design(opts.scale))
    train_all(runs, opts.launcher, log=log, slurm=opts.slurm, dry_run=True)
    return len(runs)


def run_figure(fig_id: str, opts: Options, log: Callable[[str], None] = print,
               clock: StudyClock | None = None) -> FigureResult:
    spec = get_figure(fig_id)
    t0 = time.perf_counter()
    files = mode_files(opts)
    out_dir = files.dir
    if opts.mode == "pull":
        from optimal_sparsity.study.pull_mode import run_pull_figure

        res = run_pull_figure(spec, opts, out_dir, log)
    elif opts.mode == "retrain":
        design = get_design(opts.scale)
        if "code" in spec.tiers:
            res = skipped(spec, opts.mode, opts.scale, "the scaled-down study has no code "
                          "corpus; Fig 8 needs the released code models (pull mode)", out_dir)
        else:
            rows = ensure_results(design, spec, files.table, opts, log, clock)
            reference = design.pin() if opts.check else None
            if opts.check and reference is None and load_scaled(opts.scale) is not None:
                log(f"references/scaled/{opts.scale}.json was measured on an earlier design: "
                    f"not compared (pin this one: ./reproduce pin --scale {opts.scale})")
            res = render(spec, rows, out_dir, mode=opts.mode, scale=opts.scale,
                         tasks=PROXY_TASKS, label=_label(design, opts.mode),
                         reference=reference, decides=None if design.decides is None
                         else frozenset(design.decides), prior=design.noise_prior())
    else:
        raise UserError(f"unknown mode {opts.mode!r}: one of {', '.join(MODES)}")
    res.wall_s = time.perf_counter() - t0
    return res


def run_figures(fig_ids: list[str] | None, opts: Options, log: Callable[[str], None] = print
                ) -> tuple[list[FigureResult], Path]:
    ids = fig_ids or [f.id for f in FIGURES]
    t0 = time.perf_counter()
    clock = plan_clock(get_design(opts.scale), ids, log) if opts.mode == "retrain" else None
    if clock is not None:
        log(clock.line())
        train_and_evaluate(get_design(opts.scale), ids, opts, log, clock)
    results = [run_figure(f, opts, log, clock) for f in ids]
    command = "./reproduce " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "./reproduce"
    wall = time.perf_counter() - t0
    files = mode_files(opts)
    html, _ = write_report(opts.results, results, RunInfo(opts.mode, opts.scale, wall, command,
                                                          files.dir))
    from optimal_sparsity.atomic import write_json
    from optimal_sparsity.provenance import provenance

    run_file = files.run_json
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

