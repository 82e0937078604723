"""Small probes that justify the scaled-down study's design (recorded in RESULTS.md).

* memorization: a knowledge-only corpus of N facts; models of growing size trained on
  the same tokens; recall accuracy and the bits stored per parameter. Is the proxy
  capacity-limited (more parameters store more) rather than exposure-limited?
* reasoning: an arithmetic-only corpus; does a dense model of the scaled-down size clear
  the trivial baselines by a wide margin, per step and on the final answer?

``python -m optimal_sparsity.study.probes memorization|reasoning --out DIR ...``
prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from optimal_sparsity.accounting import count_params
from optimal_sparsity.atomic import write_json
from optimal_sparsity.checkpoint import load_checkpoint
from optimal_sparsity.data.arithmetic import ArithmeticConfig, parse_final, step_accuracy
from optimal_sparsity.data.cache import ensure_corpus
from optimal_sparsity.data.corpus import CorpusConfig
from optimal_sparsity.data.knowledge import KnowledgeConfig
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.data.shards import read_corpus_meta
from optimal_sparsity.data.tokenizer import load_tokenizer
from optimal_sparsity.train.config import TrainConfig
from optimal_sparsity.train.loop import Trainer
from optimal_sparsity.train.state import list_checkpoints


@torch.no_grad()
def greedy(model, tok, prompts: list[str], max_new: int, stops: tuple[str, ...]) -> list[str]:
    """Greedy completions, batched by prompt length (no padding needed)."""
    model.eval()
    out: dict[int, str] = {}
    by_len: dict[int, list[int]] = defaultdict(list)
    enc = [tok(p)["input_ids"] for p in prompts]
    for i, ids in enumerate(enc):
        by_len[len(ids)].append(i)
    for idxs in by_len.values():
        for s in range(0, len(idxs), 64):
            chunk = idxs[s:s + 64]
            ids = torch.tensor([enc[i] for i in chunk])
            for _ in range(max_new):
                nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], 1)
            for row, i in zip(ids.tolist(), chunk, strict=True):
                text = tok.decode(row[len(enc[i]):])
                cut = min([text.find(st) for st in stops if st in text] or [len(text)])
                out[i] = text[:cut]
    return [out[i] for i in range(len(prompts))]


def _train(corpus: Path, model: str, tokens: int, out: Path, seed: int, lr: float,
           seq_len: int, overrides: dict) -> tuple[Path, dict]:
    cfg = TrainConfig.of_model(model, str(corpus), seed=seed, train_tokens=tokens,
                               seq_len=seq_len, micro_batch=16, lr=lr, keep_fractions=(),
                               model_overrides=overrides)
    res = Trainer(cfg, out / f"{model}-s{seed}-{cfg.fingerprint()}", progress=False).run()
    return list_checkpoints(res.out / "checkpoints")[-1][1], res.summary


def _items(corpus: Path, task: str, limit: int) -> list[dict]:
    lines = CorpusFiles(corpus).eval_items(task).read_text().splitlines()
    return [json.loads(x) for x in lines[:limit]]


def memorization(args: argparse.Namespace) -> list[dict]:
    rows = []
    for n_people in args.people:
        cfg = CorpusConfig(seed=0, train_tokens=args.tokens, val_tokens=20_000,
                           w_knowledge=1.0, w_scripts=0.0, w_arithmetic=0.0,
                           knowledge=KnowledgeConfig(n_people=n_people, style="records"),
                           n_eval_knowledge=args.limit, n_eval_arithmetic=10)
        corpus = ensure_corpus(cfg)
        meta = read_corpus_meta(corpus)
        bits_per_fact = meta["stats"]["knowledge_bits"] / meta["stats"]["knowledge_facts"]
        items = _items(corpus, "triviaqa_proxy", args.limit)
        for model in args.models:
            t0 = time.time()
            ckpt, summary = _train(corpus, model, args.tokens, args.out, 0, args.lr,
                                   args.seq_len, {})
            net, mcfg = load_checkpoint(ckpt)
            tok = load_tokenizer(ckpt)
            got = greedy(net, tok, [it["prompt"] for it in items], 4, (" |", "\n", "<|"))
            acc = sum(g.strip() == it["target"] for g, it in zip(got, items, strict=True))
            acc /= len(items)
            pc = count_params(mcfg)
            facts = meta["stats"]["knowledge_facts"]
            stored = acc * facts * bits_per_fact
            rows.append({"n_people": n_people, "facts": facts, "model": model,
                         "total_params": pc.total, "active_params": pc.active,
                         "exposures_per_fact": meta["stats"]["fact_exposures"]["mean"],
                         "acc": acc, "bits_stored": stored,
                         "bits_per_param": stored / pc.total,
                         "train_ce": summary["final_train_ce"], "wall_s": time.time() - t0,
                         "tok_s": summary["median_tokens_per_s"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def reasoning(args: argparse.Namespace) -> list[dict]:
    rows = []
    for steps in args.steps:
        lo, hi = steps
        cfg = CorpusConfig(seed=0, train_tokens=args.tokens, val_tokens=20_000,
                           w_knowledge=0.0, w_scripts=0.0, w_arithmetic=1.0,
                           arithmetic=ArithmeticConfig(min_steps=lo, max_steps=hi,
                                                       n_train_problems=args.pool),
                           n_eval_arithmetic=args.limit)
        corpus = ensure_corpus(cfg)
        meta = read_corpus_meta(corpus)
        items = _items(corpus, "gsm8k_proxy", args.limit)
        for model in args.models:
            t0 = time.time()
            ckpt, summary = _train(corpus, model, args.tokens, args.out, 0, args.lr,
                                   args.seq_len, {})
            net, _ = load_checkpoint(ckpt)
            tok = load_tokenizer(ckpt)
            got = greedy(net, tok, [it["prompt"] for it in items], args.max_new,
                         ("\n", "<|", "Question"))
            acc = sum(parse_final(g) == int(it["target"]) for g, it in zip(got, items,
                                                                            strict=True))
            sacc = sum(step_accuracy(g, it["steps"]) for g, it in zip(got, items, strict=True))
            rows.append({"steps": f"{lo}-{hi}", "pool": args.pool, "model": model,
                         "acc": acc / len(items), "step_acc": sacc / len(items),
                         "trivial": meta["stats"]["arithmetic_trivial_baselines"],
                         "train_ce": summary["final_train_ce"], "wall_s": time.time() - t0,
                         "tok_s": summary["median_tokens_per_s"], "example": got[0]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="probe", required=True)
    for name in ("memorization", "reasoning"):
        q = sub.add_parser(name)
        q.add_argument("--out", type=Path, required=True)
        q.add_argument("--tokens", type=int, default=3_000_000)
        q.add_argument("--models", nargs="+", default=["s-d64-E1-k1", "s-d64-E4-k1"])
        q.add_argument("--limit", type=int, default=400)
        q.add_argument("--lr", type=float, default=3e-3)
        q.add_argument("--seq-len", type=int, default=128)
    sub.choices["memorization"].add_argument("--people", type=int, nargs="+", default=[2000])
    r = sub.choices["reasoning"]
    r.add_argument("--steps", type=lambda s: tuple(map(int, s.split("-"))), nargs="+",
                   default=[(1, 2)])
    r.add_argument("--pool", type=int, default=0)
    r.add_argument("--max-new", type=int, default=40)
    args = p.parse_args()
    rows = memorization(args) if args.probe == "memorization" else reasoning(args)
    write_json(args.out / f"{args.probe}-{int(time.time())}.json", rows)
    for r in rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
               if k != "example"})


if __name__ == "__main__":
    main()
