"""The paper's lm-eval tasks (``paper_accuracy``), run by one harness.

``run_task`` runs one task of ``eval.paper_tasks`` with the lm-eval this interpreter
imports: from its stock task (the ``hf`` or ``vllm`` backend, the paper's shots and seeds) or,
given the pulled snapshot of its data set, from a task file that ``include``\\ s the stock
YAML unchanged and sets only ``dataset_path`` (``taskloss_build.local_task_config``).

``python -m optimal_sparsity.eval.paper_accuracy_run MODEL_DIR --task TASK[=DIR] ...`` runs
in a harness environment (``eval.harness_env``) and prints one JSON line per task on stdout
(``task``, ``metrics``, ``stderr``, ``n``, ``lm_eval``: the version it imported, ``data``);
lm-eval's own output goes to stderr. ``run_in_authors_harness`` runs each task in the
environment of its ``PaperTask.harness`` (0.4.7, or 0.4.9 for the code tasks) that way.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimal_sparsity.errors import UserError


def run_task(task: str, model_dir: str | Path, backend: str, data_dir: str | None = None, *,
             limit: int | None = None, batch_size: int | str = 8,
             samples: bool = False) -> dict[str, Any]:
    """One paper task with this interpreter's lm-eval -> its JSON record (with ``samples``:
    also each item's prompt and its filtered responses, to compare two harnesses). A task
    whose data set (or metric) cannot be loaded here gives ``{"task", "skipped": why}``."""
    import yaml

    from optimal_sparsity.eval import lm_eval_run
    from optimal_sparsity.eval import paper_tasks as pt
    from optimal_sparsity.eval.taskloss_build import local_task_config
    from optimal_sparsity.hub.taskloss_inputs import harness_version

    kwargs = pt.evaluate_kwargs(task, model_dir, backend,  # type: ignore[arg-type]
                                limit=limit, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="lm-eval-paper-") as tmp:
        if data_dir:  # the stock task, named as it is, on the pulled snapshot
            config = local_task_config(pt.PAPER_TASKS[task].stock_yaml, data_dir, task)
            Path(tmp, f"{task}.yaml").write_text(yaml.safe_dump(config))
            kwargs["task_manager"] = lm_eval_run.task_manager(tmp)
        else:  # lm-eval's index of its stock tasks (what simple_evaluate makes), once
            kwargs["task_manager"] = _stock_tasks()
        if why := _cannot_load(task, kwargs["task_manager"]):
            return {"task": task, "skipped": why, "lm_eval": harness_version()}
        out = lm_eval_run.run(quiet=False, **{**kwargs, "log_samples": samples})
    r = pt.parse_results(task, out)
    rec = {"task": task, "metrics": r.metrics, "stderr": r.stderr, "n": r.n,
           "lm_eval": harness_version(), "data": str(data_dir) if data_dir else "hub"}
    if samples:
        rec["samples"] = [{"doc_id": x["doc_id"], "prompt": x["arguments"][0][0],
                           "filtered": x["filtered_resps"]}
                          for x in sorted(out["samples"][task],
                                          key=lambda x: (x["doc_id"], str(x.get("filter"))))]
    return rec


@functools.cache
def _stock_tasks() -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager()


def _cannot_load(task: str, manager: Any) -> str | None:
    """Why lm-eval cannot build ``task`` here (its data set from the hub or the snapshot, its
    metrics), or None. The task is built once more by ``simple_evaluate``, after the seeds
    are set, exactly as lm-eval builds it; the data set is cached by then."""
    import datasets
    from lm_eval.tasks import get_task_dict

    try:
        get_task_dict([task], manager)
    except (OSError, ValueError, KeyError, ImportError,
            datasets.exceptions.DatasetsError) as err:
        first = (str(err).splitlines() or [repr(err)])[0]
        return f"lm-eval cannot load it here: {type(err).__name__}: {first}"
    return None


def harness_args(model_dir: str | Path, backend: str, tasks: dict[str, str | None], *,
                 limit: int | None, batch_size: int | str, samples: bool = False) -> list[str]:
    """The arguments of this module's ``main`` for ``tasks`` ({task: snapshot or None})."""
    args = ["-m", __name__, str(model_dir), "--backend", backend,
            "--batch-size", str(batch_size)]
    if limit is not None:
        args += ["--limit", str(limit)]
    if samples:
        args.append("--samples")
    for task, data in tasks.items():
        args += ["--task", f"{task}={data}" if data else task]
    return args


def parse_records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def run_in_authors_harness(model_dir: str | Path, backend: str, tasks: dict[str, str | None],
                           *, limit: int | None = None, batch_size: int | str = 8,
                           root: Path | None = None, log: Callable[[str], None] = print
                           ) -> list[dict[str, Any]]:
    """Each task in the environment of its ``PaperTask.harness``, one process per
    environment; the records of all of them."""
    from optimal_sparsity.eval.harness_env import pinned_version, run_in_harness
    from optimal_sparsity.eval.paper_tasks import PAPER_TASKS

    groups: dict[Path, dict[str, str | None]] = {}
    for task, data in tasks.items():
        groups.setdefault(PAPER_TASKS[task].harness, {})[task] = data
    records = []
    for requirements, group in groups.items():
        version = pinned_version(requirements)
        log(f"paper_accuracy: {', '.join(group)} with lm-eval {version} (the authors' harness)")
        res = run_in_harness(harness_args(model_dir, backend, group, limit=limit,
                                          batch_size=batch_size),
                             requirements=requirements, root=root, log=log)
        if res.returncode != 0:
            tail = [ln for ln in res.stderr.strip().splitlines() if ln.strip()][-1:]
            raise UserError(f"paper_accuracy: lm-eval {version} failed on "
                            f"{', '.join(group)}: {tail[0] if tail else res.returncode}")
        got = parse_records(res.stdout)
        if sorted(r["task"] for r in got) != sorted(group):
            raise UserError(f"paper_accuracy: lm-eval {version} returned "
                            f"{[r['task'] for r in got]} for {list(group)}")
        records += got
    return records


def main(argv: list[str] | None = None) -> int:
    import argparse

    from optimal_sparsity.eval.paper_tasks import PAPER_TASKS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--batch-size", default="8")
    ap.add_argument("--task", action="append", required=True, metavar="TASK[=DIR]")
    ap.add_argument("--samples", action="store_true", help="records carry prompts, responses")
    args = ap.parse_args(argv)
    tasks = dict(t.split("=", 1) if "=" in t else (t, None) for t in args.task)
    bad = [t for t in tasks if t not in PAPER_TASKS]
    if bad:
        print(f"error: unknown paper task(s) {', '.join(bad)}", file=sys.stderr)
        return 2
    batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    for task, data in tasks.items():
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the records alone
            rec = run_task(task, args.model_dir, args.backend, data, limit=args.limit,
                           batch_size=batch, samples=args.samples)
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
