"""Probes that decide the study's design in the paper's regime (references/probes/PLAN.md).

``./reproduce probe NAME --out FILE.jsonl`` (NAME one of ``PROBES``) is a script of the
CLI's own commands: for each run it builds the probe's corpus (the corpus cache), then runs
``./reproduce train`` and ``./reproduce eval`` (tiers pretrain, knowledge_bits, accuracy on
gsm8k_proxy) into a results table of the run's own, and writes one JSON line: the two
command lines, the provenance (commit, versions, hardware), config, parameters, tokens, TPP,
tokens/s, bits stored (values-style knowledge), validation CE per source, GSM8K-proxy
accuracy beside its trivial baseline, and the CPU that *other* processes used before and
during the run (``machine_load.OtherLoad``: machine-wide busy time minus this process's own,
in cores). A run that starts while other processes use more than ``OTHER_CORES_MAX`` cores
is refused (``--allow-busy`` records it anyway, marked ``busy``), and a row whose run saw
more than that on average is marked ``busy``: a contended run measures the machine, not the
model. (The 1-minute load average is recorded too, but it cannot decide: it still counts a
sibling run that ended seconds ago.)

* capacity: knowledge-only corpora at a large and a small base; the dense end (E = k = 2)
  against a sparse model of the same active parameters (E = 16, k = 2). Rule (a).
* router: the k = 1 control (E = 16) against the k = 2 dense end at one base. Rule (b).
* reasoning: 3 seeds of the dense end on the arithmetic of the candidate design. Rule (c).
* design: the two ends of the k = 2 family (E = 2, 16) on ``full``'s own corpus. Rule (d).
* reasoning-k4: 3 seeds of the k = 4 sparse end (E = 16) on (c)'s arithmetic, at the design's
  learning rate and at half of it. Rule (e).
* mix-k4: 3 seeds of the k = 4 sparse end (E = 16) on ``full``'s own corpus. Rule (f).

``--scale-down`` runs the same code at a size of seconds (for the test suite).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimal_sparsity.atomic import write_text
from optimal_sparsity.data.arithmetic import ArithmeticConfig
from optimal_sparsity.data.corpus import CorpusConfig
from optimal_sparsity.data.knowledge import KnowledgeConfig
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import GridPoint
from optimal_sparsity.machine_load import OtherLoad
from optimal_sparsity.provenance import provenance
from optimal_sparsity.results.table import Row
from optimal_sparsity.results.table import read_rows as read_table

PROBES = ("capacity", "router", "reasoning", "design", "reasoning-k4", "mix-k4")
RECORD_TOKENS = 12  # values-style record: 2 names, ":", 8 values, EOS
DEFAULT_LR = 3e-3  # the design's learning rate


@dataclass(frozen=True)
class ProbeRun:
    """One training run of a probe: corpus, model, seed and token budget."""

    probe: str
    corpus: CorpusConfig
    model: str
    seed: int
    train_tokens: int
    n_layers: int = 4
    seq_len: int = 128
    micro_batch: int = 16
    lr: float = DEFAULT_LR


def knowledge_corpus(n_people: int, exposures: float, *, n_values: int = 256,
                     n_attributes: int = 8, vocab_size: int = 512,
                     val_tokens: int = 20_000, tokenizer_docs: int = 20_000) -> CorpusConfig:
    """A knowledge-only, values-style corpus with ~``exposures`` records per person."""
    tokens = int(n_people * exposures * (RECORD_TOKENS - 8 + n_attributes))
    return CorpusConfig(train_tokens=tokens, val_tokens=val_tokens, vocab_size=vocab_size,
                        w_knowledge=1.0, w_scripts=0.0, w_arithmetic=0.0,
                        knowledge=KnowledgeConfig(n_people=n_people, style="values",
                                                  n_values=n_values,
                                                  n_value_attributes=n_attributes),
                        n_eval_knowledge=400, n_eval_scripts=10, n_eval_arithmetic=10,
                        n_train_tasks=10, tokenizer_sample_docs=tokenizer_docs,
                        val_by_source=True)


def reasoning_corpus(train_tokens: int, *, val_tokens: int = 20_000, vocab_size: int = 512,
                     n_eval: int = 300, tokenizer_docs: int = 20_000) -> CorpusConfig:
    """Arithmetic only: the candidate design's arithmetic tokens (40% of 12.5M)."""
    return CorpusConfig(train_tokens=train_tokens, val_tokens=val_tokens,
                        vocab_size=vocab_size, w_knowledge=0.0, w_scripts=0.0,
                        w_arithmetic=1.0, arithmetic=ArithmeticConfig(),
                        n_eval_knowledge=10, n_eval_scripts=10, n_eval_arithmetic=n_eval,
                        n_train_tasks=10, tokenizer_sample_docs=tokenizer_docs,
                        val_by_source=True)


def plan_runs(probe: str, scale_down: bool = False) -> list[ProbeRun]:
    """The runs of ``probe`` at its default size (<= 20 minutes on 2 quiet cores at the
    ~20k tokens/s of d = 64, 4 layers) or, with ``scale_down``, at a size of seconds."""
    if probe not in PROBES:
        raise UserError(f"unknown probe {probe!r}: one of {', '.join(PROBES)}")
    if scale_down:
        small = dict(vocab_size=300, val_tokens=1_000, tokenizer_docs=300)
        big = knowledge_corpus(48, 20, n_values=32, n_attributes=4, **small)
        little = knowledge_corpus(12, 40, n_values=32, n_attributes=4, **small)
        arith = reasoning_corpus(6_000, n_eval=8, **small)
        d, kw = 32, dict(n_layers=1, seq_len=96, micro_batch=4)  # 96 > 64 new tokens
    else:
        big = knowledge_corpus(8_192, 96)  # 9.4M tokens: ~8 min per model
        little = knowledge_corpus(1_024, 160)  # 2.0M tokens: ~2 min per model
        arith = reasoning_corpus(5_000_000)  # ~4 min per seed
        d, kw = 64, {}
    k4_seeds = (0,) if scale_down else (0, 1, 2)  # probes (e), (f): 3 seeds, 1 scaled down
    if probe == "capacity":
        return [ProbeRun(probe, c, GridPoint(d, e, 2).name, 0, c.train_tokens, **kw)
                for c in (big, little) for e in (2, 16)]
    if probe in ("design", "mix-k4"):  # on the design's own corpus
        from optimal_sparsity.study.design import get_design

        design = get_design("full").corpus
        mix = dataclasses.replace(big, train_tokens=8_000, w_knowledge=design.w_knowledge,
                                  w_scripts=design.w_scripts, w_arithmetic=design.w_arithmetic,
                                  n_eval_arithmetic=8) if scale_down else design
        if probe == "mix-k4":  # the k = 4 sparse end, 3 seeds
            return [ProbeRun(probe, mix, GridPoint(d, 16, 4).name, s, mix.train_tokens, **kw)
                    for s in k4_seeds]
        return [ProbeRun(probe, mix, GridPoint(d, e, 2).name, 0, mix.train_tokens, **kw)
                for e in (2, 16)]  # the two ends of the k = 2 family
    if probe == "router":
        mid = big if scale_down else knowledge_corpus(4_096, 100)  # 4.9M tokens
        return [ProbeRun(probe, mid, m, 0, mid.train_tokens, **kw)
                for m in (GridPoint(d, 2, 2).name, GridPoint(d, 16, 1).name)]
    if probe == "reasoning-k4":  # the k = 4 sparse end at the design's LR and at half of it
        return [ProbeRun(probe, arith, GridPoint(d, 16, 4).name, s, arith.train_tokens,
                         lr=lr, **kw) for lr in (DEFAULT_LR, DEFAULT_LR / 2) for s in k4_seeds]
    return [ProbeRun(probe, arith, GridPoint(d, 2, 2).name, s, arith.train_tokens, **kw)
            for s in (0, 1, 2)]


OTHER_CORES_MAX = 0.5  # cores other processes may use before a run counts as contended


def load_average() -> float:
    return os.getloadavg()[0]


def other_cores_now(window_s: float = 3.0) -> float:
    """Cores other processes use, measured over ``window_s`` while this one sleeps."""
    with OtherLoad() as load:
        time.sleep(window_s)
    return _cores(load)


def _cores(load: OtherLoad) -> float:
    return (load.fraction or 0.0) * (os.cpu_count() or 1)


def _cli(argv: list[str]) -> subprocess.CompletedProcess:
    """``./reproduce ARGV`` (the same interpreter and package), its output captured."""
    return subprocess.run([sys.executable, "-m", "optimal_sparsity.cli", *argv],
                          capture_output=True, text=True, check=False)


def _interrupted(run: ProbeRun, argv: list[str], proc: subprocess.CompletedProcess) -> str:
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    if m := re.search(r"interrupted at step (\d+)/(\d+)", proc.stderr):
        tail = f"stopped at step {m[1]} of {m[2]} (interrupted)"
    return (f"{run.model} seed {run.seed}: `reproduce {argv[0]}` {tail}: the row is not "
            "recorded; run the probe again to finish it")


def commands(run: ProbeRun, corpus: Path, run_dir: Path, table: Path,
             threads: int) -> list[list[str]]:
    """The ``./reproduce train`` and ``./reproduce eval`` command lines of ``run``."""
    train = ["train", "--config", run.model, "--corpus", str(corpus), "--out", str(run_dir),
             "--tokens", str(run.train_tokens), "--seed", str(run.seed),
             "--seq-len", str(run.seq_len), "--micro-batch", str(run.micro_batch),
             "--lr", str(run.lr), "--layers", str(run.n_layers), "--threads", str(threads)]
    tiers = ["pretrain"]
    if run.corpus.knowledge.style == "values" and run.corpus.weights["knowledge"] > 0:
        tiers.append("knowledge_bits")
    if run.corpus.weights["arithmetic"] > 0:
        tiers.append("accuracy")
    evaluate = ["eval", str(run_dir), "--corpus", str(corpus), "--results", str(table),
                "--tiers", *tiers, "--tasks", "gsm8k_proxy", "--train-sequences", "64",
                "--threads", str(threads)]
    return [train, evaluate]


def _metrics(table: Path) -> dict[tuple[str, str], Row]:
    return {(r.task, r.metric): r for r in read_table(table)}


def run_one(run: ProbeRun, work: Path, threads: int, allow_busy: bool) -> dict[str, Any]:
    """Train and evaluate ``run`` through the CLI (``./reproduce train``, then ``./reproduce
    eval`` into a results table of its own); the row to record."""
    from optimal_sparsity.data.arithmetic import trivial_baselines
    from optimal_sparsity.data.cache import ensure_corpus

    load_start = load_average()
    other_start = other_cores_now()
    busy = other_start > OTHER_CORES_MAX
    if busy and not allow_busy:
        raise UserError(f"other processes use {other_start:.2f} cores (more than "
                        f"{OTHER_CORES_MAX}): a contended run is not recorded (wait for a quiet "
                        "machine, or pass --allow-busy to record it marked busy)")
    name = (f"{run.probe}-{run.model}-L{run.n_layers}-s{run.seed}-"
            f"{run.corpus.fingerprint()[:12]}-{run.train_tokens}-lr{run.lr:g}")
    run_dir, table = work / name, work / f"{name}.table"
    t0 = time.time()
    with OtherLoad(children=True) as during:  # the CLI runs below are this probe's own
        corpus = ensure_corpus(run.corpus)
        argvs = commands(run, corpus, run_dir, table, threads)
        for argv in argvs:
            proc = _cli(argv)
            if proc.returncode != 0:
                raise UserError(_interrupted(run, argv, proc))
    wall_s = time.time() - t0
    s = json.loads((run_dir / "summary.json").read_text())
    m = _metrics(table)
    mcfg = s["model"]
    row: dict[str, Any] = {
        "probe": run.probe, "model": run.model, "n_layers": run.n_layers, "seed": run.seed,
        "d": mcfg["d_model"], "E": mcfg["n_experts"], "k": mcfg["top_k"],
        "corpus_fingerprint": run.corpus.fingerprint(), "corpus": run.corpus.to_dict(),
        "train": {"seq_len": run.seq_len, "micro_batch": run.micro_batch, "lr": run.lr},
        "commands": [["./reproduce", *argv] for argv in argvs],
        "total_params": s["total_params"], "active_params": s["active_params"],
        "tokens": s["tokens"], "tpp": s["tpp"], "tok_s": s["median_tokens_per_s"],
        "train_ce": s["final_train_ce"], "val_loss": m["pretrain", "val_loss"].value,
        "val_loss_by_source": {metric.removeprefix("val_loss_"): r.value
                               for (task, metric), r in sorted(m.items())
                               if task == "pretrain" and metric.startswith("val_loss_")}}
    if ("knowledge_bits", "bits_stored") in m:
        kb = m["knowledge_bits", "bits_stored"]
        row.update({"n_people": kb.extra["n_people"], "bits_total": kb.extra["bits_total"],
                    "bits_stored": kb.value,
                    "bits_fraction": m["knowledge_bits", "bits_fraction"].value,
                    "bits_per_param": m["knowledge_bits", "bits_per_param"].value,
                    "value_nll_bits": m["knowledge_bits", "value_nll_bits"].value,
                    "exposures_per_person": s["tokens"] / (
                        kb.extra["n_people"] * (3 + kb.extra["values_per_person"] + 1))})
    if ("gsm8k_proxy", "acc") in m:
        acc = m["gsm8k_proxy", "acc"]
        items = [json.loads(x) for x in
                 CorpusFiles(corpus).eval_items("gsm8k_proxy").read_text().splitlines()]
        row.update({"gsm8k_proxy_acc": acc.value, "gsm8k_proxy_n": acc.n,
                    "gsm8k_proxy_trivial": max(trivial_baselines(items[:acc.n]).values())})
    other_run = _cores(during)
    row.update({"wall_s": wall_s, "threads": threads, "load_start": load_start,
                "load_end": load_average(), "other_cores_start": other_start,
                "other_cores_run": other_run, "busy": busy or other_run > OTHER_CORES_MAX,
                "provenance": provenance()})
    return row


def read_rows(out: Path) -> list[dict]:
    """The rows already in ``out`` (a probe file this code wrote), else refuse."""
    if not out.exists():
        return []
    rows = []
    for n, line in enumerate(out.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict) or rec.get("probe") not in PROBES:
            raise UserError(f"{out}:{n} is not a probe row: refusing to write into a file "
                            "this command did not write")
        rows.append(rec)
    return rows


def _run_key(run: ProbeRun) -> tuple:
    return (run.probe, run.model, run.seed, run.corpus.fingerprint(), run.train_tokens, run.lr)


def _row_key(row: dict) -> tuple:
    return (row.get("probe"), row.get("model"), row.get("seed"), row.get("corpus_fingerprint"),
            row.get("tokens"), row.get("train", {}).get("lr", DEFAULT_LR))


def run_probe(probe: str, out: Path, *, scale_down: bool = False, threads: int = 0,
              allow_busy: bool = False, work: Path | None = None, log=print) -> list[dict]:
    """Run every run of ``probe``, appending each row to ``out`` (atomically) as it ends."""
    threads = threads or (os.cpu_count() or 1)
    provenance()  # the commit is read (and cached) as the probe starts, not as a row ends
    rows = read_rows(out)
    work = work or out.with_name(out.stem + "-runs")
    new = []
    for run in plan_runs(probe, scale_down):
        key = _run_key(run)
        if any(_row_key(r) == key and not r.get("busy") for r in rows):
            log(f"{run.probe} {run.model} seed {run.seed}: already recorded (not busy), kept")
            continue
        row = run_one(run, work, threads, allow_busy)
        new.append(row)
        rows = [r for r in rows if _row_key(r) != key] + [row]
        write_text(out, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        log(json.dumps({"lr": run.lr} | {k: row[k] for k in (
            "probe", "model", "seed", "tokens", "tpp", "tok_s", "gsm8k_proxy_acc", "bits_stored",
            "other_cores_run", "busy") if k in row}))
    return new

