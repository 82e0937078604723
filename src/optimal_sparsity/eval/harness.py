"""Accuracy with lm-evaluation-harness (pinned in pyproject.toml) on the proxy tasks.

``run_proxy_tasks`` writes the project's task definitions (``lm_eval_tasks``) for a corpus
into a temporary directory, runs ``lm_eval.simple_evaluate`` with any lm-eval model (this
project's ``MoELM`` adapter, lm-eval's ``hf`` backend, a stub) and maps the results to the
results-table metric names. ``step_acc`` (GSM proxies) is computed from the same greedy
generations (lm-eval's logged samples) against the corpus' gold steps.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimal_sparsity.data.arithmetic import step_accuracy
from optimal_sparsity.eval.lm_eval_tasks import METRICS, PROXY_TASKS, write_task_configs
from optimal_sparsity.eval.taskloss_data import load_proxy_items

SEED = 42  # the paper's lm-eval seed
STEP_TASKS = ("gsm8k_proxy", "gsmplus_proxy")


@dataclass
class HarnessResult:
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    stderr: dict[str, dict[str, float]] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    responses: dict[str, list[str]] = field(default_factory=dict)  # raw generations, doc order
    lm_eval_results: dict[str, Any] = field(default_factory=dict)  # lm-eval's own "results"


def _stderr_key(key: str) -> str:
    metric, filt = key.split(",", 1)
    return f"{metric}_stderr,{filt}"


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def run_proxy_tasks(lm: Any, corpus: str | Path, tasks: tuple[str, ...] = PROXY_TASKS, *,
                    limit: int | None = None, gen_kwargs: dict[str, Any] | None = None,
                    quiet: bool = True) -> HarnessResult:
    """Evaluate ``lm`` (an ``lm_eval.api.model.LM``) on proxy ``tasks`` of ``corpus``."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="lm-eval-tasks-") as tmp:
        write_task_configs(corpus, tmp, tasks)
        tm = TaskManager(include_path=tmp, include_defaults=False)
        log = logging.getLogger("lm_eval")
        level = log.level
        if quiet:
            log.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
                out = simple_evaluate(model=lm, tasks=list(tasks), task_manager=tm, limit=limit,
                                      gen_kwargs=gen_kwargs, log_samples=True,
                                      random_seed=SEED, numpy_random_seed=SEED,
                                      torch_random_seed=SEED, fewshot_random_seed=SEED,
                                      bootstrap_iters=1000)
        finally:
            log.setLevel(level)
    assert out is not None
    result = HarnessResult(lm_eval_results=out["results"])
    for task in tasks:
        res = out["results"][task]
        result.metrics[task] = {ours: float(res[key]) for ours, key in METRICS[task].items()}
        result.stderr[task] = {ours: se for ours, key in METRICS[task].items()
                               if (se := _number(res.get(_stderr_key(key)))) is not None}
        # one sample per (doc, filter): keep one per doc
        samples = sorted({s["doc_id"]: s for s in out["samples"][task]}.values(),
                         key=lambda s: s["doc_id"])
        result.n[task] = len(samples)
        if task in STEP_TASKS:
            gold = {it["id"]: it["steps"] for it in load_proxy_items(corpus, task)}
            result.responses[task] = [s["resps"][0][0] for s in samples]
            step = [step_accuracy(s["resps"][0][0], gold[s["doc"]["id"]])
                    for s in samples]
            result.metrics[task]["step_acc"] = sum(step) / len(step)
    return result


FEWSHOT_TASK = "gsm8k_proxy_fewshot"


def fewshot_task_config(corpus: str | Path) -> dict[str, Any]:
    """The GSM8K proxy with few-shot examples drawn, in order, from the corpus' training
    problems (``train_tasks/gsm8k_proxy_train.jsonl``), shown with their full chain of
    thought; the paper's Fig 11 varies the number of such shots."""
    import yaml

    from optimal_sparsity.eval.lm_eval_tasks import task_config

    corpus = Path(corpus).resolve()
    train = corpus / "train_tasks" / "gsm8k_proxy_train.jsonl"
    cfg = yaml.safe_load(task_config("gsm8k_proxy", corpus / "eval" / "gsm8k_proxy.jsonl"))
    cfg["task"] = FEWSHOT_TASK
    del cfg["num_fewshot"]  # lm-eval ignores a run's num_fewshot when the task fixes 0
    cfg["dataset_kwargs"]["data_files"]["train"] = str(train)
    cfg["fewshot_split"] = "train"
    cfg["fewshot_config"] = {"sampler": "first_n", "doc_to_target": "{{answer}}",
                             "target_delimiter": "", "fewshot_delimiter": "\n\n"}
    return cfg


def run_fewshot(lm: Any, corpus: str | Path, shots: tuple[int, ...], *,
                limit: int | None = None, gen_kwargs: dict[str, Any] | None = None
                ) -> dict[int, tuple[float, float | None, int]]:
    """Strict-match accuracy of the GSM8K proxy at each number of shots:
    {shots: (acc, stderr, n)}."""
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    out: dict[int, tuple[float, float | None, int]] = {}
    with tempfile.TemporaryDirectory(prefix="lm-eval-fewshot-") as tmp:
        Path(tmp, f"{FEWSHOT_TASK}.yaml").write_text(yaml.safe_dump(fewshot_task_config(corpus)))
        tm = TaskManager(include_path=tmp, include_defaults=False)
        log = logging.getLogger("lm_eval")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            for n in shots:
                with contextlib.redirect_stderr(io.StringIO()):
                    res = simple_evaluate(model=lm, tasks=[FEWSHOT_TASK], task_manager=tm,
                                          num_fewshot=n, limit=limit, gen_kwargs=gen_kwargs,
                                          log_samples=True, random_seed=SEED,
                                          numpy_random_seed=SEED, torch_random_seed=SEED,
                                          fewshot_random_seed=SEED, bootstrap_iters=1000)
                assert res is not None
                r = res["results"][FEWSHOT_TASK]
                key = "exact_match,strict-match"
                out[n] = (float(r[key]), _number(r.get(_stderr_key(key))),
                          len({s["doc_id"] for s in res["samples"][FEWSHOT_TASK]}))
        finally:
            log.setLevel(level)
    return out
