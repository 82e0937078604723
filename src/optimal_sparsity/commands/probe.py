"""``./reproduce probe NAME``: the design probes of references/probes/PLAN.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from optimal_sparsity.commands.args import thread_count


def cmd_probe(args: argparse.Namespace) -> int:
    from optimal_sparsity.study.regime_probes import run_probe

    rows = run_probe(args.probe, args.out, scale_down=args.scale_down, threads=args.threads,
                     allow_busy=args.allow_busy, work=args.work)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from optimal_sparsity.study.regime_probes import PROBES

    p = sub.add_parser("probe", help="run a design probe of references/probes/PLAN.md "
                                     "(one JSON line per run)")
    p.add_argument("probe", choices=PROBES)
    p.add_argument("--out", type=Path, required=True, help="JSONL file (rows are appended)")
    p.add_argument("--scale-down", action="store_true",
                   help="the same probe at a size of seconds (tests)")
    p.add_argument("--threads", type=thread_count, default=0, help="torch threads (0: all cores)")
    p.add_argument("--allow-busy", action="store_true",
                   help="record runs that start on a busy machine (marked busy)")
    p.add_argument("--work", type=Path, help="run directories (default: next to --out)")
    p.set_defaults(func=cmd_probe)
