"""Every claim of docs/paper.md with an id, the paper's statement and a predicate.

A predicate reads per-grid-point values (``results.points``) and returns a ``Verdict``:
``reproduced``, ``not reproduced``, ``inconclusive`` (with the side its estimate leans to)
or ``not testable``, with the statistic and its 90% interval under seed noise. The rule
and the noise model are in ``claims.stats``, the shape tests (slope, extremum, effect) in
``claims.shapes``, how a claim's parts combine in ``claims.verdicts``. Memorization
tasks are the TriviaQA and HellaSwag proxies (or the real tasks in pull mode), reasoning
tasks the GSM8K and GSM-Plus proxies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from optimal_sparsity.claims import stats
from optimal_sparsity.claims.shapes import (
    batched_ols,
    effect_estimate,
    effect_test,
    extremum,
    family_name,
    family_slopes,
    fmt_exp,
    fmt_metric,
    log2_density,
    log_params,
    log_tpp,
    metric_series,
    need_metric,
    quadratic_test,
    resample_points,
    seed_of,
    slope,
    xvals,
)
from optimal_sparsity.claims.stats import (
    INCONCLUSIVE,
    LEANS_AGAINST,
    LEANS_FOR,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Estimate,
    Rule,
)
from optimal_sparsity.claims.verdicts import (
    Part,
    Test,
    Verdict,
    claim_verdict,
    missing,
    single,
)
from optimal_sparsity.results.points import Point, checkpoint_points, families, final_points, having
from optimal_sparsity.results.table import Row
from optimal_sparsity.results.tasks import PROXY_TASKS, Metric, TaskSet

# Equivalence margin of the "one curve" claim (Fig 4): accuracy change per doubling of
# density k/E at equal pre-training loss that still counts as "no effect".
ONE_CURVE_MARGIN = 0.02
# Few-shot instability (Fig 11): "unstable" means a between-shot accuracy sd (beyond the
# evaluation's noise) above this; below it counts as stable.
FEWSHOT_STABLE_SD = 0.02
PAPER_TPP_OPTIMUM = 20.0  # where the paper's reasoning peak sits (its data scale)


@dataclass
class ClaimData:
    """The points the predicates read. ``prior``: (seed sd, df) per metric from elsewhere
    (the full-scale pin), the noise of a metric no point here has replicated seeds of."""

    rows: list[Row]
    tasks: TaskSet = PROXY_TASKS
    source: str | None = None
    prior: dict[Metric, tuple[float, float]] = field(default_factory=dict)
    final: list[Point] = field(init=False)
    checkpoints: list[Point] = field(init=False)

    def __post_init__(self) -> None:
        self.final = final_points(self.rows, self.source)
        self.checkpoints = checkpoint_points(self.rows, self.source)
        self._attach_prior()

    def _attach_prior(self) -> None:
        for p in (*self.final, *self.checkpoints):
            p.prior = self.prior

    @classmethod
    def of_points(cls, final: list[Point], checkpoints: list[Point] | None = None,
                  tasks: TaskSet = PROXY_TASKS,
                  prior: dict[Metric, tuple[float, float]] | None = None) -> ClaimData:
        """Claim data from points already aggregated (a pinned reference, a simulation);
        without checkpoints, the final points stand for them."""
        data = cls([], tasks, prior=prior or {})
        data.final = final
        data.checkpoints = final if checkpoints is None else checkpoints
        data._attach_prior()
        return data


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    statement: str
    check: Callable[[ClaimData], Verdict]


# Claim predicates -------------------------------------------------------------------

def c1_loss(d: ClaimData) -> Verdict:
    t = d.tasks
    return claim_verdict([p for m in (t.train_loss, t.val_loss)
                          for p in family_slopes(d.final, log_params, m, -1, "log total params")])


def c1_hellaswag(d: ClaimData) -> Verdict:
    m = d.tasks.memorization_loss[1]
    return claim_verdict(family_slopes(d.final, log_params, m, -1, "log total params"))


def c1_gsm8k_threshold(d: ClaimData) -> Verdict:
    return extremum(d.final, log_params, d.tasks.reasoning_loss[0], "min", "log total params",
                    x_fmt=fmt_exp)


def c2_memorization(d: ClaimData) -> Verdict:
    t = d.tasks
    return claim_verdict([(m[0], slope(d.final, t.train_loss, m, 1, f"{fmt_metric(m)} vs "
                                       "train loss", within=True))
                          for m in t.memorization_loss])


def c2_reasoning_u(d: ClaimData) -> Verdict:
    t = d.tasks
    parts: list[tuple[str, Part]] = []
    for m in t.reasoning_loss:
        q = quadratic_test(d.final, t.train_loss, m, "min", "train loss", levels=None)
        parts += [(m[0], q)] if isinstance(q, Verdict) else q
    return claim_verdict(parts)


def c2_turning_point(d: ClaimData) -> Verdict:
    """The vertex of reasoning task loss vs train loss, largest minus smallest active budget
    (claimed < 0), each family's U located by its own quadratic."""
    t = d.tasks
    m = t.reasoning_loss[0]
    fams = sorted((f for f in families(having(d.final, m, t.train_loss)).values()
                   if len(f) >= 3), key=lambda f: f[0].active_params)
    if len(fams) < 2 or fams[0][0].active_params == fams[-1][0].active_params:
        return missing("needs >= 2 active-parameter families with >= 3 points")
    verts, lines = [], []
    for f in (fams[0], fams[-1]):
        q = quadratic_test(f, t.train_loss, m, "min", "train loss", levels=None)
        if isinstance(q, Verdict):
            return q
        u = claim_verdict(q)
        det = q[0][1].details
        lines.append(f"{family_name(f)}: U {u.label}, minimum at {det['vertex']:.4g} "
                     f"[{det['vertex_lo']:.4g}, {det['vertex_hi']:.4g}]")
        if u.status != REPRODUCED:
            return Verdict(INCONCLUSIVE, "turning point not located in every family: "
                                         + "; ".join(lines), lean=u.lean or LEANS_AGAINST)
        pts = need_metric(f, t.train_loss, m)
        xr = xvals(pts, t.train_loss)
        mu, sd = xr.mean(), xr.std() or 1.0

        def vertex(y: np.ndarray, xx: np.ndarray, mu=mu, sd=sd) -> np.ndarray:
            z = (xx - mu) / sd
            c = batched_ols(np.stack([z * z, z, np.ones_like(z)], axis=-1), y)
            a = np.where(c[:, 0] > 1e-12, c[:, 0], np.nan)
            return -c[:, 1] / (2 * a) * sd + mu

        est = resample_points(vertex, pts, t.train_loss, m)
        if isinstance(est, str):
            return missing(est)
        verts.append(est)
    return single(Test(f"turning point (train loss) {'; '.join(lines)}; largest minus smallest "
                     "active budget", verts[1] - verts[0], Rule(-1)))


def c3_memorization(d: ClaimData) -> Verdict:
    t = d.tasks
    return claim_verdict([(m[0], slope(d.final, t.train_loss, m, -1, f"{fmt_metric(m)} vs "
                                       "train loss", within=True))
                          for m in t.memorization_acc])


def c3_gsm8k(d: ClaimData) -> Verdict:
    t = d.tasks
    return extremum(d.final, t.train_loss, t.reasoning_acc[0], "max", "train loss", levels=None)


def _density_effect(d: ClaimData, m: Metric) -> Estimate | str:
    return effect_estimate(d.checkpoints, d.tasks.train_loss, log2_density, m)


def c4_memorization(d: ClaimData) -> Verdict:
    """Equivalence (|density effect| < margin at equal train loss) for each memorization
    task, and the contrast: the reasoning effect exceeds the memorization effect."""
    t = d.tasks
    parts: list[tuple[str, Part]] = []
    for m in t.memorization_acc:
        parts.append((m[0], effect_test(
            d.checkpoints, t.train_loss, log2_density, m,
            f"effect of log2 density on {m[1]} at equal train loss",
            stats.equivalence(ONE_CURVE_MARGIN))))
    mem, rea = t.memorization_acc[0], t.reasoning_acc[0]
    both = having(d.checkpoints, mem, rea)
    em, er = (_density_effect(ClaimData.of_points(both, both, t, d.prior), m)
              for m in (mem, rea))
    if isinstance(em, str) or isinstance(er, str):
        parts.append(("contrast", missing(f"contrast: {em if isinstance(em, str) else er}")))
    else:
        parts.append(("contrast", Test(f"{rea[0]} minus {mem[0]} density effect", er - em,
                                       Rule(1))))
    return claim_verdict(parts)


def c4_reasoning(d: ClaimData) -> Verdict:
    t = d.tasks
    return claim_verdict([(m[0], effect_test(d.checkpoints, t.train_loss, log2_density, m,
                                             f"effect of log2 density on {m[1]} at equal "
                                             "train loss", Rule(1)))
                          for m in t.reasoning_acc])


def c5_memorization(d: ClaimData) -> Verdict:
    return claim_verdict([p for m in d.tasks.memorization_acc
                          for p in family_slopes(d.final, log2_density, m, -1, "log2 density")])


def _budget_families(d: ClaimData, m: Metric) -> list[list[Point]]:
    return sorted((f for f in families(having(d.final, m)).values() if len(f) >= 3),
                  key=lambda f: f[0].active_params)


def c5_small_active_sparser(d: ClaimData) -> Verdict:
    m = d.tasks.reasoning_acc[0]
    fams = _budget_families(d, m)
    if not fams:
        return missing("needs a family with >= 3 points")
    small = fams[0]
    what = (f"smallest active budget ({family_name(small)}, {small[0].active_params:,} "
            f"active): {fmt_metric(m)} vs log2 density")
    return single(slope(small, log2_density, m, -1, what))


def optimum_shift(d: ClaimData, m: Metric) -> Verdict:
    """The slope of m in log2 density, largest minus smallest active budget (claimed > 0:
    at larger budgets denser models gain), with each family's best density for reading."""
    fams = _budget_families(d, m)
    if len(fams) < 2 or fams[0][0].active_params == fams[-1][0].active_params:
        return missing("needs >= 2 active-parameter families with >= 3 points")
    ests = []
    for f in (fams[0], fams[-1]):
        est = resample_points(lambda y, xx: stats.slope_rows(xx, y), f, log2_density, m)
        if isinstance(est, str):
            return missing(est)
        ests.append(est)
    best = ", ".join(f"{family_name(f)}: k/E = {max(f, key=lambda p: p.mean(*m)).density:.3g}"
                     for f in fams)
    return single(Test(f"best density ({best}); slope of {fmt_metric(m)} in log2 density, "
                     "largest minus smallest budget", ests[1] - ests[0], Rule(1)))


def c5_optimum_moves_dense(d: ClaimData) -> Verdict:
    return optimum_shift(d, d.tasks.reasoning_acc[0])


def _max_n(points: list[Point], task: str) -> int:
    ns = [int(m.split("@")[1]) for p in points for (t, m) in p.values
          if t == task and m.startswith("maj@")]
    return max(ns) if ns else 0


def _mean_gain(points: list[Point], after: Metric, before: Metric, what: str) -> Part:
    pts = having(points, after, before)
    if not pts:
        return missing(f"no {after[0]} results")
    a, b = metric_series(pts, after), metric_series(pts, before)
    if isinstance(a, str) or isinstance(b, str):
        return missing(a if isinstance(a, str) else b)
    est = stats.bootstrap(lambda ya, yb: (ya - yb).mean(axis=1), [a, b], seed=seed_of(after))
    return Test(f"{what}, mean over {len(pts)} models", est, Rule(1))


def c6_ttc(d: ClaimData) -> Verdict:
    task = d.tasks.sc_task
    nmax = _max_n(d.final, task)
    if nmax < 2:
        return missing("no self-consistency results")
    return single(_mean_gain(d.final, (task, f"maj@{nmax}"), (task, "maj@1"),
                           f"maj@{nmax} - maj@1"))


def _grpo_gain(d: ClaimData, task: str) -> Part:
    return _mean_gain(d.final, (task, "acc_after"), (task, "acc_before"),
                      f"{task}: accuracy after - before GRPO")


def c6_grpo(d: ClaimData) -> Verdict:
    return single(_grpo_gain(d, d.tasks.grpo_task))


def c6_trend_survives(d: ClaimData) -> Verdict:
    t = d.tasks
    post = having(d.final, (t.grpo_task, "acc_after"))
    base = extremum(post, log_params, t.reasoning_acc[0], "max", "log total params",
                    x_fmt=fmt_exp)
    if base.status != REPRODUCED:
        return Verdict(base.status if base.status == NOT_TESTABLE else INCONCLUSIVE,
                       f"no non-monotone base trend in total params to survive "
                       f"({base.label}: {base.statistic})", base.details,
                       "" if base.status == NOT_TESTABLE else LEANS_AGAINST)
    nmax = _max_n(d.final, t.sc_task)
    parts: list[tuple[str, Part]] = []
    for name, m in (("self-consistency", (t.sc_task, f"maj@{nmax}")),
                    ("GRPO", (t.grpo_task, "acc_after"))):
        q = quadratic_test(d.final, log_params, m, "max", "log total params", x_fmt=fmt_exp)
        parts += [(name, q)] if isinstance(q, Verdict) else [(f"{name}, {n}", p) for n, p in q]
    return claim_verdict(parts)


def c7_memorization(d: ClaimData) -> Verdict:
    """All series pooled on one TPP axis, as Fig 7 draws them."""
    return claim_verdict([(m[0], slope(d.final, log_tpp, m, -1, f"{fmt_metric(m)} vs log TPP "
                                       "(all series)")) for m in d.tasks.memorization_acc])


def c7_peak(d: ClaimData) -> Verdict:
    parts: list[tuple[str, Part]] = []
    for m in d.tasks.reasoning_acc:
        q = quadratic_test(d.final, log_tpp, m, "max", "log TPP", x_fmt=fmt_exp)
        parts += [(m[0], q)] if isinstance(q, Verdict) else q
    return claim_verdict(parts)


def c7_near_20(d: ClaimData) -> Verdict:
    """Where our reasoning peak is (with its interval); "near 20" is the paper's number at its
    data scale, so it is judged only where the grid's TPP range reaches 20."""
    m = d.tasks.reasoning_acc[0]
    q = quadratic_test(d.final, log_tpp, m, "max", "log TPP", x_fmt=fmt_exp)
    if isinstance(q, Verdict):
        return q
    peak = claim_verdict(q)
    det = q[0][1].details
    lo_x, hi_x = (math.exp(v) for v in det["x_range"])
    v, vlo, vhi = (math.exp(det[k]) if math.isfinite(det[k]) else math.nan
                   for k in ("vertex", "vertex_lo", "vertex_hi"))
    where = f"peak at TPP {v:.3g} [{vlo:.3g}, {vhi:.3g}] (peak {peak.label}; data " \
            f"{lo_x:.3g}..{hi_x:.3g})"
    details = {**det, "peak_status": peak.status}
    if not lo_x < PAPER_TPP_OPTIMUM < hi_x:
        return Verdict(NOT_TESTABLE, f"the grid's TPP range {lo_x:.3g}..{hi_x:.3g} does not "
                                     f"reach the paper's ~{PAPER_TPP_OPTIMUM:g}; {where}", details)
    if peak.status != REPRODUCED:
        return Verdict(peak.status, f"no peak to locate: {where}", details, peak.lean)
    band = (PAPER_TPP_OPTIMUM / 2, PAPER_TPP_OPTIMUM * 2)
    if band[0] <= vlo and vhi <= band[1]:
        return Verdict(REPRODUCED, f"{where}, inside {band[0]:g}..{band[1]:g}", details)
    if vhi < band[0] or vlo > band[1]:
        return Verdict(NOT_REPRODUCED, f"{where}, outside {band[0]:g}..{band[1]:g}", details)
    lean = LEANS_FOR if band[0] <= v <= band[1] else LEANS_AGAINST
    return Verdict(INCONCLUSIVE, f"{where}, band {band[0]:g}..{band[1]:g}", details, lean)


def c7_larger_k(d: ClaimData) -> Verdict:
    return claim_verdict([(m[0], effect_test(d.final, log_tpp, lambda p: math.log2(p.k), m,
                                             f"effect of log2 k on {m[1]} at equal TPP",
                                             Rule(1), levels=lambda p: (p.d, p.n_layers)))
                          for m in d.tasks.reasoning_acc])


def c8_code(d: ClaimData) -> Verdict:
    if not d.tasks.code_tasks:
        return missing("the scaled-down study has no code corpus: Fig 8 needs the released "
                        "llm-jp/optimal-sparsity-code-* grid (pull mode)")
    if not having(d.final, d.tasks.code_tasks[0]):
        return missing("no code-model results (pull the code grid)")
    return claim_verdict([(m[0], optimum_shift(d, m)) for m in d.tasks.code_tasks])


def c10_grpo_sets(d: ClaimData) -> Verdict:
    """After GRPO on either prompt set, accuracy still declines at the largest total
    parameter counts (the slope at the high end of a quadratic in log params is < 0)."""
    parts: list[tuple[str, Part]] = []
    for name, task in (("set 1", d.tasks.grpo_task), ("set 2", d.tasks.grpo_second_task)):
        q = quadratic_test(d.final, log_params, (task, "acc_after"), "max", "log total params",
                           x_fmt=fmt_exp)
        parts.append((name, q if isinstance(q, Verdict) else q[1][1]))
    return claim_verdict(parts)


def _shots(metric: str) -> int:
    """The shot count of a few-shot metric name, ``acc@3shot`` -> 3."""
    return int(metric.split("@", 1)[1].removesuffix("shot"))


def _between_shot_sd(points: list[Point], task: str) -> Part:
    """The sd of accuracy across shot counts beyond evaluation noise (a random-effects
    tau, pooled over models), with its Q-profile interval; claimed > FEWSHOT_STABLE_SD."""
    ss, se2, df = 0.0, [], 0
    for p in points:
        ms = [mm for t, mm in p.values if t == task]
        accs = np.array([p.mean(task, mm) for mm in ms])
        ses = np.array([p.se(task, mm) for mm in ms])
        if len(ms) < 2 or not np.all(np.isfinite(ses)) or not np.all(ses > 0):
            return missing(f"{p.name}: needs >= 2 shot counts with an error estimate")
        ss += float(((accs - accs.mean()) ** 2).sum())
        se2 += list(ses ** 2)
        df += len(ms) - 1
    s2 = float(np.mean(se2))

    def bounds(level: float) -> tuple[float, float]:
        a = (1 - level) / 2
        lo = ss / stats.sps.chi2.ppf(1 - a, df) - s2
        hi = ss / stats.sps.chi2.ppf(a, df) - s2
        return math.sqrt(max(lo, 0.0)), math.sqrt(max(hi, 0.0))

    tau = math.sqrt(max(ss / df - s2, 0.0))
    return Test(f"between-shot sd of accuracy beyond evaluation noise, {len(points)} models",
                Estimate(tau, bounds=bounds), stats.exceeds(FEWSHOT_STABLE_SD))


def c11_fewshot(d: ClaimData) -> Verdict:
    """Unstable across shot counts, and few-shot accuracy drops for the few-expert models
    (the fewer-expert half of the family) against zero-shot."""
    task = d.tasks.fewshot_task
    pts = [p for p in d.final if any(t == task for t, _ in p.values)]
    if not pts:
        return missing("no few-shot results")
    parts: list[tuple[str, Part]] = [("unstable", _between_shot_sd(pts, task))]
    es = sorted({p.E for p in pts})
    few = [p for p in pts if p.E <= es[(len(es) - 1) // 2]]  # noqa: SIM300
    shots = sorted({_shots(mm) for p in few for t, mm in p.values if t == task})
    if len(shots) < 2 or shots[0] != 0:
        parts.append(("drop", missing("needs zero-shot and few-shot accuracy")))
    else:
        zero = (task, f"acc@{shots[0]}shot")
        ins = [metric_series(few, (task, f"acc@{s}shot")) for s in shots]
        bad = next((i for i in ins if isinstance(i, str)), None)
        if bad:
            parts.append(("drop", missing(bad)))
        else:
            est = stats.bootstrap(lambda *ys: (np.mean(ys[1:], axis=0) - ys[0]).mean(axis=1),
                                  ins, seed=seed_of(zero))
            parts.append(("drop", Test(f"few-shot minus zero-shot accuracy, models with "
                                       f"E <= {max(p.E for p in few)}", est, Rule(-1))))
    return claim_verdict(parts)

CLAIMS: tuple[Claim, ...] = (
    Claim("C1.loss-vs-params", "fig1", "Train and validation loss fall monotonically with "
          "total parameters (E up at fixed d, k).", c1_loss),
    Claim("C1.hellaswag-taskloss", "fig1", "HellaSwag task loss follows the pre-training loss: "
          "it falls as total parameters grow.", c1_hellaswag),
    Claim("C1.gsm8k-taskloss-threshold", "fig1", "GSM8K task loss gets worse once total "
          "parameters pass a threshold.", c1_gsm8k_threshold),
    Claim("C2.memorization-monotone", "fig2", "Memorization task loss (TriviaQA, HellaSwag) is "
          "monotone in pre-training loss.", c2_memorization),
    Claim("C2.reasoning-u-shape", "fig2", "Reasoning task loss (GSM8K, GSM-Plus) is U-shaped in "
          "pre-training loss: below a threshold it rises.", c2_reasoning_u),
    Claim("C2.turning-point-moves", "fig2", "The reasoning turning point moves to lower "
          "pre-training loss as active parameters grow.", c2_turning_point),
    Claim("C3.memorization-accuracy", "fig3", "Memorization accuracy improves steadily as "
          "pre-training loss falls.", c3_memorization),
    Claim("C3.gsm8k-nonmonotone", "fig3", "GSM8K accuracy is non-monotone in pre-training "
          "loss.", c3_gsm8k),
    Claim("C4.memorization-one-curve", "fig4", "Memorization error is one curve of pre-training "
          "loss whatever the sparsity (checkpoints included).", c4_memorization),
    Claim("C4.reasoning-denser-better", "fig4", "At equal pre-training loss, reasoning error "
          "depends on sparsity: denser is better (Active-FLOPs principle).", c4_reasoning),
    Claim("C5.memorization-sparser", "fig5", "At fixed active parameters, memorization always "
          "prefers sparser models.", c5_memorization),
    Claim("C5.reasoning-small-active-sparser", "fig5", "At small active budgets, reasoning "
          "prefers sparser models.", c5_small_active_sparser),
    Claim("C5.reasoning-optimum-moves-dense", "fig5", "At large active budgets the reasoning "
          "optimum moves back toward dense.", c5_optimum_moves_dense),
    Claim("C6.ttc-raises-accuracy", "fig6", "Self-consistency raises GSM8K accuracy.", c6_ttc),
    Claim("C6.grpo-raises-accuracy", "fig6", "GRPO raises GSM8K accuracy.", c6_grpo),
    Claim("C6.trend-survives", "fig6", "The non-monotone trend in total parameters survives "
          "test-time compute and GRPO.", c6_trend_survives),
    Claim("C7.memorization-tpp", "fig7", "Memorization accuracy improves as TPP falls (more "
          "total parameters).", c7_memorization),
    Claim("C7.reasoning-tpp-peak", "fig7", "Reasoning accuracy peaks at an intermediate TPP and "
          "falls on both sides.", c7_peak),
    Claim("C7.tpp-optimum-near-20", "fig7", "The reasoning peak sits near TPP ~ 20.", c7_near_20),
    Claim("C7.larger-k-better", "fig7", "At fixed TPP, larger k is better on reasoning.",
          c7_larger_k),
    Claim("C8.code-optimum-dense", "fig8", "Code models behave like math: at large active "
          "budgets the optimum shifts to dense.", c8_code),
    Claim("C10.grpo-either-set", "fig10", "The decline with too many parameters persists after "
          "GRPO whether it trains on GSM8K or on MATH (here: two reasoning prompt sets).",
          c10_grpo_sets),
    Claim("C11.fewshot-unstable", "fig11", "Few-shot GSM8K accuracy is unstable across shot "
          "counts and drops for few-expert models (why test-time compute is zero-shot).",
          c11_fewshot),
)
CLAIMS_BY_ID = {c.id: c for c in CLAIMS}


def evaluate_claims(rows: list[Row], figure: str | None = None, tasks: TaskSet = PROXY_TASKS,
                    source: str | None = None,
                    prior: dict[Metric, tuple[float, float]] | None = None
                    ) -> dict[str, Verdict]:
    data = ClaimData(rows, tasks, source, prior or {})
    out = {}
    for c in CLAIMS:
        if figure is None or c.figure == figure:
            try:
                out[c.id] = c.check(data)
            except (ValueError, np.linalg.LinAlgError) as err:
                out[c.id] = Verdict(INCONCLUSIVE, f"could not be computed: {err}")
    return out
