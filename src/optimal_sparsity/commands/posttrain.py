"""Subcommands: grpo (post-training), selfconsistency (test-time compute), code-eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimal_sparsity.commands.args import (
    bounded_int,
    positive_float,
    positive_int,
    seed_int,
    thread_count,
)
from optimal_sparsity.errors import UserError


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def cmd_grpo(args: argparse.Namespace) -> int:
    from optimal_sparsity.eval.grpo import (
        get_preset,
        gsm8k_dataset,
        run_grpo,
        unavailable_reason,
    )

    settings = get_preset(args.preset)
    changes = {k: v for k, v in (("max_steps", args.steps), ("eval_n", args.eval_n),
                                 ("learning_rate", args.lr), ("seed", args.seed),
                                 ("per_device_batch", args.rollouts_per_step))
               if v is not None}
    settings = settings.replace(**changes)
    if reason := unavailable_reason(settings):
        raise UserError(f"{reason}; use --preset cpu here")
    rows = None
    if settings.prompts == "gsm8k":
        if args.gsm8k_train is None:
            raise UserError(f"GRPO preset {settings.name!r} trains on GSM8K: give "
                            "--gsm8k-train FILE (JSONL with question and answer)")
        rows = gsm8k_dataset(args.gsm8k_train, settings.n_prompts)
    _threads(args.threads)
    res = run_grpo(args.checkpoint, args.corpus, args.out, settings, train_rows=rows,
                   results=args.results, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({**res.metrics(), "n_eval": res.before.n,
                      "train_reward_first_quarter": res.train_reward_first,
                      "train_reward_last_quarter": res.train_reward_last,
                      "wall_s": round(res.wall_s, 1),
                      "checkpoint": str(res.checkpoint) if res.checkpoint else None}, indent=2))
    return 0


def cmd_selfconsistency(args: argparse.Namespace) -> int:
    from optimal_sparsity.eval.selfconsistency import SCSettings, self_consistency

    settings = SCSettings(r_max=args.r_max, n_problems=args.problems,
                          max_new_tokens=args.max_new_tokens, seed=args.seed,
                          backend=args.backend)
    _threads(args.threads)

    def progress(i: int, n: int) -> None:
        print(f"\r{i}/{n} problems", end="" if i < n else "\n", file=sys.stderr, flush=True)

    res = self_consistency(args.checkpoint, args.corpus, settings, results=args.results,
                           force=args.force, progress=progress)
    print("N\tmaj@N\tcov@N" + ("\t(cached)" if res.cached else ""))
    for n in settings.sizes:
        print(f"{n}\t{res.metrics[f'maj@{n}']:.3f}\t{res.metrics[f'cov@{n}']:.3f}")
    print(f"# {res.n} problems, {res.wall_s:.0f} s", file=sys.stderr)
    return 0


def cmd_code_eval(args: argparse.Namespace) -> int:
    from optimal_sparsity.eval.code_tasks import code_eval

    _threads(args.threads)
    res = code_eval(args.checkpoint, args.task, results=args.results, limit=args.limit,
                    mbpp_path=args.mbpp, max_new_tokens=args.max_new_tokens,
                    allow_unconfined=args.unconfined_sandbox or None)
    print(json.dumps({"task": res.task, "pass@1": res.pass_at_1, "n": res.n,
                      "statuses": res.counts()}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grpo", help="GRPO post-training (trl) with before/after accuracy")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--corpus", type=Path, required=True, help="proxy corpus directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preset", choices=["cpu", "paper"], default="cpu",
                   help="cpu: minutes on 2 cores; paper: the paper's settings (GPU, vLLM)")
    p.add_argument("--gsm8k-train", type=Path,
                   help="GSM8K train JSONL (question, answer): the paper preset's prompts")
    p.add_argument("--steps", type=positive_int, help="override the preset's max_steps")
    p.add_argument("--eval-n", type=positive_int, help="held-out items for before/after")
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--rollouts-per-step", type=positive_int,
                   help="completions per step (a multiple of the preset's rollouts per prompt)")
    p.add_argument("--seed", type=seed_int)
    p.add_argument("--results", type=Path, help="results table directory (adds rows)")
    p.add_argument("--threads", type=thread_count)
    p.set_defaults(func=cmd_grpo)

    p = sub.add_parser("selfconsistency",
                       help="test-time compute: majority vote and coverage at N = 1..2^r")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--r-max", type=bounded_int(0, 16), default=7)
    p.add_argument("--problems", type=positive_int, default=100)
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--results", type=Path)
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument("--threads", type=thread_count)
    p.set_defaults(func=cmd_selfconsistency)

    p = sub.add_parser("code-eval", help="HumanEval / MBPP pass@1 (greedy, sandboxed)")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--task", choices=["humaneval", "mbpp"], required=True)
    p.add_argument("--limit", type=positive_int)
    p.add_argument("--mbpp", type=Path, help="MBPP items with test_list (JSON/JSONL[.gz])")
    p.add_argument("--max-new-tokens", type=positive_int, default=512)
    p.add_argument("--results", type=Path)
    p.add_argument("--threads", type=thread_count)
    p.add_argument("--unconfined-sandbox", action="store_true",
                   help="where no sandbox mode contains writes and network here, run the "
                        "generated code unconfined anyway (docs/sandbox.md)")
    p.set_defaults(func=cmd_code_eval)
