"""A synthetic results table at tiny scale (no training): every tier every figure reads."""

from __future__ import annotations

import math

import numpy as np

from optimal_sparsity.accounting import count_params
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.results.table import Row

# Two active-parameter families, as small as the tiny and smoke designs: three points each.
FAMILIES = {(32, 1): (1, 2, 4), (32, 2): (2, 4, 8)}
POSTTRAIN = (32, 1)
TOKENS = 48_000


def synthetic_rows(acc: float | None = None, seed: int = 0) -> list[Row]:
    """Rows for final and half-way checkpoints of every point; ``acc`` fixes every accuracy
    (e.g. 0.0: a scale at which nothing is answered), else they vary with the point."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for (d, k), experts in FAMILIES.items():
        for e in experts:
            pc = count_params(scaled_config(d, e, k, n_layers=2))
            for step, frac in ((50, 0.5), (100, 1.0)):
                tokens = int(TOKENS * frac)
                loss = 5.0 - 0.05 * math.log(pc.total) - 0.2 * frac + rng.normal(0, 0.002)

                def a(base: float, e: int = e) -> float:
                    return acc if acc is not None else float(np.clip(
                        base + 0.05 * math.log2(e) + rng.normal(0, 0.01), 0, 1))

                ident = dict(run=f"r-{d}-{e}-{k}", model=f"s-d{d}-E{e}-k{k}", step=step,
                             seed=0, tokens=tokens, d=d, E=e, k=k, n_layers=2,
                             total_params=pc.total, active_params=pc.active,
                             tpp=tokens / pc.total, n=100)
                vals = {("pretrain", "train_loss"): loss, ("pretrain", "val_loss"): loss + 0.01,
                        ("triviaqa_proxy", "acc"): a(0.3), ("hellaswag_proxy", "acc_norm"): a(0.4),
                        ("gsm8k_proxy", "acc"): a(0.1), ("gsmplus_proxy", "acc"): a(0.05)}
                for task in ("triviaqa_proxy", "hellaswag_proxy", "gsm8k_proxy", "gsmplus_proxy"):
                    vals[(task, "task_loss")] = 2 * loss + rng.normal(0, 0.01)
                if frac == 1.0 and (d, k) == POSTTRAIN:
                    for n in (1, 2, 4):
                        vals[("gsm8k_proxy_sc", f"maj@{n}")] = a(0.1 + 0.02 * n)
                        vals[("gsm8k_proxy_sc", f"cov@{n}")] = a(0.15 + 0.05 * n)
                    for task in ("gsm8k_proxy_grpo", "gsm8k_proxy_grpo_plus"):
                        vals[(task, "acc_before")] = a(0.1)
                        vals[(task, "acc_after")] = a(0.15)
                    for shots in (0, 1, 2, 3):
                        vals[("gsm8k_proxy_fewshot", f"acc@{shots}shot")] = a(0.1 + 0.03 * shots)
                rows += [Row(task=t, metric=m, value=float(v), **ident)
                         for (t, m), v in vals.items()]
    return rows
