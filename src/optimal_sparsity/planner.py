"""Sparsity planner: the paper's practical advice on top of exact accounting.

Given a token budget and an active-parameter or compute budget, list (d, E, k)
candidates with their total/active parameters, TPP and active FLOPs, and mark the
paper's recommendation:

* reasoning: TPP near 20 (within a factor of 2: 10..40, else the closest) and, among
  those, the largest k the budget allows (Active-FLOPs principle), then the TPP
  closest to 20;
* memorization: as many total parameters as the memory cap allows (lowest TPP), then
  the most active parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from optimal_sparsity.accounting import count_params, matmul_flops_per_token
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import paper_config

Goal = Literal["reasoning", "memorization"]
WIDTHS = (256, 512, 768, 1024, 1536, 2048, 3072, 4096)
EXPERTS = (8, 16, 32, 64, 128, 256)
TOPK = (1, 2, 4, 8, 16)
TPP_TARGET = 20.0
TPP_BAND = 2.0  # reasoning: accept TPP within a factor of 2 of the target


@dataclass(frozen=True)
class Candidate:
    d: int
    E: int
    k: int
    total_params: int
    active_params: int
    tpp: float
    train_flops_per_token: float
    train_flops: float
    recommended: bool = False

    @property
    def name(self) -> str:
        return f"d{self.d}-E{self.E}-k{self.k}"


def candidates(tokens: float, *, active_params: float | None = None,
               flops_budget: float | None = None, max_total_params: float | None = None,
               n_layers: int = 16, vocab_size: int = 99_584, seq_len: int = 4096,
               widths: tuple[int, ...] = WIDTHS, experts: tuple[int, ...] = EXPERTS,
               topk: tuple[int, ...] = TOPK) -> list[Candidate]:
    if not tokens > 0:
        raise UserError(f"--tokens must be > 0 (got {tokens})")
    if (active_params is None) == (flops_budget is None):
        raise UserError("give exactly one of --active-params or --flops-budget")
    for label, v in (("--active-params", active_params), ("--flops-budget", flops_budget),
                     ("--max-total-params", max_total_params)):
        if v is not None and not v > 0:
            raise UserError(f"{label} must be > 0 (got {v})")
    out = []
    for d in widths:
        for e in experts:
            for k in topk:
                if k > e:
                    continue
                cfg = paper_config(d, e, k, n_layers=n_layers, vocab_size=vocab_size,
                                   max_seq_len=seq_len, n_heads=max(1, d // 128))
                pc = count_params(cfg)
                fpt = matmul_flops_per_token(cfg, seq_len)
                if active_params is not None and pc.active > active_params:
                    continue
                if flops_budget is not None and fpt * tokens > flops_budget:
                    continue
                if max_total_params is not None and pc.total > max_total_params:
                    continue
                out.append(Candidate(d, e, k, pc.total, pc.active, tokens / pc.total, fpt,
                                     fpt * tokens))
    return out


def recommend(cands: list[Candidate], goal: Goal) -> Candidate | None:
    if not cands:
        return None
    if goal == "memorization":
        return max(cands, key=lambda c: (c.total_params, c.active_params, c.k))
    if goal != "reasoning":
        raise UserError(f"unknown goal {goal!r}: reasoning or memorization")

    def dist(c: Candidate) -> float:
        return abs(math.log(c.tpp / TPP_TARGET))

    band = [c for c in cands if dist(c) <= math.log(TPP_BAND)]
    if not band:
        return min(cands, key=lambda c: (dist(c), -c.k))
    return max(band, key=lambda c: (c.k, -dist(c), c.active_params))


def plan(tokens: float, goal: Goal, **budget) -> list[Candidate]:
    """Candidates sorted by TPP, the recommended one marked."""
    cands = candidates(tokens, **budget)
    if not cands:
        raise UserError("no (d, E, k) fits the budget; raise it or lower the width range")
    best = recommend(cands, goal)
    marked = [Candidate(**{**c.__dict__, "recommended": c == best}) for c in cands]
    return sorted(marked, key=lambda c: (c.tpp, c.d, c.E, c.k))
