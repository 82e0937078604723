"""Subcommands: all (the default), fig1 .. fig11, report, claims."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optimal_sparsity.commands.args import bounded_int, grpo_override, positive_float
from optimal_sparsity.figures.registry import FIGURES
from optimal_sparsity.paths import REPO, ModeFiles

RESULTS_DIR = REPO / "results"


def _options(args: argparse.Namespace):
    from optimal_sparsity.study.pipeline import Options
    from optimal_sparsity.study.slurm import settings_from_args

    return Options(mode=args.mode, scale=args.scale, launcher=args.launcher,
                   results=args.results, check=not args.no_check, lock=args.lock,
                   allow_unpinned=args.allow_unpinned, hub_cache=args.hub_cache,
                   limit=args.limit, slurm=settings_from_args(args), retries=args.retries,
                   jobs=args.jobs, sc_power=args.sc_power,
                   sc_max_new_tokens=args.sc_max_new_tokens,
                   grpo_overrides=tuple(args.grpo or ()))


def _dry_run(args: argparse.Namespace) -> int:
    from optimal_sparsity.study.pipeline import print_submissions

    n = print_submissions(_options(args))
    print(f"# {n} submission(s) printed; nothing was submitted", file=sys.stderr)
    return 0


def print_claims(results) -> None:
    from rich.console import Console
    from rich.table import Table

    colors = {"reproduced": "green", "not reproduced": "red", "inconclusive": "yellow",
              "not testable": "bright_black"}
    t = Table(title="Claims", show_lines=False)
    for c in ("claim", "figure", "verdict", "we measured"):
        t.add_column(c, overflow="fold")
    for res in results:
        for cid, v in res.verdicts.items():
            t.add_row(cid, res.figure, f"[{colors[v.status]}]{v.label}[/]", v.statistic)
    Console(width=160).print(t)


def _finish(results, html: Path) -> int:
    print_claims(results)
    bad = [(r.figure, g) for r in results for g in r.regressions]
    print(f"report: {html}")
    if bad:
        print(f"error: {len(bad)} value(s) regressed beyond the pinned reference tolerance:",
              file=sys.stderr)
        for fig, g in bad:
            print(f"  {fig}: {g}", file=sys.stderr)
        return 1
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    from optimal_sparsity.study.pipeline import run_figures

    if args.dry_run:
        return _dry_run(args)
    ids = args.figures.split(",") if getattr(args, "figures", None) else None
    return _finish(*run_figures(ids, _options(args)))


def cmd_figure(args: argparse.Namespace) -> int:
    from optimal_sparsity.study.pipeline import run_figures

    if args.dry_run:
        return _dry_run(args)
    return _finish(*run_figures([args.figure_id], _options(args)))


def cmd_claims(args: argparse.Namespace) -> int:
    from optimal_sparsity.claims.registry import CLAIMS
    from optimal_sparsity.paths import REPO
    from optimal_sparsity.report.claims_table import update_readme
    from optimal_sparsity.study.claims_table import claims_markdown

    if args.calibrate:
        return _calibrate(args)
    if args.reevaluate_pins:
        return _reevaluate_pins()
    if args.update_readme:
        changed = update_readme(REPO / "README.md", claims_markdown())
        print("README claims table " + ("updated" if changed else "already current"))
        return 0
    if args.markdown:
        print(claims_markdown(), end="")
        return 0
    for c in CLAIMS:
        print(f"{c.id:38s} {c.figure:6s} {c.statement}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from optimal_sparsity.claims.stats import STATUSES
    from optimal_sparsity.errors import UserError
    from optimal_sparsity.study.calibration import calibrate, summary_line

    if args.draws < 1:
        raise UserError(f"--draws must be >= 1, not {args.draws}")
    if not args.size > 0:
        raise UserError(f"--size must be > 0, not {args.size}")
    print(f"calibration at scale {args.scale}: {args.draws} synthetic studies per claim under "
          f"the null and under the claimed effect ({args.size:g} seed sds per sd of its "
          "covariate); rates of " + " / ".join(STATUSES))
    rates = calibrate(args.scale, args.draws, args.size, every_claim=args.every_claim)
    for cid, r in rates.items():
        def fmt(d: dict[str, float]) -> str:
            return " / ".join(f"{d[s]:.2f}" for s in STATUSES)
        print(f"{cid:36s} null {fmt(r.null)}   effect {fmt(r.effect)}")
    print(summary_line(rates))
    if args.every_claim:
        from optimal_sparsity.study.calibration import MAX_FALSE, MIN_POWER, decidable

        print(f"decidable (false rates <= {MAX_FALSE:.2f}, power >= {MIN_POWER:.2f}): "
              + (", ".join(decidable(rates)) or "none"))
    return 0


def _reevaluate_pins() -> int:
    """Rewrite the verdicts of references/scaled/*.json under the current rule, and their
    tolerances on the current basis: a one-seed value takes the seed sd pooled over the pin
    its design draws noise from (``StudyDesign.noise_from``: full's, for smoke) and over its
    own replicated points, as ``pin`` computes it."""
    import time

    from optimal_sparsity.atomic import write_json
    from optimal_sparsity.references import (
        load_scaled,
        pooled_seed_sd,
        recompute_tolerances,
        scaled_path,
    )
    from optimal_sparsity.study.design import get_design
    from optimal_sparsity.study.reevaluate import reevaluate_reference

    for scale in ("smoke", "full"):
        ref = load_scaled(scale)
        if ref is None:
            continue
        design = get_design(scale)
        source = get_design(design.noise_from).pin() if design.noise_from else None
        if design.pin() is not None:  # tolerances are re-derived for the current design only
            before = [v["tolerance"] for v in ref["values"]]
            ref = recompute_tolerances(ref, fallback={**pooled_seed_sd(source),
                                                      **pooled_seed_sd(ref)})
            changed = sum(a != v["tolerance"] for a, v in zip(before, ref["values"],
                                                               strict=True))
            if changed:
                print(f"{scale:5s} {changed} tolerances recomputed")
                ref["provenance"]["tolerances"] = (
                    f"recomputed ({time.strftime('%Y-%m-%d', time.gmtime())}, "
                    "`./reproduce claims --reevaluate-pins`) on tolerance_basis from the "
                    "pinned seeds; one-seed values: " + (
                        f"the seed sd pooled over the {design.noise_from}-scale pin of this "
                        "design" if source else "the seed sd pooled over this pin's "
                        "replicated points, else their evaluation error"))
        new = reevaluate_reference(ref, scale)
        for cid, v in new.items():
            old = ref.get("verdicts", {}).get(cid, {}).get("status", "not run")
            if old != v["status"]:
                print(f"{scale:5s} {cid:36s} {old} -> {v['status']}")
        ref["verdicts"] = new
        ref["provenance"]["verdicts"] = (
            "re-evaluated from the pinned values under the current rule "
            "(`./reproduce claims --reevaluate-pins`), nothing re-run")
        write_json(scaled_path(scale), ref)
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    """Pin the results of the last run at --scale as the reference values."""
    import json
    from dataclasses import asdict

    from optimal_sparsity.errors import UserError
    from optimal_sparsity.figures.render import load_result
    from optimal_sparsity.references import pin

    files = ModeFiles.of(args.results, "retrain", args.scale)
    base, run_file = files.dir, files.run_json
    if not run_file.is_file():
        raise UserError(f"no finished run at {base}: run `./reproduce --scale {args.scale}` first")
    run = json.loads(run_file.read_text())
    from optimal_sparsity.study.design import get_design
    from optimal_sparsity.study.pipeline import rows_of
    from optimal_sparsity.study.sweep import plan_runs

    # Only the current design's runs: a results directory may hold an older design's rows.
    rows = [r for r in rows_of(plan_runs(get_design(args.scale)), files.table)
            if r.source == "retrain"]
    if not rows:  # e.g. a table of an earlier version, whose run ids this one does not make
        raise UserError(f"{files.table} holds no rows of the {args.scale} design's runs as "
                        f"this version identifies them: nothing pinned; run `./reproduce "
                        f"--scale {args.scale}` with this version first")
    verdicts, pngs = {}, {}
    for fig in FIGURES:
        res = load_result(base, fig.id)
        if res is None:
            continue
        verdicts.update({k: asdict(v) for k, v in res.verdicts.items()})
        if not res.skipped and args.figures:
            pngs[fig.id] = base / res.outputs["png"]
    prov = {k: run[k] for k in ("versions", "commit", "hardware", "time", "command")}
    prov["design"] = get_design(args.scale).fingerprint()
    cold = run.get("cold_run") or {"wall_s": run["wall_s"], "command": run["command"]}
    prov["wall_time"] = (f"{cold['wall_s'] / 60:.0f} min on {run['hardware']} "
                         f"(`{cold['command']}` from an empty cache)")
    from optimal_sparsity.references import pooled_seed_sd

    full = get_design("full").pin()
    one_seed = ("the seed sd pooled over this pin's replicated points" if args.scale == "full"
                else "the seed sd pooled over the full-scale pin of this design" if full
                else "their evaluation error (no full-scale pin of this design yet; none for "
                     "losses: the cap)")
    prov["tolerances"] = (f"computed when pinned ({run['time'][:10]}) on tolerance_basis from "
                          f"this run's seeds; one-seed values: {one_seed}")
    path = pin(args.scale, rows, verdicts, prov, pngs, seed_sd=pooled_seed_sd(full) or None)
    print(f"pinned {len(rows)} rows and {len(verdicts)} verdicts to {path}")
    return 0


def add_run_options(p: argparse.ArgumentParser) -> None:
    from optimal_sparsity.study.design import SCALES
    from optimal_sparsity.study.pipeline import MODES, RESULTS
    from optimal_sparsity.study.slurm import add_slurm_options
    from optimal_sparsity.study.sweep import LAUNCHERS

    p.add_argument("--mode", choices=MODES, default="retrain",
                   help="retrain the scaled-down grid (CPU) or pull the released checkpoints")
    p.add_argument("--scale", choices=SCALES, default="smoke",
                   help="smoke: minutes (CI-sized); full: the whole scaled-down study")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: in this process; submitit-local / slurm: one job per run")
    p.add_argument("--jobs", type=bounded_int(0), default=0,
                   help="local launcher: runs trained side by side, one process each "
                        "(default: as many as the cores hold at the design's threads per run)")
    p.add_argument("--retries", type=int, default=2,
                   help="resubmissions of a job that died (submitit launchers)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --launcher slurm: print every grid point's batch script, "
                        "submit nothing")
    add_slurm_options(p)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--no-check", action="store_true",
                   help="do not compare with the pinned reference values")
    g = p.add_argument_group("pull mode")
    g.add_argument("--lock", type=Path, help="a checkpoints.lock (default: the checkout's)")
    g.add_argument("--allow-unpinned", action="store_true",
                   help="pull entries the lock pins no revision for (hashes not checked)")
    g.add_argument("--hub-cache", type=Path, help="where pulled repositories go")
    g.add_argument("--limit", type=bounded_int(0), default=0, help="items per task (0: all)")
    g.add_argument("--sc-power", type=bounded_int(0, 12), default=7,
                   help="self-consistency: 2^N samples per problem (default 7, the paper's)")
    g.add_argument("--sc-max-new-tokens", type=bounded_int(1), default=1024,
                   help="self-consistency: new tokens per sample (default 1024, the paper's)")
    g.add_argument("--grpo", type=grpo_override, action="append", metavar="FIELD=VALUE",
                   help="GRPO: change one of the authors' settings (eval/grpo.py, preset "
                        "'paper'), e.g. max_steps=2; repeatable")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("all", help="every figure, then the claims table and the report "
                                   "(the default command)")
    add_run_options(p)
    p.add_argument("--figures", help="comma-separated subset, e.g. fig1,fig7")
    p.set_defaults(func=cmd_all)
    for spec in FIGURES:
        p = sub.add_parser(spec.id, help=f"{spec.title} (paper {spec.id.replace('fig', 'Fig ')})")
        add_run_options(p)
        p.set_defaults(func=cmd_figure, figure_id=spec.id)
    p = sub.add_parser("pin", help="pin the last run's results as the reference values")
    p.add_argument("--scale", default="full")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--figures", action="store_true",
                   help="also copy its figures to references/ (the report shows them)")
    p.set_defaults(func=cmd_pin)
    p = sub.add_parser("claims", help="list the paper's claims with their ids")
    p.add_argument("--markdown", action="store_true",
                   help="the README's claims table (expected outcomes from references/)")
    p.add_argument("--update-readme", action="store_true",
                   help="replace README.md's claims table with the current one")
    p.add_argument("--every-claim", action="store_true",
                   help="--calibrate as if the scale decided every claim (its decides list "
                        "is what this shows it can decide)")
    p.add_argument("--calibrate", action="store_true",
                   help="verdict rates on synthetic studies from the design's own noise, under "
                        "the null and under each claim's effect")
    p.add_argument("--scale", choices=("smoke", "full"), default="full",
                   help="whose design and pinned noise --calibrate uses")
    p.add_argument("--draws", type=bounded_int(1, 100_000), default=100,
                   help="synthetic studies per claim and world (--calibrate; 100: a rate's "
                        "standard error is about 0.02, about 4 min at full scale on 2 cores)")
    p.add_argument("--size", type=positive_float, default=3.0,
                   help="the claimed effect, in seed sds per sd of its covariate (--calibrate)")
    p.add_argument("--reevaluate-pins", action="store_true",
                   help="recompute the verdicts of references/scaled/*.json under the current "
                        "rule from their pinned values (no training)")
    p.set_defaults(func=cmd_claims)
