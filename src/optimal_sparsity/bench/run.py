"""Run a suite: time each case's peers side by side (with the reference matmul as one
more peer, so every row carries its own peak), measure memory in fresh processes,
check the issue's targets, print tables and write JSON."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from optimal_sparsity.bench.builders import PEAK_SIZE, build, peak_peers
from optimal_sparsity.bench.cases import SUITES, Case, case_to_dict
from optimal_sparsity.bench.memory import measure_in_subprocess
from optimal_sparsity.bench.timing import interleaved, omp_wait_policy
from optimal_sparsity.machine_load import OtherLoad

SCHEMA = 1


def machine_info(device: torch.device) -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_wait_policy": omp_wait_policy(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device), "git": _git_describe(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_describe() -> str | None:
    repo = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_case(case: Case, repeats: int, device: torch.device, memory: bool,
             row_budget_s: float, peak_size: int = PEAK_SIZE, min_repeats: int = 3
             ) -> dict[str, Any]:
    """Time one case's peers and a ``peak_size``^3 matmul per dtype, side by side."""
    built = build(case, device)
    peak_dtypes = tuple(sorted(set(built.peak_dtype.values())))
    peers = dict(built.peers)
    is_peak_row = case.kind == "matmul" and (case.m, case.k, case.n) == (peak_size,) * 3
    if not is_peak_row:
        peers.update(peak_peers(device, peak_dtypes, peak_size))
    # One timed warm-up round sizes the number of repeats to the row's time budget.
    t0 = time.perf_counter()
    for p in peers.values():
        p()
    round_s = time.perf_counter() - t0
    n = max(min_repeats, min(repeats, math.floor(row_budget_s / max(round_s, 1e-9))))
    with OtherLoad() as load:
        stats = interleaved(peers, n, warmup=0, device=device)
    peak_flops = 2.0 * peak_size**3
    peak_rate = {dt: peak_flops / stats[f"peak-{dt}"].median_s for dt in peak_dtypes
                 if f"peak-{dt}" in stats}
    if is_peak_row:
        peak_rate = {case.dtype: built.flops / stats["mm"].median_s}
    row: dict[str, Any] = {
        "kind": case.kind, "name": case.name, "case": case_to_dict(case),
        "flops_per_call": built.flops, "tokens_per_call": built.tokens, "repeats": n,
        "other_load": load.fraction, "check": built.check,
        "peak_gflops": {dt: r / 1e9 for dt, r in peak_rate.items()}, "peers": {},
    }
    case_json = json.dumps(case_to_dict(case))
    for name, s in stats.items():
        if name.startswith("peak-") and not is_peak_row:
            continue
        rate = built.flops / s.median_s
        res: dict[str, Any] = {
            "median_s": s.median_s, "min_s": s.min_s, "max_s": s.max_s,
            "gflops": rate / 1e9,
            "frac_peak": rate / peak_rate[built.peak_dtype[name]],
            "peak_dtype": built.peak_dtype[name],
        }
        if built.tokens:
            res["tokens_per_s"] = built.tokens / s.median_s
        if memory and case.kind != "matmul":
            res.update(measure_in_subprocess(case_json, name, str(device),
                                             torch.get_num_threads()) or {})
        row["peers"][name] = res
    return row


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's CPU targets, evaluated on the rows that were run."""
    out: list[dict[str, Any]] = []

    def add(row: dict, what: str, value: float, threshold: float) -> None:
        out.append({"row": row["name"], "target": what, "value": value,
                    "threshold": threshold, "met": value >= threshold})

    for row in rows:
        p = row["peers"]
        if row["kind"] == "moe_layer" and "ours" in p:
            hf = [v for k, v in p.items() if k.startswith("hf-")]
            if hf:
                best = max(hf, key=lambda v: v["gflops"])
                ratio = p["ours"]["gflops"] / best["gflops"]
                add(row, "ours / faster HF >= 1", ratio, 1.0)
                if best["frac_peak"] < 0.6:
                    add(row, "ours / faster HF >= 1.3 (HF below 60% of peak)", ratio, 1.3)
            if row["case"]["d"] >= 256:
                add(row, "ours >= 80% of matmul peak (d >= 256)", p["ours"]["frac_peak"], 0.8)
    train = [r for r in rows if r["kind"] == "train_step" and "ours" in r["peers"]]
    if train:
        largest = max(train, key=lambda r: r["flops_per_call"] / r["tokens_per_call"])
        for peer in ("ours", "ours+fused"):
            if peer in largest["peers"]:
                add(largest, f"{peer}: training step of the largest config >= 50% of peak",
                    largest["peers"][peer]["frac_peak"], 0.5)
    for row in rows:
        p = row["peers"]
        if row["kind"] == "study_train" and {"today", "study"} <= p.keys():
            add(row, "study / today, sweep tokens/s >= 2", p["study"]["tokens_per_s"]
                / p["today"]["tokens_per_s"], 2.0)
        if row["kind"] == "under_load" and "study" in p:
            add(row, "study: loaded / idle tokens/s >= 0.4", p["study"]["loaded_fraction"], 0.4)
    return out


def run_suite(cases: Sequence[Case], *, suite: str, repeats: int, device: str = "cpu",
              memory: bool = True, row_budget_s: float = 60.0, peak_size: int = PEAK_SIZE,
              min_repeats: int = 3, out: Path | None = None, echo: bool = True
              ) -> dict[str, Any]:
    dev = torch.device(device)
    started = _dt.datetime.now(_dt.UTC)
    t0 = time.perf_counter()
    rows = []
    for i, case in enumerate(cases, 1):
        if echo:
            print(f"[{i}/{len(cases)}] {case.kind}: {case.name}", file=sys.stderr, flush=True)
        if case.kind == "e2e":
            from optimal_sparsity.bench.e2e import run_e2e

            rows.append(run_e2e(case))  # type: ignore[arg-type]
            continue
        if case.kind in ("study_train", "under_load"):
            from optimal_sparsity.bench.study import run_study_train, run_under_load

            run = run_study_train if case.kind == "study_train" else run_under_load
            with OtherLoad() as load:  # the second before: the row's workers are children
                time.sleep(1.0)
            rows.append(run(case))  # type: ignore[arg-type]
            rows[-1]["other_load"] = load.fraction
            continue
        rows.append(run_case(case, repeats, dev, memory, row_budget_s, peak_size,
                             min(min_repeats, repeats)))
    report = {
        "schema": SCHEMA, "suite": suite, "started": started.isoformat(timespec="seconds"),
        "peak_matmul": [peak_size] * 3,
        "wall_s": time.perf_counter() - t0, "machine": machine_info(dev),
        "rows": rows, "targets": targets(rows),
    }
    if out is not None:
        from optimal_sparsity.atomic import write_json

        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, report)
    return report


def suite_cases(suite: str, kinds: Sequence[str] | None = None) -> list[Case]:
    cases = SUITES[suite]
    return [c for c in cases if not kinds or c.kind in kinds]
