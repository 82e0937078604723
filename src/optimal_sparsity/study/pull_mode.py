"""Pull mode: the released checkpoints (``checkpoints.lock``), pulled and verified,
evaluated with the paper's settings, then drawn and checked like the retrained grid.

What cannot run here is skipped with its reason, never faked: an unpinned lock (unless
``--allow-unpinned``), an unreachable hub, the paper's accuracy tasks without their data
or a GPU. A figure whose tiers generate text logs that a GPU is advised when none is here
(``FigureSpec.wants_gpu``). What the release cannot decide (no training losses, no
intermediate checkpoints) and the tiers pull mode does not run are declared per claim in
``study.pull_claims``; each such claim of a figure is logged as not testable, with the
reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from optimal_sparsity.errors import UserError
from optimal_sparsity.figures.render import FigureResult, render, skipped
from optimal_sparsity.figures.spec import FigureSpec
from optimal_sparsity.paths import ModeFiles
from optimal_sparsity.results.table import read_rows
from optimal_sparsity.results.tasks import PAPER_TASKS

POSTTRAIN_D = 1024  # the paper applies GRPO / self-consistency to the d=1024 family


def select_models(lock, spec: FigureSpec) -> list:
    if "code" in spec.tiers:
        return [m for m in lock.models if m.family == "code"]
    models = [m for m in lock.models if m.family != "code"]
    if spec.points == "posttrain":
        models = [m for m in models if m.grid is not None and m.grid.d == POSTTRAIN_D] or models
    return models


def prepare_paper_inputs(lock, opts, log: Callable[[str], None] = print
                         ) -> tuple[tuple[str, ...], Path]:
    """Build the lm-eval task-loss inputs this artifact does not carry from their data sets
    (pulled through the lock), once; returns those the evaluation may use and where."""
    from optimal_sparsity.eval.taskloss_build import build_file, default_out_dir, usable_inputs
    from optimal_sparsity.hub.pull import pull, pulled_dir
    from optimal_sparsity.hub.taskloss_inputs import BUILDS, carried_hashes

    out_dir = default_out_dir(opts.hub_cache)
    for b in BUILDS.values():
        if b.file in carried_hashes() or (out_dir / b.file).is_file():
            continue
        try:
            entry = lock.find(b.dataset)
            pull(entry, opts.hub_cache, allow_unpinned=opts.allow_unpinned, log=log)
            build_file(b, pulled_dir(b.dataset, lock, opts.hub_cache,
                                     allow_unpinned=opts.allow_unpinned), out_dir, log=log)
        except (UserError, OSError) as err:
            log(f"{b.file}: not built: {err}")
    return usable_inputs(lock, out_dir, allow_unhashed=opts.allow_unpinned, log=log), out_dir


def prepare_code_data(lock, opts, log: Callable[[str], None] = print) -> tuple[str, ...]:
    """``TASK=DIR`` of the EvalPlus data sets (HumanEval+, MBPP+) pulled through the lock."""
    from optimal_sparsity.eval.code_tasks import PLUS_TASKS
    from optimal_sparsity.hub.pull import pull, pulled_dir

    out = []
    for spec in PLUS_TASKS.values():
        try:
            pull(lock.find(spec.dataset), opts.hub_cache, allow_unpinned=opts.allow_unpinned,
                 log=log)
            data = pulled_dir(spec.dataset, lock, opts.hub_cache,
                              allow_unpinned=opts.allow_unpinned)
            out.append(f"{spec.task}={data}")
        except (UserError, OSError) as err:
            log(f"{spec.task}: skipped (its data set): {err}")
    return tuple(out)


GSM8K_TIERS = frozenset({"paper_sc", "paper_fewshot", "paper_grpo", "paper_grpo_math"})


def prepare_dataset(name: str, what: str, lock, opts, log: Callable[[str], None] = print
                    ) -> str | None:
    """The snapshot of data set ``name`` that ``checkpoints.lock`` pins, pulled; None,
    logged, when it cannot be pulled (the tiers reading it then say why they skip)."""
    from optimal_sparsity.hub.pull import pull, pulled_dir

    try:
        pull(lock.find(name), opts.hub_cache, allow_unpinned=opts.allow_unpinned, log=log)
        return str(pulled_dir(name, lock, opts.hub_cache, allow_unpinned=opts.allow_unpinned))
    except (UserError, OSError) as err:
        log(f"{what}: not pulled: {err}")
        return None


def prepare_gsm8k(lock, opts, log: Callable[[str], None] = print) -> str | None:
    """GSM8K (self-consistency and the few-shot sweep read its test split, GRPO its train
    split and its test split before and after)."""
    return prepare_dataset("gsm8k", "GSM8K (self-consistency, few-shot, GRPO)", lock, opts,
                           log)


def prepare_task_data(lock, opts, log: Callable[[str], None] = print) -> tuple[str, ...]:
    """``TASK=DIR`` of the data sets of the lm-eval paper tasks that run from a snapshot
    (GSM8K, TriviaQA, HellaSwag, GSM-Plus; the lock's entries of the same names), pulled;
    a task whose data set cannot be pulled reads the hub's (offline: skipped, with why)."""
    from optimal_sparsity.eval.paper_tasks import PAPER_TASKS
    from optimal_sparsity.hub.pull import pull, pulled_dir

    out = []
    for task in (t for t, spec in PAPER_TASKS.items() if not spec.runs_code):
        try:
            pull(lock.find(task), opts.hub_cache, allow_unpinned=opts.allow_unpinned, log=log)
            data = pulled_dir(task, lock, opts.hub_cache, allow_unpinned=opts.allow_unpinned)
            out.append(f"{task}={data}")
        except (UserError, OSError) as err:
            log(f"{task} (paper_accuracy): its data set not pulled, the hub's is read: {err}")
    return tuple(out)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_pull_figure(spec: FigureSpec, opts, out_dir: Path,
                    log: Callable[[str], None] = print) -> FigureResult:
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
    from optimal_sparsity.hub.lock import load_lock
    from optimal_sparsity.hub.pull import pull, pulled_model_dir
    from optimal_sparsity.study.pull_claims import pull_status
    from optimal_sparsity.tiers import pull_tiers

    def release_limit(cid: str) -> str | None:  # what the release can never decide
        status = pull_status(cid)
        return None if status.testable else status.text

    def skip(reason: str) -> FigureResult:
        return skipped(spec, "pull", opts.scale, reason, out_dir, release_limit)

    lock = load_lock(opts.lock)
    models = select_models(lock, spec)
    if not models:
        return skip(f"{lock.path} lists no models for {spec.id}: "
                    f"{lock.code_models_note if 'code' in spec.tiers else ''}")
    unpinned = [m.name for m in models if not m.pinned]
    if unpinned and not opts.allow_unpinned:
        return skip(f"checkpoints.lock pins no revision for {len(unpinned)} of {len(models)} "
                    "models (no machine of this project reaches the hub): run `./reproduce "
                    "lock --update` where it is reachable, or pass --allow-unpinned")
    if spec.wants_gpu and not _has_cuda():
        log(f"{spec.id}: GPU advised (none here): its tiers generate text, slow on a CPU at "
            "the released checkpoints' size")
    table = ModeFiles(out_dir).table
    inputs, inputs_dir = prepare_paper_inputs(lock, opts, log)
    tiers = pull_tiers(spec.tiers)
    settings = EvalSettings(tiers=tiers,
                            limit=opts.limit or None, batch_size=8, paper_inputs=inputs,
                            paper_inputs_dir=str(inputs_dir),
                            paper_code_data=prepare_code_data(lock, opts, log),
                            paper_task_data=prepare_task_data(lock, opts, log)
                            if "paper_accuracy" in tiers else (),
                            paper_gsm8k_data=prepare_gsm8k(lock, opts, log)
                            if GSM8K_TIERS & set(tiers) else None,
                            paper_math_data=prepare_dataset("math", "MATH (GRPO)", lock, opts,
                                                            log)
                            if "paper_grpo_math" in tiers else None,
                            paper_sc_power=opts.sc_power,
                            paper_sc_max_new_tokens=opts.sc_max_new_tokens,
                            paper_grpo_overrides=opts.grpo_overrides)
    runs = set()
    for i, m in enumerate(models, 1):
        log(f"[{i}/{len(models)}] pull {m.name} ({m.repo_id})")
        try:
            pull(m, opts.hub_cache, allow_unpinned=opts.allow_unpinned, log=log)
            directory = pulled_model_dir(m.name, lock, opts.hub_cache,
                                         allow_unpinned=opts.allow_unpinned)
        except (UserError, OSError) as err:
            return skip(f"could not pull {m.name}: {err}")
        rows = evaluate_checkpoint(directory, None, table, settings, log=log)
        runs |= {r.run for r in rows}
    for cid in spec.claims:
        status = pull_status(cid)
        if not status.testable:
            log(f"{cid}: {status.text}")
    rows = [r for r in read_rows(table) if r.run in runs]
    return render(spec, rows, out_dir, mode="pull", scale=opts.scale, tasks=PAPER_TASKS,
                  label=f"released checkpoints (pull mode, {len(models)} models from "
                        f"{Path(lock.path).name if lock.path else 'the lock'})")
