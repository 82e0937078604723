"""Accuracy with lm-evaluation-harness (pinned in pyproject.toml) on the proxy tasks.

``run_proxy_tasks`` writes the project's task definitions (``lm_eval_tasks``) for a corpus
into a temporary directory, runs lm-eval (``eval.lm_eval_run``) with any lm-eval model (this
project's ``MoELM`` adapter, lm-eval's ``hf`` backend, a stub) and maps the results to the
results-table metric names. ``step_acc`` (GSM proxies) is computed from the same greedy
generations (lm-eval's logged samples) against the corpus' gold steps.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimal_sparsity.data.arithmetic import step_accuracy
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.eval import lm_eval_run
from optimal_sparsity.eval.lm_eval_tasks import METRICS, PROXY_TASKS, write_task_configs
from optimal_sparsity.eval.taskloss_data import load_proxy_items

STEP_TASKS = ("gsm8k_proxy", "gsmplus_proxy")


@dataclass
class HarnessResult:
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    stderr: dict[str, dict[str, float]] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    responses: dict[str, list[str]] = field(default_factory=dict)  # raw generations, doc order
    lm_eval_results: dict[str, Any] = field(default_factory=dict)  # lm-eval's own "results"


def run_proxy_tasks(lm: Any, corpus: str | Path, tasks: tuple[str, ...] = PROXY_TASKS, *,
                    limit: int | None = None, gen_kwargs: dict[str, Any] | None = None,
                    quiet: bool = True) -> HarnessResult:
    """Evaluate ``lm`` (an ``lm_eval.api.model.LM``) on proxy ``tasks`` of ``corpus``."""
    with tempfile.TemporaryDirectory(prefix="lm-eval-tasks-") as tmp:
        write_task_configs(corpus, tmp, tasks)
        out = lm_eval_run.run(quiet=quiet, model=lm, tasks=list(tasks),
                              task_manager=lm_eval_run.task_manager(tmp), limit=limit,
                              gen_kwargs=gen_kwargs, log_samples=True, bootstrap_iters=1000)
    result = HarnessResult(lm_eval_results=out["results"])
    for task in tasks:
        res = out["results"][task]
        result.metrics[task] = {ours: lm_eval_run.metric(res, key)
                                for ours, key in METRICS[task].items()}
        result.stderr[task] = {ours: se for ours, key in METRICS[task].items()
                               if (se := lm_eval_run.stderr(res, key)) is not None}
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
    files = CorpusFiles(corpus)
    train = files.train_problems("gsm8k_proxy_train")
    cfg = yaml.safe_load(task_config("gsm8k_proxy", files.eval_items("gsm8k_proxy")))
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

    out: dict[int, tuple[float, float | None, int]] = {}
    key = "exact_match,strict-match"
    with tempfile.TemporaryDirectory(prefix="lm-eval-fewshot-") as tmp:
        Path(tmp, f"{FEWSHOT_TASK}.yaml").write_text(yaml.safe_dump(fewshot_task_config(corpus)))
        tm = lm_eval_run.task_manager(tmp)
        for n in shots:
            res = lm_eval_run.run(model=lm, tasks=[FEWSHOT_TASK], task_manager=tm,
                                  num_fewshot=n, limit=limit, gen_kwargs=gen_kwargs,
                                  log_samples=True, bootstrap_iters=1000)
            r = res["results"][FEWSHOT_TASK]
            out[n] = (lm_eval_run.metric(r, key), lm_eval_run.stderr(r, key),
                      len({s["doc_id"] for s in res["samples"][FEWSHOT_TASK]}))
    return out
