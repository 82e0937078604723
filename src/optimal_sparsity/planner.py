"""Sparsity planner: the paper's two principles on top of exact accounting.

Given a token budget and an active-parameter or compute budget, list (d, E, k)
candidates with their total/active parameters, TPP and active FLOPs, and mark the
recommendation:

* reasoning (Active-FLOPs principle, then TPP): among the candidates whose TPP lies
  within a factor of 2 of 20 (10..40; if none does, the closest TPP), the most
  active FLOPs per token the budget allows, then the TPP closest to 20. FLOPs within
  ``FLOPS_TIE`` of the best count as equal: E changes only the router's FLOPs.
* memorization (TPP principle): the most total parameters the memory cap allows
  (lowest TPP), then the most active FLOPs per token.

k = 1 candidates are left out unless asked for (``allow_k1``): see
``config.K1_ROUTER_NOTE``. Every recommendation comes with a one-line reason, the
runner-up, and the evidence it rests on (the paper's scale, and the pinned verdicts
of the scaled-down study where they exist).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from optimal_sparsity.accounting import count_params, matmul_flops_per_token
from optimal_sparsity.config import K1_ROUTER_NOTE
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import PAPER_TOKENS, GridPoint, paper_config

Goal = Literal["reasoning", "memorization"]
WIDTHS = (256, 512, 768, 1024, 1536, 2048, 3072, 4096)
EXPERTS = (8, 16, 32, 64, 128, 256)
TOPK = (1, 2, 4, 8, 16)
TPP_TARGET = 20.0
TPP_BAND = 2.0  # reasoning: accept TPP within a factor of 2 of the target
FLOPS_TIE = 0.05  # active FLOPs per token within 5% of the best count as equal

# The range the paper measured (docs/paper.md: 125B tokens, d 512-2048, E 8-256, k 2-16,
# TPP 2.4-390). Outside it the planner extrapolates and says so.
PAPER_RANGE = {"d": (512, 2048), "E": (8, 256), "k": (2, 16), "tpp": (2.4, 390.0)}

# The scaled-down study's claims that bear on each goal (ids in claims/registry.py).
EVIDENCE_CLAIMS: dict[str, tuple[str, ...]] = {
    "reasoning": ("C4.reasoning-denser-better", "C7.reasoning-tpp-peak",
                  "C7.larger-k-better"),
    "memorization": ("C5.memorization-sparser", "C7.memorization-tpp"),
}
PAPER_EVIDENCE: dict[str, str] = {
    "reasoning": "reasoning accuracy peaks near TPP 20 and falls on both sides, and at equal "
                 "loss or TPP more active FLOPs (larger k) reason better (Figs 4, 5, 7)",
    "memorization": "memorization keeps improving as total parameters grow at fixed active "
                    "parameters (lower TPP) (Figs 5, 7)",
}


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
        return GridPoint(self.d, self.E, self.k).short


@dataclass(frozen=True)
class Plan:
    """The candidates (sorted by TPP, the pick marked) and why the pick was made."""

    goal: Goal
    tokens: float
    candidates: list[Candidate]
    best: Candidate
    runner_up: Candidate | None
    reason: str
    extrapolation: list[str]

    def evidence(self, scaled_verdicts: dict[str, dict] | None = None) -> list[str]:
        """The paper's evidence, then the scaled-down study's pinned verdicts (if any)."""
        out = [f"paper (125B tokens, d 512-2048, E 8-256, k 2-16): {PAPER_EVIDENCE[self.goal]}"]
        if self.extrapolation:
            out.append("extrapolates beyond the paper's range: " + "; ".join(self.extrapolation))
        if scaled_verdicts:
            for cid in EVIDENCE_CLAIMS[self.goal]:
                v = scaled_verdicts.get(cid)
                if v:
                    out.append(f"scaled-down study (pinned full scale, CPU): {cid} "
                               f"{v.get('status')}: {v.get('statistic', '')}")
        return out


def candidates(tokens: float, *, active_params: float | None = None,
               flops_budget: float | None = None, max_total_params: float | None = None,
               n_layers: int = 16, vocab_size: int = 99_584, seq_len: int = 4096,
               widths: tuple[int, ...] = WIDTHS, experts: tuple[int, ...] = EXPERTS,
               topk: tuple[int, ...] = TOPK, allow_k1: bool = False) -> list[Candidate]:
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
                if k > e or (k == 1 and not allow_k1):
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


def _tpp_distance(c: Candidate) -> float:
    return abs(math.log(c.tpp / TPP_TARGET))


def ranked(cands: list[Candidate], goal: Goal) -> list[Candidate]:
    """Candidates best first under the goal's rule (module docstring)."""
    if goal == "memorization":
        return sorted(cands, key=lambda c: (-c.total_params, -c.train_flops_per_token,
                                            c.name))
    if goal != "reasoning":
        raise UserError(f"unknown goal {goal!r}: reasoning or memorization")
    band = [c for c in cands if _tpp_distance(c) <= math.log(TPP_BAND)]
    if not band:
        nearest = min(_tpp_distance(c) for c in cands)
        band = [c for c in cands if _tpp_distance(c) <= nearest + 1e-12]
    rest = [c for c in cands if c not in band]
    out: list[Candidate] = []
    while band:
        top = max(c.train_flops_per_token for c in band)
        tier = [c for c in band if c.train_flops_per_token >= (1 - FLOPS_TIE) * top]
        out += sorted(tier, key=lambda c: (_tpp_distance(c), c.name))
        band = [c for c in band if c not in tier]
    return out + sorted(rest, key=lambda c: (_tpp_distance(c), -c.train_flops_per_token))


def recommend(cands: list[Candidate], goal: Goal) -> Candidate | None:
    return ranked(cands, goal)[0] if cands else None


def _reason(best: Candidate, runner: Candidate | None, goal: Goal) -> str:
    if goal == "memorization":
        why = (f"{best.name}: the most total parameters the budget allows "
               f"({best.total_params / 1e9:.3g}B, TPP {best.tpp:.3g}), then the most active FLOPs")
    else:
        in_band = _tpp_distance(best) <= math.log(TPP_BAND)
        where = ("within the TPP band 10-40" if in_band
                 else "no candidate has TPP within 10-40, so the closest TPP")
        why = (f"{best.name}: {where}, the most active FLOPs per token the budget allows "
               f"({best.train_flops_per_token / 3:.3g} forward), then TPP closest to 20 "
               f"({best.tpp:.3g})")
    if runner is None:
        return why + "; the only candidate"
    return (why + f"; runner-up {runner.name} (TPP {runner.tpp:.3g}, "
            f"{runner.train_flops_per_token / 3:.3g} FLOPs/token, "
            f"{runner.total_params / 1e9:.3g}B total)")


def extrapolation(c: Candidate, tokens: float) -> list[str]:
    """Where a candidate or the token budget lies outside what the paper measured."""
    out = []
    if not 0.5 <= tokens / PAPER_TOKENS <= 2.0:
        out.append(f"{tokens:.3g} tokens against the paper's {PAPER_TOKENS:.3g}")
    for label, value in (("d", c.d), ("E", c.E), ("k", c.k), ("tpp", c.tpp)):
        lo, hi = PAPER_RANGE[label]
        if not lo <= value <= hi:
            out.append(f"{label.upper() if label == 'tpp' else label} = {value:.3g} "
                       f"outside {lo:g}-{hi:g}")
    if c.k == 1:
        out.append(K1_ROUTER_NOTE)
    return out


def plan(tokens: float, goal: Goal, **budget) -> Plan:
    """Candidates sorted by TPP, the recommended one marked, with the reason."""
    cands = candidates(tokens, **budget)
    if not cands:
        raise UserError("no (d, E, k) fits the budget; raise it or lower the width range")
    order = ranked(cands, goal)
    best, runner = order[0], (order[1] if len(order) > 1 else None)
    marked = [replace(c, recommended=c == best) for c in cands]
    return Plan(goal=goal, tokens=tokens,
                candidates=sorted(marked, key=lambda c: (c.tpp, c.d, c.E, c.k)),
                best=replace(best, recommended=True), runner_up=runner,
                reason=_reason(best, runner, goal), extrapolation=extrapolation(best, tokens))
