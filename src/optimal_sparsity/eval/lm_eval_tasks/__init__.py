"""Project-owned lm-evaluation-harness task definitions for the four proxy tasks.

The YAML files here are templates: ``dataset_kwargs.data_files`` holds the placeholder
``@DATA_FILE@`` because lm-eval resolves ``data_files`` against the current directory, not
the YAML's. ``write_task_configs`` writes them with the corpus' absolute paths into a
directory that ``lm_eval --include_path DIR`` or ``TaskManager(include_path=DIR)`` reads.

``METRICS`` maps each task's lm-eval result keys (``metric,filter``) to the results-table
metric names of ``optimal_sparsity.eval``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from optimal_sparsity.atomic import write_text
from optimal_sparsity.data.corpus import EVAL_TASKS
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.errors import UserError

HERE = Path(__file__).parent
PLACEHOLDER = "@DATA_FILE@"
PROXY_TASKS: tuple[str, ...] = EVAL_TASKS

METRICS: dict[str, dict[str, str]] = {
    "triviaqa_proxy": {"acc": "exact_match,strip"},
    "hellaswag_proxy": {"acc": "acc,none", "acc_norm": "acc_norm,none"},
    "gsm8k_proxy": {"acc": "exact_match,strict-match",
                    "acc_flexible": "exact_match,flexible-extract"},
    "gsmplus_proxy": {"acc": "exact_match,strict-match",
                      "acc_flexible": "exact_match,flexible-extract"},
}


def template(task: str) -> str:
    if task not in PROXY_TASKS:
        raise UserError(f"unknown proxy task {task!r}: one of {', '.join(PROXY_TASKS)}")
    return (HERE / f"{task}.yaml").read_text()


def task_config(task: str, data_file: str | Path) -> str:
    """The YAML text of ``task`` reading ``data_file`` (made absolute)."""
    text = template(task)
    line = f"test: {PLACEHOLDER}"
    if text.count(line) != 1:
        raise AssertionError(f"{task}.yaml must hold exactly one '{line}'")
    # A JSON string is a valid YAML double-quoted scalar: any path survives.
    text = text.replace(line, f"test: {json.dumps(str(Path(data_file).resolve()))}")
    yaml.safe_load(text)  # fail here, not inside lm-eval
    return text


def write_task_configs(corpus: str | Path, out_dir: str | Path,
                       tasks: tuple[str, ...] = PROXY_TASKS) -> Path:
    """Write ``<out_dir>/<task>.yaml`` for each task, reading ``<corpus>/eval/<task>.jsonl``."""
    corpus, out_dir = Path(corpus).resolve(), Path(out_dir)
    for task in tasks:
        data = CorpusFiles(corpus).eval_items(task)
        if not data.is_file():
            raise UserError(f"corpus {corpus} has no {data.relative_to(corpus)} "
                            "(build it with `./reproduce data`)")
        write_text(out_dir / f"{task}.yaml", task_config(task, data))
    return out_dir
