"""Core subcommands: test, grid, export, plan."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

from optimal_sparsity.commands.args import positive_float, positive_int
from optimal_sparsity.paths import REPO


def cmd_test(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args], cwd=REPO)


def cmd_grid(args: argparse.Namespace) -> int:
    from optimal_sparsity.accounting import count_params
    from optimal_sparsity.grid import PAPER_TOKENS, format_size, paper_models

    cols = ["name", "d", "E", "k", "total_params", "active_params", "sparsity", "density", "tpp"]
    rows = []
    for pm in paper_models():
        cfg = pm.config()
        pc = count_params(cfg)
        rows.append({"name": pm.name, "d": pm.d, "E": pm.E, "k": pm.k,
                     "total_params": pc.total, "active_params": pc.active,
                     "sparsity": f"{cfg.sparsity:.10g}", "density": f"{cfg.density:.10g}",
                     "tpp": f"{PAPER_TOKENS / pc.total:.4g}", "hf_repo": pm.hf_repo,
                     "sizes": f"{format_size(pc.total)}/A{format_size(pc.active)}"})
    if args.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=cols, extrasaction="ignore",
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Released math models (TPP at {PAPER_TOKENS / 1e9:.0f}B tokens)")
    for c in [*cols, "sizes", "hf_repo"]:
        t.add_column(c, justify="right" if c not in ("name", "hf_repo", "sizes") else "left")
    for r in rows:
        t.add_row(*(str(r[c]) for c in [*cols, "sizes", "hf_repo"]))
    Console().print(t)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from optimal_sparsity.commands.eval import resolve_checkpoint
    from optimal_sparsity.hf_export import export_hf

    out = export_hf(resolve_checkpoint(args.checkpoint, "exporting"), args.out,
                    replace=args.force)
    print(f"wrote {out} (load with transformers.AutoModelForCausalLM.from_pretrained)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from optimal_sparsity.planner import plan

    result = plan(args.tokens, args.goal, active_params=args.active_params,
                  flops_budget=args.flops_budget, max_total_params=args.max_total_params,
                  n_layers=args.layers, allow_k1=args.allow_k1)
    cols = ["name", "total_params", "active_params", "tpp", "train_flops", "recommended"]
    w = csv.writer(sys.stdout, lineterminator="\n")
    if args.csv:
        w.writerow(cols)
    for c in result.candidates:
        row = [c.name, c.total_params, c.active_params, f"{c.tpp:.4g}", f"{c.train_flops:.3g}",
               "*" if c.recommended else ""]
        if args.csv:
            w.writerow(row)
        else:
            mark = "  <- recommended" if c.recommended else ""
            print(f"{c.name:16s} total {c.total_params / 1e9:7.3f}B  active "
                  f"{c.active_params / 1e9:6.3f}B  TPP {c.tpp:8.2f}  "
                  f"train FLOPs {c.train_flops:9.3g}{mark}")
    from optimal_sparsity.study.design import get_design

    pinned = get_design("full").pin() or {}
    print(f"# recommended for {args.goal}: {result.reason}", file=sys.stderr)
    for line in result.evidence(pinned.get("verdicts")):
        print(f"# evidence: {line}", file=sys.stderr)
    if not args.allow_k1:
        print("# k = 1 candidates left out (--allow-k1 lists them): their router gets no "
              "gradient from the LM loss", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="run the test suite (the README's test command)")
    p.set_defaults(func=cmd_test)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p = sub.add_parser(
        "grid", help="the paper's 65 released math models with exact parameter accounting")
    p.set_defaults(func=cmd_grid)
    p.add_argument("--csv", action="store_true", help="CSV on stdout")
    p = sub.add_parser(
        "export", help="export a checkpoint to a Hugging Face MixtralForCausalLM directory")
    p.set_defaults(func=cmd_export)
    p.add_argument("checkpoint", type=Path,
                   help="checkpoint directory (or a run directory: its newest checkpoint), "
                        "or an HF Mixtral directory")
    p.add_argument("out", type=Path, help="new directory (never an existing run or checkpoint)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier export at OUT (nothing else is ever replaced)")
    p = sub.add_parser(
        "plan", help="sparsity planner: candidate (d, E, k) for a token and compute budget")
    p.set_defaults(func=cmd_plan)
    p.add_argument("--tokens", type=positive_float, required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--active-params", type=positive_float)
    g.add_argument("--flops-budget", type=positive_float, help="total training FLOPs")
    p.add_argument("--max-total-params", type=positive_float, help="memory cap")
    p.add_argument("--goal", choices=["reasoning", "memorization"], required=True)
    p.add_argument("--layers", type=positive_int, default=16)
    p.add_argument("--allow-k1", action="store_true",
                   help="also list k = 1 MoEs (their router gets no gradient from the LM loss)")
    p.add_argument("--csv", action="store_true")
