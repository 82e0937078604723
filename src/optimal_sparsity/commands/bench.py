"""``./reproduce bench``: the performance suite (BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from optimal_sparsity.commands.args import device_arg, positive_float, positive_int, thread_count
from optimal_sparsity.errors import UserError
from optimal_sparsity.paths import REPO

KINDS = ("matmul", "moe_layer", "train_step", "eval_loss", "generate", "study_train",
         "under_load", "e2e")


def cmd_bench(args: argparse.Namespace) -> int:
    from optimal_sparsity.bench.report import print_report, to_markdown

    if args.show is not None:
        try:
            report = json.loads(args.show.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read benchmark report {args.show}: {err}") from None
    else:
        import torch

        from optimal_sparsity.bench.run import run_suite, suite_cases

        if args.threads:
            torch.set_num_threads(args.threads)
        suite = "quick" if args.quick else args.suite
        cases = suite_cases(suite, args.only)
        if not cases:
            raise UserError(f"no cases of kind {args.only} in suite {suite!r}")
        out = args.out or (REPO / "results" / "bench" /
                           f"bench-{suite}-{dt.datetime.now():%Y%m%d-%H%M%S}.json")
        peak = args.peak_size or (8192 if args.device.startswith("cuda") else 2048)
        report = run_suite(cases, suite=suite, repeats=args.repeats, device=args.device,
                           memory=not args.no_memory, row_budget_s=args.row_budget,
                           peak_size=peak, out=out)
        print(f"wrote {out}")
    if args.markdown:
        print(to_markdown(report))
    else:
        print_report(report)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from optimal_sparsity.bench.cases import SUITES

    p = sub.add_parser(
        "bench", help="benchmarks: MoE layer, training step, scoring and generation vs HF "
                      "Mixtral and the matmul peak; --suite e2e times ./reproduce")
    p.set_defaults(func=cmd_bench)
    p.add_argument("--suite", choices=sorted(SUITES), default="full")
    p.add_argument("--quick", action="store_true", help="the quick suite (a few minutes)")
    p.add_argument("--only", nargs="+", choices=KINDS, help="only these kinds of rows")
    p.add_argument("--repeats", type=positive_int, default=7,
                   help="timed repeats per row (fewer if a row exceeds --row-budget)")
    p.add_argument("--row-budget", type=positive_float, default=60.0,
                   help="seconds of timing per row before repeats are cut (min 3)")
    p.add_argument("--threads", type=thread_count, help="torch threads (default: torch's)")
    p.add_argument("--device", type=device_arg, default="cpu")
    p.add_argument("--peak-size", type=positive_int,
                   help="n of the n^3 reference matmul (default 2048 on a CPU, 8192 on a GPU)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--out", type=Path, help="JSON report (default results/bench/...)")
    p.add_argument("--show", type=Path, metavar="JSON", help="print a saved report instead")
    p.add_argument("--markdown", action="store_true", help="tables as Markdown")

    p = sub.add_parser(
        "gpu-check", help="every check that needs a GPU (MegaBlocks parity, GPU bench rows, "
                          "vLLM vs HF, pull-mode eval through vLLM): one JSON report; exit 2 "
                          "without a GPU")
    p.set_defaults(func=cmd_gpu_check)
    p.add_argument("--out", type=Path, default=Path("results/gpu-check"),
                   help="directory of report.json (default results/gpu-check)")
    p.add_argument("--plan", action="store_true",
                   help="print the steps and their time budgets, run nothing")


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from optimal_sparsity.gpu_check import main

    return main(args.out, plan_only=args.plan)
