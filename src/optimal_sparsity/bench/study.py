"""The study's training throughput: how the sweep trains, not one step in isolation.

A ``study_train`` row trains each grid point of a design for a few seconds in worker
processes, under each trainer setup (``SETUPS``):

  today          one run at a time, all cores (the trainer's default thread count),
                 glibc's default allocator, 2 MiB MoE cache blocks: how the sweep ran
                 before ``--jobs``
  side-by-side   as many runs as cores at once, one thread each (``--jobs``)
  study          side by side, the allocator keeps freed memory (``train.allocator``)
                 and the MoE's tuned cache blocks: what ``./reproduce`` runs now

All setups compute the same thing (the blocks and the allocator change no bit; threads
may reorder a sum): the row checks the first two losses of every point against today's.

Every worker of a group starts its timed window at the same moment (after its warm-up),
so runs side by side share the machine for the whole window. A point's rate is its
tokens over its window, the median over ``rounds`` rounds; each round runs every setup
in turn, so a drift of the machine's speed falls on all setups alike. The sweep's rate,
for runs of equal token budgets, is ``jobs * n / sum(1 / rate_i)`` (runs packed onto the
cores without idle gaps).

An ``under_load`` row trains one point under a setup with and without a competing
CPU-bound process (``competitor_threads`` threads of 1024^2 matmuls, started first) and
reports the loaded rate as a fraction of the idle one.

The worker (``python -m optimal_sparsity.bench.study SPEC``) builds the training step of
``bench.builders`` (the trainer's model, loss, clipping and AdamW), runs two warm-up
steps, prints ``ready`` and its warm-up losses, waits for ``go`` on stdin, then steps
until ``seconds`` have passed and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from optimal_sparsity.bench.cases import StudyTrainCase, UnderLoadCase, case_to_dict
from optimal_sparsity.grid import GridPoint
from optimal_sparsity.study.design import StudyDesign, get_design


@dataclass(frozen=True)
class TrainerSetup:
    """How a sweep places its runs: ``jobs`` side by side (0: one per core), ``threads``
    torch threads each (0: all cores), ``keep_freed`` the allocator setting, ``env``
    variables set for the run (OpenMP's, read when torch loads)."""

    jobs: int
    threads: int
    keep_freed: bool
    env: tuple[tuple[str, str], ...] = ()
    block_bytes: int | None = None  # the fused MoE's cache blocks (None: BLOCK_BYTES)

    def resolved(self, cores: int) -> tuple[int, int]:
        return self.jobs or cores, self.threads or cores


TODAY_BLOCK_BYTES = 2 << 20  # the fused MoE's cache blocks before they were tuned

SETUPS: dict[str, TrainerSetup] = {
    "today": TrainerSetup(jobs=1, threads=0, keep_freed=False, block_bytes=TODAY_BLOCK_BYTES),
    "side-by-side": TrainerSetup(jobs=0, threads=1, keep_freed=False,
                                 block_bytes=TODAY_BLOCK_BYTES),
    "study": TrainerSetup(jobs=0, threads=1, keep_freed=True),
    # A lone run on all cores, with OpenMP's idle threads spinning less (libgomp's
    # default spins 300,000 times before it sleeps) or not at all.
    "all-cores-spin1000": TrainerSetup(jobs=1, threads=0, keep_freed=True,
                                       env=(("GOMP_SPINCOUNT", "1000"),)),
    "all-cores-passive": TrainerSetup(jobs=1, threads=0, keep_freed=True,
                                      env=(("OMP_WAIT_POLICY", "PASSIVE"),)),
}


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _worker_spec(design: StudyDesign, point: GridPoint, setup: TrainerSetup, threads: int,
                 seconds: float) -> dict[str, Any]:
    """A worker trains ``point`` at the design's batch, window and vocabulary."""
    return {"point": point.name, "n_layers": point.n_layers, "threads": threads,
            "keep_freed": setup.keep_freed, "env": dict(setup.env),
            "block_bytes": setup.block_bytes, "micro_batch": design.train["micro_batch"],
            "seq_len": design.train["seq_len"], "vocab_size": design.corpus.vocab_size,
            "seconds": seconds}


def _tokens_per_step(design: StudyDesign) -> int:
    return design.train["micro_batch"] * design.train["seq_len"]


def run_group(specs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one worker per spec, release them together, return their results."""
    procs = [subprocess.Popen([sys.executable, "-m", "optimal_sparsity.bench.study",
                               json.dumps(s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **s.get("env", {})}) for s in specs]
    try:
        warm = []
        for p in procs:
            line = p.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"bench worker failed: {p.communicate()[1].strip()[-400:]}")
            warm.append(json.loads(line.split(" ", 1)[1]))
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        out = []
        for p, w in zip(procs, warm, strict=True):
            stdout, stderr = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"bench worker failed: {stderr.strip()[-400:]}")
            out.append({**json.loads(stdout.strip().splitlines()[-1]), "warmup_losses": w})
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _sweep_rate(rates: Sequence[float], jobs: int) -> float:
    return jobs * len(rates) / sum(1.0 / r for r in rates)


def _max_rel_diff(a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


def run_study_train(case: StudyTrainCase) -> dict[str, Any]:
    design, n = get_design(case.design), cores()
    points = list(design.points)
    rates: dict[str, dict[str, list[float]]] = {name: {} for name in case.setups}
    losses: dict[str, dict[str, list[float]]] = {name: {} for name in case.setups}
    for _ in range(case.rounds):  # setups interleaved: the machine's drift falls on all
        for name in case.setups:
            setup = SETUPS[name]
            jobs, threads = setup.resolved(n)
            for i in range(0, len(points), jobs):
                group = points[i:i + jobs]
                res = run_group([_worker_spec(design, p, setup, threads, case.seconds)
                                 for p in group])
                for p, r in zip(group, res, strict=True):
                    rates[name].setdefault(p.label, []).append(r["tokens"] / r["wall_s"])
                    losses[name][p.label] = r["warmup_losses"]
    peers: dict[str, Any] = {}
    for name in case.setups:
        setup = SETUPS[name]
        jobs, threads = setup.resolved(n)
        per_point = {p: statistics.median(v) for p, v in rates[name].items()}
        sweep = _sweep_rate(list(per_point.values()), jobs)
        peers[name] = {"tokens_per_s": sweep, "per_point_tokens_per_s": per_point,
                       "per_point_rounds": rates[name], "jobs": jobs, "threads": threads,
                       "keep_freed": setup.keep_freed, "env": dict(setup.env),
                       "block_bytes": setup.block_bytes,
                       "median_s": _tokens_per_step(design) / sweep}
    ref = case.setups[0]
    diffs = {name: max(_max_rel_diff(losses[name][p], losses[ref][p]) for p in losses[ref])
             for name in case.setups[1:]}
    check = "warm-up losses vs " + ref + ": " + ", ".join(
        f"{k} max rel. diff {v:.1e}" for k, v in diffs.items())
    return _row(case, design, peers, check)


def _competitor(threads: int) -> subprocess.Popen:
    code = (f"import torch\ntorch.set_num_threads({threads})\na = torch.randn(1024, 1024)\n"
            "print('ready', flush=True)\nwhile True:\n    a @ a\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    return p


def run_under_load(case: UnderLoadCase) -> dict[str, Any]:
    design, n = get_design(case.design), cores()
    point = next((p for p in design.points if p.label == case.point), None)
    if point is None:
        raise ValueError(f"{case.point} is not a grid point of the {case.design} design")
    rates: dict[str, dict[str, list[float]]] = {
        name: {"idle": [], "loaded": []} for name in case.setups}
    for _ in range(case.rounds):
        for name in case.setups:
            setup = SETUPS[name]
            jobs, threads = setup.resolved(n)
            specs = [_worker_spec(design, point, setup, threads, case.seconds)] * jobs
            for state in ("idle", "loaded"):
                comp = _competitor(case.competitor_threads) if state == "loaded" else None
                try:
                    res = run_group(specs)
                finally:
                    if comp is not None:
                        comp.kill()
                        comp.wait()
                rates[name][state].append(sum(r["tokens"] / r["wall_s"] for r in res))
    peers: dict[str, Any] = {}
    for name in case.setups:
        setup = SETUPS[name]
        jobs, threads = setup.resolved(n)
        idle, loaded = (statistics.median(rates[name][s]) for s in ("idle", "loaded"))
        peers[name] = {"tokens_per_s": loaded, "idle_tokens_per_s": idle,
                       "loaded_fraction": loaded / idle, "rounds": rates[name],
                       "jobs": jobs, "threads": threads, "keep_freed": setup.keep_freed,
                       "env": dict(setup.env), "block_bytes": setup.block_bytes,
                       "median_s": _tokens_per_step(design) / loaded}
    return _row(case, design, peers, f"competitor: one process of {case.competitor_threads} "
                                     "threads of 1024^2 fp32 matmuls")


def _row(case: StudyTrainCase | UnderLoadCase, design: StudyDesign, peers: dict[str, Any],
         check: str) -> dict[str, Any]:
    return {"kind": case.kind, "name": case.name, "case": case_to_dict(case),
            "flops_per_call": 0.0, "tokens_per_call": _tokens_per_step(design),
            "repeats": 1, "other_load": None, "check": check, "peak_gflops": {},
            "peers": peers, "cores": cores(),
            "setups": {k: asdict(SETUPS[k]) for k in case.setups}}


# The worker ---------------------------------------------------------------------------

def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from optimal_sparsity.bench.builders import build_train_step
    from optimal_sparsity.bench.cases import TrainStepCase
    from optimal_sparsity.train.allocator import keep_freed_memory

    if spec["keep_freed"]:
        keep_freed_memory()
    torch.set_num_threads(spec["threads"])
    torch.use_deterministic_algorithms(True, warn_only=True)  # as the trainer runs
    case = TrainStepCase(spec["point"], micro_batch=spec["micro_batch"],
                         seq_len=spec["seq_len"], n_layers=spec["n_layers"],
                         vocab_size=spec["vocab_size"], block_bytes=spec["block_bytes"])
    step = build_train_step(case, torch.device("cpu"), only="ours").peers["ours"]
    warm = [float(step()) for _ in range(2)]
    print("ready " + json.dumps(warm), flush=True)
    sys.stdin.readline()
    steps, t0 = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        wall = time.perf_counter() - t0
        if wall >= spec["seconds"]:
            break
    return {"steps": steps, "wall_s": wall,
            "tokens": steps * spec["micro_batch"] * spec["seq_len"]}


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))))
