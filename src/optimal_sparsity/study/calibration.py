"""How often each predicate errs, measured on synthetic results from the design's own noise.

A synthetic study has the grid, seeds, checkpoints and post-training points of a scale's
design (``study.design``); every metric sits at its pinned grand mean, with Gaussian seed
noise of the metric's pooled seed sd in the pinned references (binomial noise at the
design's evaluation size for one-seed metrics). Checkpoints of one run share half of their
noise variance (correlation 0.5, an assumption: the pins hold no intermediate values) and
the train loss falls with steps. Each claim declares the structure it asserts (``PLANTS``):
under the *null* the claim is false at its boundary (no effect; for a margin claim, an
effect at the margin), under the *effect* it holds at ``size`` seed sds per sd of its
covariate. ``calibrate`` runs the claim's predicate on ``draws`` such studies of each kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimal_sparsity.accounting import count_params
from optimal_sparsity.claims import stats
from optimal_sparsity.claims.registry import (
    CLAIMS,
    FEWSHOT_STABLE_SD,
    ONE_CURVE_MARGIN,
    ClaimData,
)
from optimal_sparsity.claims.stats import STATUSES
from optimal_sparsity.claims.verdicts import Verdict, undecided
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.references import pooled_seed_noise, pooled_seed_sd
from optimal_sparsity.results.points import Point
from optimal_sparsity.results.tasks import PROXY_TASKS
from optimal_sparsity.study.design import StudyDesign, get_design

T = PROXY_TASKS
MEM_ACC, MEM_LOSS = T.memorization_acc, T.memorization_loss
REA_ACC, REA_LOSS = T.reasoning_acc, T.reasoning_loss
RHO_CHECKPOINTS = 0.5  # noise correlation of one run's checkpoints (assumed)
CALIBRATION_B = 400  # bootstrap draws per predicate while calibrating
DEFAULT_SIZE = 3.0


@dataclass
class Covariates:
    """Standardised covariates of one grid point (over the design's grid)."""

    u: float  # log total params
    dens: float  # log2 density
    logk: float  # log2 k
    family_rank: int  # 0: smallest active budget
    n_families: int
    E_rank: float  # 0: fewest experts in its family .. 1: most
    fam_u: float = 0.0  # mean u of its family


Effect = Callable[[Covariates, float], float]  # (covariates, size) -> shift in noise sds


@dataclass
class Plant:
    """A claim's structure: metric -> shift, the train loss's structure, and fixed per-draw
    shot effects for few-shot metrics (sd ``shot_sd``)."""

    # an Effect, or ("abs", v): v accuracy per doubling of density, in absolute units
    effects: dict[tuple[str, str], Effect | tuple[str, float]] = field(default_factory=dict)
    loss_varies: bool = True  # train loss falls with total params (x for Figs 2-4)
    shot_sd: float = 0.0
    checkpoints: bool = False


def _u2(c: Covariates, s: float) -> float:
    return s * (c.u ** 2 - 1)


def _plants(size_null: bool) -> dict[str, Plant]:
    """The claimed structure of every claim; ``size_null``: the null variant."""
    z = 0.0 if size_null else 1.0

    def lin(attr: str, sign: float) -> Effect:
        return lambda c, s: sign * z * s * getattr(c, attr)

    def quad(sign: float) -> Effect:  # an inverted U (sign -1) or a U in log params
        return lambda c, s: sign * _u2(c, s)

    out = {
        "C1.loss-vs-params": Plant({T.train_loss: lin("u", -1), T.val_loss: lin("u", -1)},
                                   loss_varies=False),
        "C1.hellaswag-taskloss": Plant({MEM_LOSS[1]: lin("u", -1)}),
        "C1.gsm8k-taskloss-threshold": Plant({REA_LOSS[0]: quad(z)}),
        "C2.memorization-monotone": Plant({m: lin("u", -1) for m in MEM_LOSS}),
        "C2.reasoning-u-shape": Plant({m: quad(z) for m in REA_LOSS}),
        # the U's vertex 0.3 sd of u below its family's middle for the smallest budget and
        # above it for the largest (more total params: lower train loss)
        "C2.turning-point-moves": Plant({REA_LOSS[0]: lambda c, s: abs(s) * (c.u - c.fam_u - (
            2 * c.family_rank / max(c.n_families - 1, 1) - 1) * 0.3 * z * np.sign(s)) ** 2}),
        "C3.memorization-accuracy": Plant({m: lin("u", 1) for m in MEM_ACC}),
        "C3.gsm8k-nonmonotone": Plant({REA_ACC[0]: quad(-z)}),
        "C4.reasoning-denser-better": Plant({m: lin("dens", 1) for m in REA_ACC},
                                            checkpoints=True),
        "C5.memorization-sparser": Plant({m: lin("dens", -1) for m in MEM_ACC}),
        "C5.reasoning-small-active-sparser": Plant({REA_ACC[0]: lambda c, s: -z * s * c.dens
                                                    * (c.family_rank == 0)}),
        "C5.reasoning-optimum-moves-dense": Plant({REA_ACC[0]: lambda c, s: z * s * c.dens * (
            1 if c.family_rank == c.n_families - 1 else -1 if c.family_rank == 0 else 0)}),
        "C6.ttc-raises-accuracy": Plant({(T.sc_task, "maj@N"): lambda c, s: z * s}),
        "C6.grpo-raises-accuracy": Plant({(T.grpo_task, "acc_after"): lambda c, s: z * s}),
        "C6.trend-survives": Plant({REA_ACC[0]: quad(-1), (T.sc_task, "maj@N"): quad(-z),
                                    (T.grpo_task, "acc_after"): quad(-z),
                                    (T.grpo_task, "acc_before"): quad(-1)}),
        "C7.memorization-tpp": Plant({m: lin("u", 1) for m in MEM_ACC}),
        "C7.reasoning-tpp-peak": Plant({m: quad(-z) for m in REA_ACC}),
        "C7.tpp-optimum-near-20": Plant({REA_ACC[0]: quad(-z)}),
        "C7.larger-k-better": Plant({m: lin("logk", 1) for m in REA_ACC}),
        "C8.code-optimum-dense": Plant(),
        "C10.grpo-either-set": Plant({(t, "acc_after"): quad(-z)
                                      for t in (T.grpo_task, T.grpo_second_task)}),
        "C11.fewshot-unstable": Plant({(T.fewshot_task, "drop"): lambda c, s: -z * s * (
            c.E_rank <= 0.5)}, shot_sd=(3 - 2 * size_null) * FEWSHOT_STABLE_SD),
    }
    # The one-curve claim: the null is a density effect on memorization at the margin (and
    # no contrast); the claimed world has none on memorization and one on reasoning.
    margin = ONE_CURVE_MARGIN
    if size_null:
        out["C4.memorization-one-curve"] = Plant(
            {m: ("abs", margin) for m in (*MEM_ACC, REA_ACC[0])}, checkpoints=True)
    else:
        out["C4.memorization-one-curve"] = Plant({REA_ACC[0]: lin("dens", 1)},
                                                 checkpoints=True)
    return out


@dataclass
class NoiseModel:
    design: StudyDesign
    level: dict[tuple[str, str], float]
    sd: dict[tuple[str, str], float]
    eval_n: dict[str, int]
    scale: float = 1.0  # multiplies every noise sd (known-answer tables use less noise)
    # the predicates' noise prior, as the pipeline gives it (the full-scale pin)
    prior: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def of_scale(cls, scale: str, noise_scale: float = 1.0,
                 reference: dict | None = None) -> NoiseModel:
        """The noise of ``scale``'s design: metric levels and seed sd from its pin (else the
        full-scale pin of the current design), or from ``reference``, a pin given instead
        (levels, seed sd and, for a one-seed design, the prior)."""
        design = get_design(scale)
        if reference is not None:
            full = ref = reference
            prior_src = pooled_seed_noise(reference) if design.noise_from else {}
        else:
            full = get_design("full").pin()
            ref = design.pin() or full
            prior_src = design.noise_prior()
        if ref is None:
            raise UserError("calibration needs a pinned reference measured on the current "
                            "design (references/scaled/full.json or the scale's own)")
        sums: dict[tuple[str, str], list[float]] = {}
        for v in ref["values"]:
            sums.setdefault((v["task"], v["metric"]), []).append(v["value"])
        level = {m: float(np.mean(v)) for m, v in sums.items()}
        sd = pooled_seed_sd(ref) or {}
        for m, s in pooled_seed_sd(full).items():
            sd.setdefault(m, s)
        grpo = dict(design.eval.grpo_overrides).get("eval_n", 200)
        ev = design.eval
        n_eval = {T.sc_task: ev.sc_problems, T.grpo_task: grpo, T.grpo_second_task: grpo,
                  T.fewshot_task: ev.fewshot_limit, "": ev.limit or 300}
        prior = {m: (s * noise_scale, df) for m, (s, df) in prior_src.items()}
        return cls(design, level, sd, n_eval, noise_scale, prior)

    def unit(self, m: tuple[str, str]) -> float:
        """The metric's seed sd at the design's noise (one-seed metrics: the evaluation's
        binomial error): the unit of planted effects."""
        if m in self.sd and self.sd[m] > 0:
            return self.sd[m]
        return self.eval_unit(m)

    def eval_unit(self, m: tuple[str, str]) -> float:
        p = min(max(self.level.get(m, 0.5), 0.05), 0.95)
        return math.sqrt(p * (1 - p) / self.eval_n.get(m[0], self.eval_n[""]))

    def sigma(self, m: tuple[str, str]) -> float:
        """The noise sd of the synthetic values (``scale`` x the unit)."""
        return self.scale * self.unit(m)

    def eval_se(self, m: tuple[str, str]) -> float:
        return self.scale * self.eval_unit(m)


_COVARIATES: dict[str, dict] = {}


def _covariates(design: StudyDesign) -> dict[tuple[int, int, int, int], tuple[Covariates, Any]]:
    if design.scale not in _COVARIATES:
        _COVARIATES[design.scale] = _covariates_of(design)
    return _COVARIATES[design.scale]


def _covariates_of(design: StudyDesign) -> dict:
    vocab = design.corpus.vocab_size
    pcs = {g: count_params(scaled_config(g.d, g.E, g.k, n_layers=g.n_layers, vocab_size=vocab))
           for g in design.points}
    lp = np.array([math.log(pcs[g].total) for g in design.points])
    ld = np.array([math.log2(g.k / g.E) for g in design.points])
    lk = np.array([math.log2(g.k) for g in design.points])

    def std(a: np.ndarray, v: float) -> float:
        return float((v - a.mean()) / (a.std() or 1.0))

    fams = sorted({(pcs[g].active, g.family) for g in design.points})
    rank = {f: i for i, (_, f) in enumerate(fams)}
    out = {}
    for i, g in enumerate(design.points):
        es = sorted(h.E for h in design.points if h.family == g.family)
        fam_u = np.mean([std(lp, lp[j]) for j, h in enumerate(design.points)
                         if h.family == g.family])
        out[(g.d, g.E, g.k, g.n_layers)] = (Covariates(
            std(lp, lp[i]), std(ld, ld[i]), std(lk, lk[i]), rank[g.family], len(fams),
            es.index(g.E) / max(len(es) - 1, 1), float(fam_u)), pcs[g])
    return out


class Exact:
    """A stand-in generator for known-answer tables: seed deviations are fixed and average
    to zero over a point's seeds (sample sd 1), so every point mean is exactly the planted
    value while the seed spread stays that of the noise model."""

    def __init__(self, n_seeds: int) -> None:
        self.n, self.i = n_seeds, 0

    def standard_normal(self) -> float:
        dev = np.arange(self.n) - (self.n - 1) / 2
        dev = dev / (dev.std(ddof=1) if self.n > 1 else 1.0)
        out = float(dev[self.i % self.n]) if self.n > 1 else 0.0
        self.i += 1
        return out


def simulate(noise: NoiseModel, plant: Plant, size: float,
             rng: np.random.Generator | None) -> ClaimData:
    """One synthetic study (final points and, if the claim reads them, checkpoints);
    ``rng`` None: the exact table (``Exact``) with no realised noise."""
    exact = rng is None
    design = noise.design
    cov = _covariates(design)
    tokens = design.corpus.train_tokens
    nmax = 2 ** design.eval.sc_max_power
    core = [T.train_loss, T.val_loss, *MEM_ACC, *MEM_LOSS, *REA_ACC, *REA_LOSS]
    finals, checkpoints = [], []
    shot_fx = {}
    for g in design.points:
        c, pc = cov[(g.d, g.E, g.k, g.n_layers)]
        p = Point(g.d, g.E, g.k, g.n_layers, pc.total, pc.active, tokens, 1000)

        def mean_of(m: tuple[str, str], g=g, c=c) -> float:
            return _mean(noise, plant, g, c, m, size)

        seeds = design.seeds_of(g)  # replicated anchors have more
        point_rng = Exact(len(seeds)) if exact else rng
        for m in core:
            sd = noise.sigma(m)
            vals = []
            for seed in seeds:
                run = f"{g.label}-{seed}"
                e_run = point_rng.standard_normal()
                vals.append(mean_of(m) + sd * e_run)
                if plant.checkpoints and m in (T.train_loss, *MEM_ACC, *REA_ACC):
                    for f in (*design.intermediate_fractions, 1.0):
                        ck = _checkpoint(checkpoints, p, run, f, seed)
                        e = e_run if f == 1.0 or exact else RHO_CHECKPOINTS ** 0.5 * e_run \
                            + (1 - RHO_CHECKPOINTS) ** 0.5 * point_rng.standard_normal()
                        shift = -0.1 * math.log(f) if m == T.train_loss else 0.0
                        ck.values[m] = [mean_of(m) + shift + sd * e]
                        if m != T.train_loss:
                            ck.eval_se[m] = noise.eval_se(m)
            p.values[m] = vals
            if "acc" in m[1]:
                p.eval_se[m] = noise.eval_se(m)
        if g in design.posttrain_points:
            _posttrain(p, g, noise, plant, size, None if exact else rng, nmax, shot_fx)
        finals.append(p)
    return ClaimData.of_points(finals, checkpoints if plant.checkpoints else None, T,
                               noise.prior)


def _mean(noise: NoiseModel, plant: Plant, g: Any, c: Covariates, m: tuple[str, str],
          size: float) -> float:
    """A final metric's expected value at one grid point under the plant."""
    base = noise.level.get(m, 0.5)
    if m in (T.train_loss, T.val_loss) and plant.loss_varies:
        base -= 2 * noise.unit(T.train_loss) * c.u
    fx = plant.effects.get(m)
    if fx is None:
        return base
    if isinstance(fx, tuple):  # ("abs", accuracy per doubling of density)
        return base + fx[1] * math.log2(g.k / g.E)
    return base + fx(c, size) * noise.unit(m)


def _checkpoint(out: list[Point], p: Point, run: str, frac: float, seed: int) -> Point:
    step = int(1000 * frac)
    for ck in out:
        if ck.run == run and ck.step == step:
            return ck
    ck = Point(p.d, p.E, p.k, p.n_layers, p.total_params, p.active_params,
               int(p.tokens * frac), step, (seed,), run=run)
    out.append(ck)
    return ck


def _posttrain(p: Point, g: Any, noise: NoiseModel, plant: Plant, size: float,
               rng: np.random.Generator | None, nmax: int, shot_fx: dict) -> None:
    """Self-consistency, GRPO and few-shot values of a post-trained point (its seeds)."""
    design = noise.design
    seeds = design.posttrain_seed_list
    exact = rng is None
    rng = rng or Exact(len(seeds))

    def put(m: tuple[str, str], mu: float) -> None:
        se = noise.eval_se(m)
        p.values[m] = [mu + noise.sigma(m) * rng.standard_normal() for _ in seeds]
        p.eval_se[m] = se

    base_sc = noise.level.get((T.sc_task, "maj@1"), 0.5)
    put((T.sc_task, "maj@1"), base_sc)
    fx = plant.effects.get((T.sc_task, "maj@N"))
    cov = _covariates(design)[(g.d, g.E, g.k, g.n_layers)][0]
    put((T.sc_task, f"maj@{nmax}"), base_sc + (fx(cov, size) * noise.eval_unit(
        (T.sc_task, "maj@1")) if fx else 0.0))
    if design.gets_grpo(g):
        for task in (T.grpo_task, T.grpo_second_task):
            base = noise.level.get((task, "acc_before"), 0.5)
            for when in ("acc_before", "acc_after"):
                fx = plant.effects.get((task, when))
                put((task, when), base + (fx(cov, size) * noise.eval_unit((task, when))
                                          if fx else 0.0))
    base = noise.level.get((T.fewshot_task, "acc@0shot"), 0.5)
    drop = plant.effects.get((T.fewshot_task, "drop"))
    for s in design.eval.fewshot_shots:
        m = (T.fewshot_task, f"acc@{s}shot")
        key = (g.E, s)
        if key not in shot_fx:  # exact: alternating +-shot_sd over shot counts
            shot_fx[key] = plant.shot_sd * ((-1) ** s if exact else rng.standard_normal())
        mu = base + shot_fx[key] + (drop(cov, size) * noise.eval_unit(m) if drop and s else 0.0)
        p.values[m] = [mu + noise.eval_se(m) * rng.standard_normal() for _ in seeds]
        p.eval_se[m] = noise.eval_se(m)


@dataclass(frozen=True)
class Rates:
    null: dict[str, float]
    effect: dict[str, float]


def calibrate(scale: str = "full", draws: int = 100, size: float = DEFAULT_SIZE,
              claims: tuple[str, ...] | None = None, seed: int = 0,
              reference: dict | None = None, every_claim: bool = False) -> dict[str, Rates]:
    """Per claim, the rate of each verdict under the null and under the claimed effect
    (``reference``: the pin whose noise to use, ``NoiseModel.of_scale``). Verdicts are
    reported as the pipeline reports them at this scale (its ``decides`` applied), or with
    ``every_claim`` as if it decided every claim: what its ``decides`` should hold."""
    noise = NoiseModel.of_scale(scale, reference=reference)
    worlds = {"null": _plants(True), "effect": _plants(False)}
    out = {}
    old_b = stats.B
    stats.B = CALIBRATION_B
    try:
        for i, c in enumerate(CLAIMS):
            if claims is not None and c.id not in claims:
                continue
            rates = {}
            for w, plants in worlds.items():
                counts = dict.fromkeys(STATUSES, 0)
                rng = np.random.default_rng([seed, i, w == "null"])
                decides = None if every_claim else noise.design.decides
                for _ in range(draws):
                    data = simulate(noise, plants[c.id], size, rng)
                    try:
                        v = c.check(data)
                    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
                        v = Verdict(stats.INCONCLUSIVE, "could not be computed")
                    if decides is not None and c.id not in decides:
                        v = undecided(v)  # as the pipeline reports it at this scale
                    counts[v.status] += 1
                rates[w] = {s: n / draws for s, n in counts.items()}
            out[c.id] = Rates(rates["null"], rates["effect"])
    finally:
        stats.B = old_b
    return out


MAX_FALSE = 0.10  # a decided claim's false reproduced / not reproduced rate under the null
MIN_POWER = 0.80  # ... and its reproduced rate under the claimed effect


def decidable(rates: dict[str, Rates], max_false: float = MAX_FALSE,
              min_power: float = MIN_POWER) -> tuple[str, ...]:
    """The claims a scale decides (``StudyDesign.decides``), from its calibration as if it
    decided every claim: a wrong verdict under the null at most ``max_false`` of the time
    either way, and the claimed effect reproduced at least ``min_power`` of the time."""
    return tuple(cid for cid, r in rates.items()
                 if r.null[stats.REPRODUCED] <= max_false
                 and r.null[stats.NOT_REPRODUCED] <= max_false
                 and r.effect[stats.REPRODUCED] >= min_power)


def summary_line(rates: dict[str, Rates]) -> str:
    fr = max((r.null[stats.REPRODUCED] for r in rates.values()), default=0.0)
    fn = max((r.null[stats.NOT_REPRODUCED] for r in rates.values()), default=0.0)
    return (f"calibration: max false reproduced {fr:.2f}, max false not reproduced {fn:.2f} "
            f"over {len(rates)} claims")

