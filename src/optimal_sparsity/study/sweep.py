"""Train and evaluate a design's grid points: cached by config, resumable, lockable.

Each (grid point, seed) is one run directory ``<home>/runs/<run id>``, the run id
(``TrainConfig.run_id``) hashing the training config with the corpus identified by its
fingerprint (not its path); the results rows of the run's checkpoints carry the same id. A
finished run is skipped; an interrupted one resumes from its last checkpoint; a file
lock stops two sweeps from training the same run at once. Evaluation results are cached
by the evaluation code itself (one results part per checkpoint and tier).

Launchers: ``local`` (in this process), ``submitit-local`` and ``slurm`` (one job per
run through submitit; the grid goes to a cluster with ``--launcher slurm``, whose
parameters are ``study.slurm.SlurmSettings``). A job that dies is resubmitted and
resumes; docs/scale-out.md describes both and the paper-scale job.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from optimal_sparsity.data.cache import ensure_corpus
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import GridPoint
from optimal_sparsity.paths import home
from optimal_sparsity.study.design import StudyDesign
from optimal_sparsity.study.slurm import SlurmSettings, time_minutes
from optimal_sparsity.train.config import TrainConfig
from optimal_sparsity.train.state import list_checkpoints

LAUNCHERS = ("local", "submitit-local", "slurm")


@dataclass(frozen=True)
class PointRun:
    point: GridPoint
    seed: int
    config: TrainConfig
    run_dir: Path
    run_id: str  # TrainConfig.run_id: the run directory's name and its rows' ``run``

    @property
    def finished(self) -> bool:
        path = self.run_dir / "summary.json"
        if not path.is_file():
            return False
        try:
            s = json.loads(path.read_text())
        except json.JSONDecodeError:
            return False
        return s.get("status") == "finished" and s.get("step") == s.get("total_steps")

    def checkpoints(self, which: str = "final") -> list[tuple[int, Path]]:
        ckpts = list_checkpoints(self.run_dir / "checkpoints")
        return ckpts[-1:] if which == "final" else ckpts


def plan_runs(design: StudyDesign, points: tuple[GridPoint, ...] | None = None,
              seeds: tuple[int, ...] | None = None, root: Path | None = None) -> list[PointRun]:
    corpus_dir = ensure_corpus(design.corpus)
    fp = design.corpus.fingerprint()
    root = root or home() / "runs"
    runs = []
    for point in points or design.points:
        for seed in seeds or design.seeds_of(point):
            cfg = design.train_config(point, seed, str(corpus_dir))
            run_id = cfg.run_id(fp)
            runs.append(PointRun(point, seed, cfg, root / run_id, run_id))
    return runs


def train_run(run: PointRun, progress: bool | None = None) -> dict:
    """Train one run to completion (or resume it); returns its summary."""
    from optimal_sparsity.train.loop import Trainer

    run.run_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run.run_dir) + ".lock"):
        if run.finished:
            return json.loads((run.run_dir / "summary.json").read_text())
        result = Trainer(run.config, run.run_dir, progress=progress).run()
        if result.status != "finished":
            raise KeyboardInterrupt(f"training of {run.point.label} (seed {run.seed}) was "
                                    f"interrupted at step {result.step}; rerun to resume")
        return result.summary


def _submitit_train(run: PointRun) -> dict:
    """The job a submitit launcher runs: train (or resume) one run, never raise for an
    interruption (a signal checkpoints and returns; the launcher resubmits)."""
    try:
        return train_run(run, progress=False)
    except KeyboardInterrupt:
        return {"status": "interrupted"}


def job_name(run: PointRun) -> str:
    return f"{run.point.label}-seed{run.seed}"


def _submitit_command(folder: Path) -> str:
    """The command submitit's Slurm executor puts in its batch script."""
    return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                     shlex.quote(str(folder))])


def slurm_submission(run: PointRun, settings: SlurmSettings, folder: Path) -> str:
    """The sbatch script ``--launcher slurm`` submits for ``run`` (submitit's template
    with these settings)."""
    from submitit.slurm.slurm import _make_sbatch_string

    return _make_sbatch_string(command=_submitit_command(folder), folder=folder,
                               **settings.submitit_parameters(job_name(run)))


def _executor(launcher: str, folder: Path, settings: SlurmSettings):
    import submitit

    if launcher == "submitit-local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=time_minutes(settings.time))
        return ex
    try:
        return submitit.SlurmExecutor(folder=str(folder))
    except RuntimeError as err:  # no srun here
        raise UserError(f"--launcher slurm needs a Slurm cluster: {err} (see --dry-run)"
                        ) from None


def local_jobs(runs: list[PointRun], jobs: int = 0) -> int:
    """How many of ``runs`` train at once on this machine: ``jobs``, or (0) as many as the
    cores hold at the threads each run's config names (a config with threads = 0 takes
    every core, so its runs go one at a time)."""
    if jobs < 0:
        raise UserError(f"--jobs must be >= 0 (got {jobs})")
    if not runs:
        return 1
    if jobs:
        return min(jobs, len(runs))
    cores = os.cpu_count() or 1
    per_run = max(r.config.threads or cores for r in runs)
    return max(1, min(len(runs), cores // per_run))


def longest_first(runs: list[PointRun]) -> list[PointRun]:
    """``runs`` by expected training time, longest first (the order a pool of workers
    finishes soonest in: no long run starts last and trains alone). The time of a run
    grows with its tokens, its active parameters per token (k) and, less, its experts."""
    def cost(r: PointRun) -> tuple[int, int, int]:
        c = r.config
        return (c.total_steps() * c.tokens_per_step(), r.point.d * r.point.k, r.point.E)

    return sorted(runs, key=cost, reverse=True)


def _train_side_by_side(todo: list[PointRun], jobs: int, log: Callable[[str], None],
                        trained: Callable[[PointRun, float], None] | None,
                        after: Callable[[PointRun], object] | None = None,
                        done: list[PointRun] = ()) -> None:
    """Train ``todo`` in ``jobs`` worker processes, longest first; the first failure stops
    the rest. ``after(run)`` (a picklable function: evaluation) runs in the same pool once
    a run is trained (for ``done``: at once), queued behind the trainings not yet started,
    so it fills the cores the last trainings leave idle."""
    import multiprocessing
    import time
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from optimal_sparsity.progress import Progress

    log(f"training {len(todo)} runs, {jobs} at a time (one process each)")
    t0 = time.perf_counter()
    budget = {r.run_dir: r.config.total_steps() * r.config.tokens_per_step() for r in todo}
    total = sum(budget.values())
    seen = {r.run_dir: _tokens_done(r.run_dir) for r in todo}
    bar = Progress(total, "training", "tokens", initial=sum(seen.values()), log=log)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(train_run, r, False): r for r in longest_first(todo)}
        follow = {pool.submit(after, r): r for r in done} if after is not None else {}
        pending = set(futures) | set(follow)
        while pending:
            finished, pending = wait(pending, timeout=5.0, return_when=FIRST_EXCEPTION)
            for f in futures:  # tokens trained so far, from each run's own metrics
                r = futures[f]
                now_tokens = budget[r.run_dir] if f in finished else _tokens_done(r.run_dir)
                if now_tokens > seen[r.run_dir]:
                    bar.update(now_tokens - seen[r.run_dir])
                    seen[r.run_dir] = now_tokens
            for f in finished:
                f.result()  # re-raises the run's error here
                if f in follow:
                    r = follow.pop(f)
                    log(f"evaluated {r.point.label} seed {r.seed} (beside the training)")
                    continue
                r = futures[f]
                log(f"trained {r.point.label} seed {r.seed} -> {r.run_dir}")
                if after is not None:
                    g = pool.submit(after, r)
                    follow[g] = r
                    pending.add(g)
                if trained is not None:  # runs go side by side: the time since the last one
                    now = time.perf_counter()
                    trained(r, now - t0)
                    t0 = now
            futures = {f: r for f, r in futures.items() if f not in finished}
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)


def _tokens_done(run_dir: Path) -> int:
    """The tokens a run has trained, from the last line of its ``metrics.jsonl`` (0 before
    its first logged step)."""
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().splitlines()
        return int(json.loads(lines[-1]).get("tokens", 0)) if lines else 0
    except (OSError, ValueError, IndexError):
        return 0  # not started, or a line being written: the next poll reads it


def _job_outcome(job, local: bool) -> tuple[str, object]:
    """("ok", result) | ("died", message) | ("failed", message) for a finished job."""
    import submitit

    job.wait()
    if local and not job.paths.result_pickle.exists():
        return "died", f"job {job.job_id} ended without a result (state {job.state})"
    try:
        result = job.result()
    except submitit.core.utils.FailedJobError as err:  # (a subclass of the next one)
        return "failed", _last_error_line(str(err))
    except submitit.core.utils.UncompletedJobError as err:
        return "died", str(err).splitlines()[0]
    if isinstance(result, dict) and result.get("status") == "interrupted":
        return "died", f"job {job.job_id} was interrupted (checkpoint saved)"
    return "ok", result


def _last_error_line(trace: str) -> str:
    lines = [x.strip() for x in trace.splitlines() if x.strip() and not x.startswith("---")]
    body = [x for x in lines if not x.startswith(("You can check", "or at paths", "- /",
                                                  "Job (task="))]
    return body[-1].removeprefix("optimal_sparsity.errors.") if body else "unknown error"


def train_all(runs: list[PointRun], launcher: str = "local", progress: bool | None = None,
              log: Callable[[str], None] = print, folder: Path | None = None,
              slurm: SlurmSettings | None = None, retries: int = 2,
              dry_run: bool = False,
              trained: Callable[[PointRun, float], None] | None = None,
              jobs: int = 0, after: Callable[[PointRun], object] | None = None) -> None:
    """Train every run that is not finished yet; ``trained(run, seconds)`` after each.

    With a submitit launcher each run is one job; a job that dies without a result
    (killed, preempted, node failure, interrupted by a signal) is resubmitted up to
    ``retries`` times and resumes from its last checkpoint; a job whose code raised is
    not (it would fail again) and its error is one line naming the run and the log.
    ``dry_run`` (slurm) prints the batch script of every run instead of submitting.
    ``jobs`` (local): runs trained side by side, each in its own process with the threads
    its config names (0: as many as the cores hold, ``local_jobs``). ``after(run)`` (local,
    side by side only): run in the same pool once each run is trained, or at once for a
    run trained before; other launchers leave it to the caller.
    """
    import time

    if launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher {launcher!r}: one of {', '.join(LAUNCHERS)}")
    if retries < 0:
        raise UserError(f"--retries must be >= 0 (got {retries})")
    if dry_run and launcher != "slurm":
        raise UserError("--dry-run prints Slurm submissions: use it with --launcher slurm")
    slurm = slurm or SlurmSettings()
    folder = folder or home() / "submitit"
    if dry_run:
        for i, r in enumerate(runs, 1):
            state = "trained" if r.finished else "to train"
            log(f"# [{i}/{len(runs)}] {r.point.label} seed {r.seed} ({state}) -> {r.run_dir}")
            log(slurm_submission(r, slurm, folder))
        return
    todo = [r for r in runs if not r.finished]
    log(f"{len(runs) - len(todo)} of {len(runs)} runs already trained; training {len(todo)}")
    if launcher == "local" and after is not None and local_jobs(runs, jobs) > 1:
        _train_side_by_side(todo, local_jobs(runs, jobs), log, trained, after,
                            [r for r in runs if r.finished])
        return
    if not todo:
        return
    if launcher == "local" and local_jobs(todo, jobs) > 1:
        _train_side_by_side(todo, local_jobs(todo, jobs), log, trained)
        return
    if launcher == "local":
        for i, r in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] train {r.point.label} seed {r.seed} -> {r.run_dir}")
            t0 = time.perf_counter()
            train_run(r, progress=progress)
            if trained is not None:
                trained(r, time.perf_counter() - t0)
        return
    ex = _executor(launcher, folder, slurm)

    def submit(r: PointRun):
        if launcher == "slurm":
            ex.update_parameters(**slurm.submitit_parameters(job_name(r)))
        return ex.submit(_submitit_train, r)

    jobs = {job_name(r): (r, submit(r), 1) for r in todo}
    log(f"submitted {len(jobs)} jobs ({launcher}; logs in {folder})")
    pending = dict(jobs)
    t0 = time.perf_counter()
    while pending:
        name, (r, job, attempt) = next(iter(pending.items()))
        outcome, info = _job_outcome(job, local=launcher == "submitit-local")
        del pending[name]
        if outcome == "ok":
            log(f"trained {r.point.label} seed {r.seed} (job {job.job_id})")
            if trained is not None:  # jobs run side by side: the time since the last one
                now = time.perf_counter()
                trained(r, now - t0)
                t0 = now
        elif outcome == "died" and attempt <= retries:
            log(f"{r.point.label} seed {r.seed}: {info}; resubmitting "
                f"(attempt {attempt + 1} of {retries + 1})")
            pending[name] = (r, submit(r), attempt + 1)
        else:
            raise UserError(f"training {r.point.label} seed {r.seed} failed "
                            f"(job {job.job_id}, attempt {attempt} of {retries + 1}): {info}; "
                            f"log: {job.paths.stderr}")
