"""Subcommands: data (build the proxy corpus), tokenize (a local corpus), train."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimal_sparsity.cli import bounded_int, positive_float, positive_int, seed_int, thread_count
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
    from optimal_sparsity.train.config import TrainConfig

    corpus = args.corpus or ensure_corpus(get_corpus_preset(args.corpus_preset))
    fields = dict(model=args.config, corpus=str(Path(corpus).resolve()), seed=args.seed)
    if args.steps is None and args.tokens is None:
        fields["train_tokens"] = 1_000_000
    for name in ("steps", "micro_batch", "grad_accum", "seq_len", "lr", "eval_interval",
                 "ckpt_interval", "threads", "precision"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.tokens is not None:
        fields["train_tokens"] = int(args.tokens)
    return TrainConfig(**fields)


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
    rate = s["median_tokens_per_s"]
    rate = f"{rate:,.0f} tokens/s (median)" if rate is not None else "no step run now"
    print(f"{s['model']['name']}: {result.step} steps, {s['tokens']:,} tokens, "
          f"train CE {s['final_train_ce']:.4f}, val loss {s['final_val_loss']:.4f}, "
          f"{rate}, TPP {s['tpp']:.1f}")
    print(f"run directory: {result.out}")
    return 0


FORCE_CORPUS = "replace an earlier corpus at --out (nothing else is ever replaced)"


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
    p.add_argument("--dry-run", action="store_true",
                   help="build the model and one batch only (works for paper-size configs)")
    p.set_defaults(func=cmd_train)
