"""The paper's accuracy evaluation of released checkpoints, on lm-eval's stock tasks.

docs/paper.md: lm-evaluation-harness, vLLM backend, max_length 4096, seed 42; TriviaQA
(rc.nocontext) 4-shot, HellaSwag 4-shot, GSM8K 4-shot (strict-match and flexible-extract,
greedy, stop at "Question:"), GSM-Plus 5-shot, HumanEval 0-shot and MBPP 3-shot (pass@1,
greedy). Here: the ``hf`` backend on a CPU, ``vllm`` on a GPU.

Which harness runs them (``eval.paper_accuracy_run``): by default the authors', each task in
the environment of its ``harness`` (``eval.harness_env``): lm-eval 0.4.7 (= their commit
1044db9) for the four math and general tasks, 0.4.9 (the closest release to their 82a9936)
for HumanEval and MBPP; or, ``pinned``, the project's lm-eval 0.4.13 in this process. The
task names are the same in all three versions.

The data of these tasks lives on the Hugging Face hub; a task whose data set pull mode has
pulled (``TASK=DIR``) reads that snapshot instead, through its stock YAML with only
``dataset_path`` changed. Offline (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` set) for a
task without a snapshot, and for vLLM without vLLM or a GPU, ``unavailable_reason`` says why
the run cannot happen; ``evaluate.py`` then skips those tasks with that reason.
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
    task: str  # lm-eval task name (also the results-table task)
    num_fewshot: int
    metrics: dict[str, str]  # results-table metric -> lm-eval result key
    stock_yaml: str  # its task file, relative to lm_eval/tasks/
    runs_code: bool = False  # executes generated code: needs confirm_run_unsafe_code

    @property
    def harness(self) -> Path:
        """The requirements of the authors' harness for this task (``eval.harness_env``)."""
        from optimal_sparsity.eval import harness_env

        return harness_env.CODE_REQUIREMENTS if self.runs_code else harness_env.REQUIREMENTS


_GSM = {"acc": "exact_match,strict-match", "acc_flexible": "exact_match,flexible-extract"}
PAPER_TASKS: dict[str, PaperTask] = {t.task: t for t in (
    PaperTask("triviaqa", 4, {"acc": "exact_match,remove_whitespace"}, "triviaqa/default.yaml"),
    PaperTask("hellaswag", 4, {"acc": "acc,none", "acc_norm": "acc_norm,none"},
              "hellaswag/hellaswag.yaml"),
    PaperTask("gsm8k", 4, _GSM, "gsm8k/gsm8k.yaml"),
    PaperTask("gsm_plus", 5, _GSM, "gsm_plus/gsm_plus.yaml"),
    PaperTask("humaneval", 0, {"pass@1": "pass@1,create_test"}, "humaneval/humaneval.yaml",
              runs_code=True),
    PaperTask("mbpp", 3, {"pass@1": "pass_at_1,none"}, "mbpp/mbpp.yaml", runs_code=True),
)}
HARNESSES = ("authors", "pinned")  # EvalSettings.paper_harness


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
    """Keyword arguments of ``lm_eval.simple_evaluate`` for one paper task (lm-eval 0.4.7
    has no ``confirm_run_unsafe_code``: it is passed for the code tasks only)."""
    t = PAPER_TASKS[task]
    return {"model": backend, "model_args": model_args(model_dir, backend), "tasks": [t.task],
            "num_fewshot": t.num_fewshot, "limit": limit, "batch_size": batch_size,
            "device": "cuda" if backend == "vllm" else "cpu", **SEEDS,
            **({"confirm_run_unsafe_code": True} if t.runs_code else {}), "log_samples": False}


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


def blocked_tasks(backend: Backend, tasks: tuple[str, ...] = tuple(PAPER_TASKS),
                  local: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """{why: the tasks it keeps from running here}; a task named nowhere can run. Tasks in
    ``local`` read a pulled snapshot of their data set: being offline is no obstacle (but for
    the code tasks, whose ``code_eval`` metric lm-eval loads from the hub)."""
    if reason := backend_unavailable(backend):
        return {reason: tuple(tasks)}
    out: dict[str, tuple[str, ...]] = {}
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if _flag(v)]
    remote = tuple(t for t in tasks if t not in local or PAPER_TASKS[t].runs_code) \
        if offline else ()
    if remote:
        out[f"the paper's evaluation data ({', '.join(remote)}) is on the Hugging Face hub and "
            f"this run is offline ({'=1, '.join(offline)}=1)"] = remote
    code = tuple(t for t in tasks if PAPER_TASKS[t].runs_code and t not in remote)
    if code and not _flag("HF_ALLOW_CODE_EVAL"):
        out[f"{', '.join(code)} execute generated code: set HF_ALLOW_CODE_EVAL=1 (lm-eval's "
            "code_eval metric) on a machine meant for it"] = code
    return out


def unavailable_reason(backend: Backend, tasks: tuple[str, ...] = tuple(PAPER_TASKS),
                       local: tuple[str, ...] = ()) -> str | None:
    """Why some of ``tasks`` cannot run here (the first reason), or None."""
    return next(iter(blocked_tasks(backend, tasks, local)), None)


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
