"""Train and evaluate a design's grid points: cached by config, resumable, lockable.

Each (grid point, seed) is one run directory ``<home>/runs/<run id>``, the run id
(``TrainConfig.run_id``) hashing the training config with the corpus identified by its
fingerprint (not its path); the results rows of the run's checkpoints carry the same id. A
finished run is skipped; an interrupted one resumes from its last checkpoint; a file
lock stops two sweeps from training the same run at once. Evaluation results are cached
by the evaluation code itself (one results part per checkpoint and tier).

Launchers: ``local`` (in this process), ``submitit-local`` and ``slurm`` (one job per
run through submitit; the grid goes to a cluster with ``--launcher slurm``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from optimal_sparsity.data.cache import ensure_corpus
from optimal_sparsity.errors import UserError
from optimal_sparsity.paths import home
from optimal_sparsity.study.design import GridPoint, StudyDesign
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
        for seed in seeds or design.seeds:
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
    return train_run(run, progress=False)


def train_all(runs: list[PointRun], launcher: str = "local", progress: bool | None = None,
              log: Callable[[str], None] = print, folder: Path | None = None,
              trained: Callable[[PointRun, float], None] | None = None) -> None:
    """Train every run that is not finished yet; ``trained(run, seconds)`` after each."""
    import time

    if launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher {launcher!r}: one of {', '.join(LAUNCHERS)}")
    todo = [r for r in runs if not r.finished]
    log(f"{len(runs) - len(todo)} of {len(runs)} runs already trained; training {len(todo)}")
    if not todo:
        return
    if launcher == "local":
        for i, r in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] train {r.point.label} seed {r.seed} -> {r.run_dir}")
            t0 = time.perf_counter()
            train_run(r, progress=progress)
            if trained is not None:
                trained(r, time.perf_counter() - t0)
        return
    import submitit

    folder = folder or home() / "submitit"
    cluster = "local" if launcher == "submitit-local" else "slurm"
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    ex.update_parameters(timeout_min=24 * 60, cpus_per_task=2)
    jobs = [ex.submit(_submitit_train, r) for r in todo]
    log(f"submitted {len(jobs)} jobs to {cluster} (logs in {folder})")
    t0 = time.perf_counter()
    for job, r in zip(jobs, todo, strict=True):
        job.result()
        log(f"trained {r.point.label} seed {r.seed}")
        if trained is not None:  # jobs run side by side: the time since the last one
            now = time.perf_counter()
            trained(r, now - t0)
            t0 = now
