"""The one way this project calls lm-evaluation-harness (pinned in pyproject.toml).

``run`` is ``lm_eval.simple_evaluate`` with the paper's seed for every random number generator
lm-eval seeds (``tiers.LM_EVAL_SEED``), lm-eval's logging quiet unless asked; ``metric`` and
``stderr`` read a task's result by lm-eval's ``metric,filter`` key. The proxy tasks and the
few-shot sweep (``eval.harness``) and the paper's stock tasks (``eval.paper_tasks``) all run
through it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optimal_sparsity.tiers import LM_EVAL_SEED

SEEDS = {"random_seed": LM_EVAL_SEED, "numpy_random_seed": LM_EVAL_SEED,
         "torch_random_seed": LM_EVAL_SEED, "fewshot_random_seed": LM_EVAL_SEED}


@contextlib.contextmanager
def quiet_lm_eval(quiet: bool = True) -> Iterator[None]:
    """lm-eval's log at ERROR and its stderr swallowed while inside (``quiet``)."""
    log = logging.getLogger("lm_eval")
    level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            yield
    finally:
        log.setLevel(level)


def task_manager(include_path: str | Path) -> Any:
    """lm-eval's task index of the YAMLs in ``include_path`` alone (no stock tasks)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(include_path), include_defaults=False)


def run(*, quiet: bool = True, **kwargs: Any) -> dict[str, Any]:
    """``simple_evaluate(**kwargs)`` with the paper's seeds (unless ``kwargs`` names them)."""
    from lm_eval import simple_evaluate

    with quiet_lm_eval(quiet):
        out = simple_evaluate(**{**SEEDS, **kwargs})
    assert out is not None
    return out


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def metric(result: dict[str, Any], key: str) -> float:
    """A task's value at lm-eval's ``metric,filter`` key (e.g. ``exact_match,strict-match``)."""
    return float(result[key])


def stderr(result: dict[str, Any], key: str) -> float | None:
    """The standard error lm-eval reports beside ``key``, if it reports a number."""
    name, filt = key.split(",", 1)
    return _number(result.get(f"{name}_stderr,{filt}"))
