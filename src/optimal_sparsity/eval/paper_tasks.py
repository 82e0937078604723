"""The paper's accuracy evaluation of released checkpoints, on lm-eval's stock tasks.

docs/paper.md: lm-evaluation-harness, vLLM backend, max_length 4096, seed 42; TriviaQA
(rc.nocontext) 4-shot, HellaSwag 4-shot, GSM8K 4-shot (strict-match and flexible-extract,
greedy, stop at "Question:"), GSM-Plus 5-shot, HumanEval 0-shot and MBPP 3-shot (pass@1,
greedy). The task names below are those of lm-eval 0.4.13 (the pinned version; the authors
used harness commits 1044db9 and 82a9936). Here: the ``hf`` backend on a CPU, ``vllm`` on a
GPU.

The data of these tasks lives on the Hugging Face hub. Offline (``HF_HUB_OFFLINE`` or
``HF_DATASETS_OFFLINE`` set), and for vLLM without vLLM or a GPU, ``unavailable_reason``
says why the run cannot happen; ``evaluate.py`` then skips the tier with that reason.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from optimal_sparsity.eval import lm_eval_run
from optimal_sparsity.eval.lm_eval_run import SEEDS
from optimal_sparsity.tiers import LM_EVAL_SEED

Backend = Literal["hf", "vllm"]
MAX_LENGTH = 4096
PAPER_STEPS = 29_803  # the released checkpoints are the final step


@dataclass(frozen=True)
class PaperTask:
    task: str  # lm-eval 0.4.13 task name (also the results-table task)
    num_fewshot: int
    metrics: dict[str, str]  # results-table metric -> lm-eval result key
    runs_code: bool = False  # executes generated code: needs confirm_run_unsafe_code


_GSM = {"acc": "exact_match,strict-match", "acc_flexible": "exact_match,flexible-extract"}
PAPER_TASKS: dict[str, PaperTask] = {t.task: t for t in (
    PaperTask("triviaqa", 4, {"acc": "exact_match,remove_whitespace"}),
    PaperTask("hellaswag", 4, {"acc": "acc,none", "acc_norm": "acc_norm,none"}),
    PaperTask("gsm8k", 4, _GSM),
    PaperTask("gsm_plus", 5, _GSM),
    PaperTask("humaneval", 0, {"pass@1": "pass@1,create_test"}, runs_code=True),
    PaperTask("mbpp", 3, {"pass@1": "pass_at_1,none"}, runs_code=True),
)}


def default_backend() -> Backend:
    import torch

    return "vllm" if torch.cuda.is_available() else "hf"


def model_args(model_dir: str | Path, backend: Backend) -> dict[str, Any]:
    """lm-eval ``model_args`` for a local HF Mixtral directory (never remote code)."""
    common = {"pretrained": str(Path(model_dir).resolve()), "trust_remote_code": False}
    if backend == "hf":  # safetensors only: a .bin-only directory is refused, not unpickled
        return {**common, "dtype": "float32", "max_length": MAX_LENGTH, "use_safetensors": True}
    if backend == "vllm":  # vLLM refuses a max_model_len beyond the model's window
        from optimal_sparsity.eval.gen_client import model_window

        window = min(MAX_LENGTH, model_window(model_dir))
        return {**common, "dtype": "bfloat16", "max_model_len": window, "seed": LM_EVAL_SEED,
                "load_format": "safetensors",
                "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9}
    raise ValueError(f"unknown backend {backend!r}: 'hf' or 'vllm'")


def evaluate_kwargs(task: str, model_dir: str | Path, backend: Backend, *,
                    limit: int | None = None, batch_size: int | str = 8) -> dict[str, Any]:
    """Keyword arguments of ``lm_eval.simple_evaluate`` for one paper task."""
    t = PAPER_TASKS[task]
    return {"model": backend, "model_args": model_args(model_dir, backend), "tasks": [t.task],
            "num_fewshot": t.num_fewshot, "limit": limit, "batch_size": batch_size,
            "device": "cuda" if backend == "vllm" else "cpu", **SEEDS,
            "confirm_run_unsafe_code": t.runs_code, "log_samples": False}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")


def backend_unavailable(backend: Backend) -> str | None:
    """Why lm-eval's ``backend`` cannot run here, or None."""
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            return "vLLM is not installed (a CUDA build, GPU only); use the hf backend"
        import torch

        if not torch.cuda.is_available():
            return "the vLLM backend needs a CUDA GPU"
    return None


def unavailable_reason(backend: Backend, tasks: tuple[str, ...] = tuple(PAPER_TASKS)
                       ) -> str | None:
    """Why the paper's accuracy evaluation cannot run here, or None."""
    if reason := backend_unavailable(backend):
        return reason
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if _flag(v)]
    if offline:
        return (f"the paper's evaluation data ({', '.join(tasks)}) is on the Hugging Face "
                f"hub and this run is offline ({'=1, '.join(offline)}=1)")
    code = [t for t in tasks if PAPER_TASKS[t].runs_code]
    if code and not _flag("HF_ALLOW_CODE_EVAL"):
        return (f"{', '.join(code)} execute generated code: set HF_ALLOW_CODE_EVAL=1 (lm-eval's "
                "code_eval metric) on a machine meant for it")
    return None


@dataclass(frozen=True)
class PaperResult:
    metrics: dict[str, float]
    stderr: dict[str, float]
    n: int


def parse_results(task: str, out: dict[str, Any]) -> PaperResult:
    """Map ``simple_evaluate``'s output for one paper task to results-table metrics."""
    t = PAPER_TASKS[task]
    res = out["results"][t.task]
    metrics = {ours: lm_eval_run.metric(res, key) for ours, key in t.metrics.items()}
    stderr = {ours: se for ours, key in t.metrics.items()
              if (se := lm_eval_run.stderr(res, key)) is not None}
    n = int(out.get("n-samples", {}).get(t.task, {}).get("effective", 0))
    return PaperResult(metrics, stderr, n)


def run_paper_task(task: str, model_dir: str | Path, backend: Backend, *,
                   limit: int | None = None, batch_size: int | str = 8) -> PaperResult:
    out = lm_eval_run.run(quiet=False, **evaluate_kwargs(task, model_dir, backend, limit=limit,
                                                         batch_size=batch_size))
    return parse_results(task, out)
