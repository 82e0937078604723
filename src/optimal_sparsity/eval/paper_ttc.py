"""Test-time compute and the few-shot sweep on the released checkpoints (pull mode), with
the paper's settings on GSM8K (docs/paper.md).

Self-consistency (Fig 6): for each GSM8K test problem, 2^7 = 128 completions are sampled from
the zero-shot prompt "Question: {q}\\nAnswer:" at temperature 0.6, top-p 0.95, at most 1,024
new tokens, each cut at the first "Question:" (the paper's stop string). Answers are read with
lm-eval's strict GSM8K rule (``#### N``; commas, a ``$`` and a final ``.`` ignored, as the
stock task's ``exact_match`` ignores them) and voted as in ``eval.selfconsistency``:
``maj@N`` and ``cov@N`` for N = 1, 2, ..., 128 over the first N samples. The problems come
from the GSM8K snapshot ``checkpoints.lock`` pins, read through lm-eval's own stock task.

Few-shot sweep (Fig 11): lm-eval's stock ``gsm8k`` task (strict match, greedy, stop at
"Question:") at each shot count of ``FEWSHOT_SHOTS``, on the same snapshot, through the
paper's backend (``eval.paper_tasks``). The paper does not list its shot counts; these span
zero-shot (its test-time-compute setting) to twice its 4-shot evaluation.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimal_sparsity.errors import UserError

GSM8K_YAML = "gsm8k/gsm8k.yaml"  # lm-eval's stock task file (relative to lm_eval/tasks/)
SC_TASK, FEWSHOT_TASK = "gsm8k_sc", "gsm8k_fewshot"  # results-table tasks (results.tasks)
STOP = "Question:"
FEWSHOT_SHOTS: tuple[int, ...] = (0, 1, 2, 4, 8)
_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")  # lm-eval gsm8k's strict-match pattern


@dataclass(frozen=True)
class PaperSC:
    """The paper's self-consistency settings (a ``limit`` on problems is the caller's)."""

    r_max: int = 7
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024
    seed: int = 0

    @property
    def sizes(self) -> list[int]:
        return [2 ** r for r in range(self.r_max + 1)]


def strict_answer(text: str) -> str | None:
    """The ``#### N`` answer of a completion, normalised as lm-eval's exact match compares
    it (commas and ``$`` removed, a final ``.`` dropped), or None."""
    m = _STRICT.search(text)
    if m is None:
        return None
    return m.group(1).replace(",", "").replace("$", "").removesuffix(".")


def gsm8k_problems(data_dir: str | Path, limit: int | None = None) -> list[dict[str, str]]:
    """``{"prompt", "target"}`` of the GSM8K test problems, in lm-eval's order."""
    from optimal_sparsity.eval.taskloss_build import load_stock_task

    task = load_stock_task(GSM8K_YAML, data_dir, what="GSM8K (self-consistency)")
    out = []
    for i, doc in enumerate(task.eval_docs):
        if limit is not None and i >= limit:
            break
        target = strict_answer(doc["answer"])
        if target is None:
            raise UserError(f"GSM8K test item {i} has no '#### N' answer")
        out.append({"prompt": task.doc_to_text(doc), "target": target})
    return out


def self_consistency(generator: Any, problems: list[dict[str, str]], sc: PaperSC,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """``maj@N`` and ``cov@N`` of one model (``generator``: ``eval.generation``)."""
    from optimal_sparsity.eval.generation import Sampling
    from optimal_sparsity.eval.selfconsistency import sc_metrics

    sampling = Sampling(sc.temperature, sc.top_p, sc.max_new_tokens)
    answers = []
    for i, p in enumerate(problems):
        texts = generator.generate([p["prompt"]], sampling, n=2 ** sc.r_max, seed=sc.seed + i)
        answers.append([strict_answer(t.split(STOP, 1)[0]) for t in texts[0]])
        if progress:
            progress(i + 1, len(problems))
    return sc_metrics(answers, [p["target"] for p in problems], sc.sizes)


def fewshot_sweep(hf_dir: str | Path, data_dir: str | Path, backend: str,
                  shots: tuple[int, ...] = FEWSHOT_SHOTS, *, limit: int | None = None,
                  batch_size: int | str = 8) -> dict[int, tuple[float, float | None, int]]:
    """Strict-match GSM8K accuracy at each shot count: {shots: (acc, stderr, n)}."""
    import yaml

    from optimal_sparsity.eval import lm_eval_run
    from optimal_sparsity.eval.paper_tasks import model_args
    from optimal_sparsity.eval.taskloss_build import local_task_config

    key = "exact_match,strict-match"
    out: dict[int, tuple[float, float | None, int]] = {}
    with tempfile.TemporaryDirectory(prefix="lm-eval-gsm8k-") as tmp:
        name = "local_gsm8k"
        Path(tmp, f"{name}.yaml").write_text(yaml.safe_dump(
            local_task_config(GSM8K_YAML, data_dir, name)))
        tm = lm_eval_run.task_manager(tmp)
        for n in shots:
            res = lm_eval_run.run(model=backend, model_args=model_args(hf_dir, backend),
                                  tasks=[name], task_manager=tm, num_fewshot=n, limit=limit,
                                  batch_size=batch_size,
                                  device="cuda" if backend == "vllm" else "cpu")
            r = res["results"][name]
            n_items = int(res.get("n-samples", {}).get(name, {}).get("effective", 0))
            out[n] = (lm_eval_run.metric(r, key), lm_eval_run.stderr(r, key), n_items)
    return out
