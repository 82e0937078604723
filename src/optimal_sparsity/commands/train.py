"""Subcommands: data (build the proxy corpus), tokenize (a local corpus), train."""

from __future__ import annotations

import argparse
import json
import os
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


def cmd_data(args: argparse.Namespace) -> int:
    from optimal_sparsity.data.corpus import build_corpus
    from optimal_sparsity.data.presets import get_corpus_preset

    cfg = get_corpus_preset(args.preset)
    changes = {k: v for k, v in (("train_tokens", args.tokens), ("seed", args.seed))
               if v is not None}
    if changes:
        cfg = type(cfg).from_dict({**cfg.to_dict(), **changes})
    out = build_corpus(cfg, args.out, replace=args.force)
    meta = json.loads((out / "corpus.json").read_text())
    print(json.dumps(meta["stats"], indent=2))
    print(f"wrote {out}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    from optimal_sparsity.data.corpus import tokenize_files

    out = tokenize_files(args.inputs, args.tokenizer, args.out, args.val_fraction,
                         args.text_field, args.seed, replace=args.force)
    print(f"wrote {out}")
    return 0


def _train_config(args: argparse.Namespace):
    from optimal_sparsity.data.cache import ensure_corpus
    from optimal_sparsity.data.presets import get_corpus_preset
    from optimal_sparsity.train.config import PAPER_MODEL_OVERRIDES, TrainConfig, paper_recipe

    if args.preset == "paper" and args.corpus is None:
        raise UserError("--preset paper needs --corpus: a tokenized corpus directory "
                        "(./reproduce tokenize); the proxy corpora are for the scaled grid")
    corpus = args.corpus or ensure_corpus(get_corpus_preset(args.corpus_preset))
    fields: dict = dict(seed=args.seed)
    overrides: dict = {}
    if args.preset == "paper":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        fields.update(paper_recipe(world, args.micro_batch or 1))
        overrides.update(PAPER_MODEL_OVERRIDES)
    elif args.steps is None and args.tokens is None:
        fields["train_tokens"] = 1_000_000
    if args.steps is not None or args.tokens is not None:
        fields.pop("steps", None)
        fields.pop("train_tokens", None)
    if args.backend is not None:
        overrides["backend"] = args.backend
    if args.layers is not None:
        overrides["n_layers"] = args.layers
    for name in ("steps", "micro_batch", "grad_accum", "seq_len", "lr", "eval_interval",
                 "ckpt_interval", "threads", "precision"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.tokens is not None:
        fields["train_tokens"] = int(args.tokens)
    return TrainConfig.of_model(args.config, Path(corpus).resolve(), model_overrides=overrides,
                                **fields)


def cmd_train(args: argparse.Namespace) -> int:
    if args.dry_run:
        from optimal_sparsity.train.dry_run import dry_run

        dry_run(args.config, corpus=args.corpus, seq_len=args.seq_len or None,
                micro_batch=args.micro_batch or 1)
        return 0
    if args.out is None:
        raise UserError("train: --out is required (except with --dry-run)")
    from optimal_sparsity.train.loop import Trainer

    cfg = _train_config(args)
    result = Trainer(cfg, args.out).run()
    s = result.summary
    if result.status == "interrupted":
        print(f"interrupted at step {result.step}/{result.total_steps}; checkpoint saved. "
              "Run the same command to resume.", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 reports (and wrote the run)
        return 0
    rate = s["median_tokens_per_s"]
    rate = f"{rate:,.0f} tokens/s (median)" if rate is not None else "no step run now"
    print(f"{s['model']['name']}: {result.step} steps, {s['tokens']:,} tokens, "
          f"train CE {s['final_train_ce']:.4f}, val loss {s['final_val_loss']:.4f}, "
          f"{rate}, TPP {s['tpp']:.1f}")
    print(f"run directory: {result.out}")
    return 0


FORCE_CORPUS = "replace an earlier corpus at --out (nothing else is ever replaced)"


def cmd_scale_out(args: argparse.Namespace) -> int:
    from optimal_sparsity.study import scaleout
    from optimal_sparsity.study.slurm import settings_from_args

    settings = settings_from_args(args)
    gpus = settings.nodes * (settings.gpus_per_node or 8)
    if args.memory:
        from optimal_sparsity.grid import get_config, paper_models

        cfgs = [get_config(args.config)] if args.config else [m.config() for m in paper_models()]
        rows = [scaleout.memory_row(c, args.micro_batch, args.seq_len) for c in cfgs]
        print(f"<!-- ./reproduce scale-out --memory --micro-batch {args.micro_batch} "
              f"--seq-len {args.seq_len} --slurm-nodes {settings.nodes} -->")
        print(scaleout.memory_table(rows, gpus, args.micro_batch, args.seq_len), end="")
        print(f"per GPU: data-parallel, nothing sharded; throughput: an estimate at "
              f"{scaleout.MFU:.0%} MFU of {scaleout.H100_BF16_DENSE_FLOPS / 1e12:.0f} TFLOP/s "
              f"(H100 bf16 dense) from the matmul FLOPs per token", file=sys.stderr)
        return 0
    missing = [f"--{n}" for n in ("config", "corpus", "out") if getattr(args, n) is None]
    if missing:
        raise UserError(f"scale-out needs {', '.join(missing)} (or --memory)")
    from optimal_sparsity.grid import get_config

    get_config(args.config)  # a known model name
    out = args.out.resolve()
    train_args = scaleout.paper_train_args(args.config, args.corpus.resolve(), out,
                                           args.micro_batch, args.ckpt_interval, args.seed)
    script = scaleout.batch_script(settings, train_args, out, f"os-{args.config}")
    if args.dry_run:
        print(script, end="")
        return 0
    import shutil
    import subprocess

    from optimal_sparsity.atomic import write_text

    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: run scale-out on a Slurm login node "
                        "(--dry-run prints the batch script)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "job.sbatch"
    write_text(path, script)
    res = subprocess.run(["sbatch", str(path)], capture_output=True, text=True)
    if res.returncode:
        raise UserError(f"sbatch {path} failed: {res.stderr.strip().splitlines()[-1:]}")
    print(res.stdout.strip())
    print(f"batch script: {path}; log: {out}/slurm-<job id>.out")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build the scaled-down proxy corpus (seeded)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preset", default="default")
    p.add_argument("--tokens", type=positive_int)
    p.add_argument("--seed", type=seed_int)
    p.add_argument("--force", action="store_true", help=FORCE_CORPUS)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("tokenize", help="tokenize local text/JSONL into token shards")
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("--tokenizer", required=True, help="path of an HF tokenizer directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--val-fraction", type=positive_float, default=0.01)
    p.add_argument("--text-field", default="text")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--force", action="store_true", help=FORCE_CORPUS)
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("train", help="pre-train one model (resumes if --out has a run)")
    p.add_argument("--config", required=True, help="model name, e.g. s-d64-E8-k2 or d512-E8-k2")
    p.add_argument("--out", type=Path)
    p.add_argument("--corpus", type=Path, help="corpus directory (default: build a preset)")
    p.add_argument("--corpus-preset", default="default")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=positive_int)
    g.add_argument("--tokens", type=positive_float)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--micro-batch", type=positive_int)
    p.add_argument("--grad-accum", type=positive_int)
    p.add_argument("--seq-len", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--eval-interval", type=bounded_int(0))
    p.add_argument("--ckpt-interval", type=bounded_int(0))
    p.add_argument("--threads", type=thread_count)
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument("--layers", type=positive_int,
                   help="transformer layers (default: the model's; 4 for scaled-down names)")
    p.add_argument("--backend", choices=["torch", "megablocks"],
                   help="MoE kernels (default: torch; megablocks with --preset paper)")
    p.add_argument("--preset", choices=["scaled", "paper"], default="scaled",
                   help="paper: the paper's recipe (seq 4096, 1024 sequences a step over "
                        "all ranks, 29,803 steps, LR 4e-4, bf16, MegaBlocks); flags override")
    p.add_argument("--dry-run", action="store_true",
                   help="build the model and one batch only (works for paper-size configs)")
    p.set_defaults(func=cmd_train)

    from optimal_sparsity.study.slurm import add_slurm_options

    p = sub.add_parser("scale-out", help="one paper-scale grid point as a Slurm job: torchrun "
                                         "over N nodes x 8 GPUs (docs/scale-out.md)")
    p.add_argument("--config", help="a paper model, e.g. d512-E8-k2")
    p.add_argument("--corpus", type=Path, help="tokenized corpus directory (on shared storage)")
    p.add_argument("--out", type=Path, help="run directory (on shared storage)")
    p.add_argument("--micro-batch", type=positive_int, default=1)
    p.add_argument("--seq-len", type=positive_int, default=4096, help="with --memory")
    p.add_argument("--ckpt-interval", type=positive_int, default=500, help="steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="print the batch script, submit nothing")
    p.add_argument("--memory", action="store_true",
                   help="per-GPU memory and estimated throughput of each paper grid point")
    add_slurm_options(p)
    p.set_defaults(func=cmd_scale_out)
