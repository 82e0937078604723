"""Subcommands: eval (all tiers of one checkpoint -> results table), lm-eval-tasks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimal_sparsity.commands.args import (
    bounded_int,
    device_arg,
    grpo_override,
    positive_int,
    seed_int,
    thread_count,
)
from optimal_sparsity.errors import UserError
from optimal_sparsity.paths import REPO

DEFAULT_RESULTS = REPO / "results" / "table"


def resolve_checkpoint(path: Path, doing: str = "evaluating") -> Path:
    """A checkpoint (or HF) directory; a run directory means its newest checkpoint."""
    from optimal_sparsity.train.state import list_checkpoints

    if (path / "checkpoints").is_dir():
        found = list_checkpoints(path / "checkpoints")
        if not found:
            raise UserError(f"run {path} has no complete checkpoint yet")
        print(f"{doing} the newest checkpoint of the run: {found[-1][1]}", file=sys.stderr)
        return found[-1][1]
    if not path.is_dir():
        raise UserError(f"no checkpoint directory at {path}")
    return path


def resolve_corpus(ckpt: Path) -> Path:
    """The corpus a checkpoint was trained on: ``$OPTIMAL_SPARSITY_HOME/corpora/<fingerprint>``,
    else the path its training config names (if its fingerprint matches)."""
    from optimal_sparsity.checkpoint import read_config
    from optimal_sparsity.paths import corpus_cache

    meta = read_config(ckpt)
    fp = meta.get("corpus_fingerprint")
    if fp and (corpus_cache(fp) / "corpus.json").is_file():
        return corpus_cache(fp)
    named = (meta.get("train") or {}).get("corpus")
    if named and (Path(named) / "corpus.json").is_file():
        have = json.loads((Path(named) / "corpus.json").read_text()).get("fingerprint")
        if have == fp:
            return Path(named)
    where = corpus_cache(fp) if fp else "its training config"
    raise UserError(f"cannot find the corpus checkpoint {ckpt} was trained on (looked in "
                    f"{where}): pass --corpus DIR")


def _fmt(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}"


def cmd_eval(args: argparse.Namespace) -> int:
    from optimal_sparsity.eval.evaluate import (
        EvalSettings,
        TierStatus,
        evaluate_checkpoint,
        is_hf_dir,
    )
    from optimal_sparsity.tiers import CORPUS_TIERS, DEFAULT_TIERS, PULL_TIERS

    ckpt = resolve_checkpoint(args.checkpoint)
    pull = is_hf_dir(ckpt)
    tiers = tuple(args.tiers) if args.tiers else (PULL_TIERS if pull else DEFAULT_TIERS)
    needs_corpus = CORPUS_TIERS & set(tiers)
    corpus = args.corpus
    if corpus is None and needs_corpus and not pull:
        corpus = resolve_corpus(ckpt)
    changes = {k: v for k, v in dict(
        tiers=tiers, limit=args.limit, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, train_sequences=args.train_sequences,
        val_sequences=args.val_sequences, backend=args.backend,
        paper_backend=args.paper_backend, paper_harness=args.paper_harness,
        device=args.device, threads=args.threads, force=args.force, seed=args.seed,
        sc_problems=args.sc_problems, grpo_preset=args.grpo_preset,
        paper_gsm8k_data=str(args.gsm8k) if args.gsm8k else None).items() if v is not None}
    # One option each for the proxy tier and its paper tier (sc / paper_sc, grpo /
    # paper_grpo, fewshot / paper_fewshot): which one a checkpoint gets decides.
    paper = "paper_" if pull else ""
    if args.sc_power is not None:
        changes["paper_sc_power" if pull else "sc_max_power"] = args.sc_power
    if args.sc_max_new_tokens is not None:
        changes[f"{paper}sc_max_new_tokens"] = args.sc_max_new_tokens
    if args.grpo:
        changes[f"{paper}grpo_overrides"] = tuple(args.grpo)
    if args.math:
        changes["paper_math_data"] = str(args.math)
    if args.shots:
        changes[f"{paper}fewshot_shots"] = tuple(args.shots)
    if args.tasks:
        changes["tasks"] = tuple(args.tasks)
    if args.paper_data:
        changes["paper_task_data"] = tuple(args.paper_data)
    settings = EvalSettings.smoke(**changes) if args.smoke else EvalSettings(**changes)
    statuses: list[TierStatus] = []
    rows = evaluate_checkpoint(ckpt, corpus, args.results, settings,
                               log=lambda m: print(m, file=sys.stderr), statuses=statuses)
    if rows:
        r0 = rows[0]
        print(f"{r0.model} step {r0.step} ({r0.source}; {r0.tokens:,} tokens)")
        print(f"{'task':18s} {'metric':14s} {'value':>10s} {'stderr':>8s} {'n':>6s}")
        for r in rows:
            se = f"{r.stderr:.4f}" if r.stderr is not None else ""
            print(f"{r.task:18s} {r.metric:14s} {_fmt(r.value):>10s} {se:>8s} {r.n:6d}")
    for s in statuses:
        if s.status == "skipped":
            print(f"# {s.tier}: skipped: {s.reason}")
    print(f"# results table: {Path(args.results).resolve()}")
    return 0


def cmd_lm_eval_tasks(args: argparse.Namespace) -> int:
    from optimal_sparsity.eval.lm_eval_tasks import PROXY_TASKS, write_task_configs

    tasks = tuple(args.tasks) if args.tasks else PROXY_TASKS
    out = write_task_configs(args.corpus, args.out, tasks)
    print(f"wrote {', '.join(t + '.yaml' for t in tasks)} to {out.resolve()}")
    print(f"use: python -m lm_eval --model hf --model_args pretrained=HF_DIR,dtype=float32 "
          f"--tasks {','.join(tasks)} --include_path {out.resolve()} --device cpu")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from optimal_sparsity.eval.lm_eval_tasks import PROXY_TASKS
    from optimal_sparsity.tiers import TIERS

    p = sub.add_parser("eval", help="evaluate one checkpoint on all tiers -> results table")
    p.add_argument("checkpoint", type=Path,
                   help="checkpoint directory (or a run directory: its newest checkpoint), "
                        "or an HF Mixtral directory (a released model)")
    p.add_argument("--corpus", type=Path,
                   help="proxy corpus (default: the one the checkpoint was trained on)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="results table directory (default: results/table)")
    p.add_argument("--tiers", nargs="+", choices=TIERS, metavar="TIER",
                   help=f"tiers to run: {', '.join(TIERS)} (default: pretrain task_loss "
                        "accuracy; paper_task_loss paper_accuracy for an HF directory)")
    p.add_argument("--tasks", nargs="+", choices=PROXY_TASKS, metavar="TASK",
                   help="proxy tasks (default: all four)")
    p.add_argument("--limit", type=positive_int, help="first N items of every task")
    p.add_argument("--smoke", action="store_true",
                   help="seconds-scale settings (8 items per task, 8 sequences)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--max-new-tokens", type=positive_int)
    p.add_argument("--train-sequences", type=positive_int)
    p.add_argument("--val-sequences", type=positive_int)
    p.add_argument("--backend", choices=["adapter", "hf"],
                   help="accuracy tier: this project's lm-eval adapter (default) or lm-eval's "
                        "hf backend on an exported copy")
    p.add_argument("--paper-backend", choices=["hf", "vllm"])
    p.add_argument("--paper-harness", choices=["authors", "pinned"],
                   help="paper_accuracy: the authors' harness, lm-eval 0.4.7 (0.4.9 for "
                        "humaneval, mbpp) in environments of its own (default), or the "
                        "project's pinned lm-eval")
    p.add_argument("--paper-data", nargs="+", metavar="TASK=DIR",
                   help="paper_accuracy: pulled snapshots of the lm-eval tasks' data sets "
                        "(gsm8k, triviaqa, hellaswag, gsm_plus), read instead of the hub")
    p.add_argument("--gsm8k", type=Path, metavar="DIR",
                   help="paper_sc / paper_fewshot: a GSM8K snapshot (openai/gsm8k's layout, "
                        "e.g. pulled through checkpoints.lock)")
    p.add_argument("--math", type=Path, metavar="DIR",
                   help="paper_grpo_math: a MATH snapshot (its train split; e.g. pulled "
                        "through checkpoints.lock)")
    p.add_argument("--grpo", type=grpo_override, action="append", metavar="FIELD=VALUE",
                   help="grpo / grpo2: change one of the preset's GRPO settings; paper_grpo / "
                        "paper_grpo_math: one of the authors' (eval/grpo.py, preset "
                        "'paper'); repeatable")
    p.add_argument("--grpo-preset", choices=["cpu", "paper"],
                   help="grpo / grpo2: the GRPO preset (default cpu: minutes on 2 cores)")
    p.add_argument("--seed", type=seed_int,
                   help="sc / grpo / grpo2: the sampling and training seed (default 0)")
    p.add_argument("--sc-power", type=bounded_int(0, 12),
                   help="sc / paper_sc: 2^N samples per problem (default 7, the paper's)")
    p.add_argument("--sc-problems", type=positive_int,
                   help="sc: the first N held-out proxy problems (default 100)")
    p.add_argument("--sc-max-new-tokens", type=positive_int,
                   help="sc / paper_sc: new tokens per sample (default: sc --max-new-tokens, "
                        "else 64; paper_sc 1024, the paper's)")
    p.add_argument("--shots", type=bounded_int(0, 64), nargs="+", metavar="N",
                   help="fewshot / paper_fewshot: the shot counts of the sweep")
    p.add_argument("--device", type=device_arg, help="cpu (default) or cuda")
    p.add_argument("--threads", type=thread_count, help="torch threads while evaluating")
    p.add_argument("--force", action="store_true", help="recompute tiers already in the table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("lm-eval-tasks",
                       help="write the proxy tasks' lm-eval YAMLs (absolute data paths)")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tasks", nargs="+", choices=PROXY_TASKS, metavar="TASK")
    p.set_defaults(func=cmd_lm_eval_tasks)
