"""Claim predicates on synthetic results with a known answer (the statistics, not results)."""

import math

import numpy as np
import pytest

from optimal_sparsity.accounting import count_params
from optimal_sparsity.claims.registry import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    evaluate_claims,
)
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.results.table import Row

TOKENS = 8_000_000


def world(reasoning, memorization, seeds=(0, 1, 2), noise=0.004, steps=(1.0,)):
    """Rows for a grid whose metrics follow the given functions of a point (plus noise)."""
    rng = np.random.default_rng(0)
    rows = []
    for d in (64, 96):
        for k in (1, 2):
            for e in (2, 4, 8, 16, 32):
                if e < k:
                    continue
                pc = count_params(scaled_config(d, e, k))
                for seed in seeds:
                    for frac in steps:
                        tokens = int(TOKENS * frac)
                        tpp = tokens / pc.total
                        loss = 3.2 - 0.12 * math.log(pc.total) - 0.1 * math.log(pc.active) \
                            - 0.3 * math.log(frac) + rng.normal(0, noise)
                        ident = dict(run=f"{d}-{e}-{k}-{seed}", model=f"s-d{d}-E{e}-k{k}",
                                     step=int(1000 * frac), seed=seed, tokens=tokens, d=d, E=e,
                                     k=k, n_layers=4, total_params=pc.total,
                                     active_params=pc.active, tpp=tpp)
                        vals = {
                            ("pretrain", "train_loss"): loss,
                            ("pretrain", "val_loss"): loss + 0.01,
                            ("triviaqa_proxy", "acc"): memorization(pc, tpp, k, loss),
                            ("hellaswag_proxy", "acc_norm"): memorization(pc, tpp, k, loss),
                            ("triviaqa_proxy", "task_loss"): 2 * loss,
                            ("hellaswag_proxy", "task_loss"): 1.5 * loss,
                            ("gsm8k_proxy", "acc"): reasoning(pc, tpp, k, loss),
                            ("gsmplus_proxy", "acc"): reasoning(pc, tpp, k, loss) * 0.8,
                            ("gsm8k_proxy", "task_loss"): 1 - reasoning(pc, tpp, k, loss),
                            ("gsmplus_proxy", "task_loss"): 1.1 - reasoning(pc, tpp, k, loss),
                        }
                        for (task, metric), v in vals.items():
                            rows.append(Row(task=task, metric=metric,
                                            value=v + rng.normal(0, noise), n=1000, **ident))
    return rows


def peaked(pc, tpp, k, loss):  # the paper's world: a peak near TPP 20, larger k better
    # (at 12, inside the paper's band, so that this grid, which stops at TPP 24, has data
    # on both sides of it)
    return 0.5 - 0.04 * math.log(tpp / 12) ** 2 + 0.03 * math.log2(k)


def monotone_mem(pc, tpp, k, loss):
    return 0.9 - 0.05 * math.log(tpp)


def test_paper_like_world_reproduces():
    v = evaluate_claims(world(peaked, monotone_mem))
    for cid in ("C1.loss-vs-params", "C7.memorization-tpp", "C7.reasoning-tpp-peak",
                "C7.tpp-optimum-near-20", "C7.larger-k-better", "C2.memorization-monotone",
                "C3.memorization-accuracy", "C5.memorization-sparser"):
        assert v[cid].status == REPRODUCED, (cid, v[cid].statistic)
    assert "TPP" in v["C7.tpp-optimum-near-20"].statistic


def test_monotone_reasoning_world_does_not():
    def more_is_better(pc, tpp, k, loss):
        return 0.9 - 0.05 * math.log(tpp)

    v = evaluate_claims(world(more_is_better, monotone_mem))
    assert v["C7.reasoning-tpp-peak"].status == NOT_REPRODUCED, v["C7.reasoning-tpp-peak"]
    assert v["C7.tpp-optimum-near-20"].status in (NOT_REPRODUCED, INCONCLUSIVE)


def test_noise_makes_small_effects_inconclusive():
    def tiny_k_effect(pc, tpp, k, loss):
        return 0.3 + 0.002 * math.log2(k)

    v = evaluate_claims(world(tiny_k_effect, monotone_mem, seeds=(0, 1), noise=0.03))
    assert v["C7.larger-k-better"].status in (INCONCLUSIVE, NOT_REPRODUCED)


def test_equal_loss_effects_fig4():
    def density_helps(pc, tpp, k, loss):  # error depends on loss and on density
        e = pc.total / pc.active
        return 0.9 - 0.15 * loss - 0.05 * math.log2(e)

    def loss_only(pc, tpp, k, loss):
        return 0.95 - 0.2 * loss

    v = evaluate_claims(world(density_helps, loss_only, seeds=(0,), steps=(0.25, 0.5, 1.0)))
    assert v["C4.reasoning-denser-better"].status == REPRODUCED, v["C4.reasoning-denser-better"]
    assert v["C4.memorization-one-curve"].status == REPRODUCED, v["C4.memorization-one-curve"]


def test_missing_data_is_not_testable():
    v = evaluate_claims([])
    assert all(x.status == NOT_TESTABLE for x in v.values())
    assert "code" in v["C8.code-optimum-dense"].statistic


@pytest.mark.parametrize("fig", ["fig1", "fig5", "fig7"])
def test_render_writes_outputs(tmp_path, fig):
    from optimal_sparsity.figures.registry import get_figure
    from optimal_sparsity.figures.render import render
    from optimal_sparsity.references import reference_values
    from optimal_sparsity.results.tasks import PROXY_TASKS

    rows = world(peaked, monotone_mem)
    ref = {"values": reference_values(rows)}
    res = render(get_figure(fig), rows, tmp_path, mode="retrain", scale="test",
                 tasks=PROXY_TASKS, label="synthetic", reference=ref)
    for ext in ("png", "svg", "pdf", "csv"):
        assert (tmp_path / res.outputs[ext]).stat().st_size > 0
    assert res.compared > 0 and not res.regressions
    # a doubled loss is a regression that names the value and the reference
    bad = [r if r.metric != "train_loss" else Row(**{**r.to_dict(), "value": 2 * r.value})
           for r in rows]
    res = render(get_figure(fig), bad, tmp_path, mode="retrain", scale="test",
                 tasks=PROXY_TASKS, label="synthetic", reference=ref)
    assert res.regressions
    msg = str(res.regressions[0])
    assert "train_loss" in msg and "reference" in msg


@pytest.mark.parametrize("swing, expected", [(-0.2, REPRODUCED), (0.2, NOT_REPRODUCED),
                                             (0.0, NOT_REPRODUCED)])
def test_fewshot_instability(swing, expected):
    """C11 reads the evaluator's metric names (acc@0shot ...): unstable across shots and
    lower with shots for the few-expert models (a swing up with shots contradicts it)."""
    rows = [r for r in world(peaked, monotone_mem, seeds=(0,)) if r.task == "pretrain"]
    extra = []
    for r in rows:
        if r.metric != "train_loss":
            continue
        ident = {f: getattr(r, f) for f in ("run", "model", "step", "seed", "tokens", "d", "E",
                                             "k", "n_layers", "total_params", "active_params",
                                             "tpp")}
        for shots in range(4):
            extra.append(Row(task="gsm8k_proxy_fewshot", metric=f"acc@{shots}shot",
                             value=0.3 + swing * (shots % 2), n=1000, **ident))
    v = evaluate_claims(rows + extra)["C11.fewshot-unstable"]
    assert v.status == expected, v.statistic


def test_undecided_claims_are_inconclusive_with_what_they_would_read(tmp_path):
    """A scale without the power to decide a claim reports it inconclusive, keeping the
    statistic and the verdict it would have had (smoke: one seed)."""
    from optimal_sparsity.figures.registry import get_figure
    from optimal_sparsity.figures.render import render
    from optimal_sparsity.results.tasks import PROXY_TASKS

    rows = world(peaked, monotone_mem)
    kw = dict(mode="retrain", scale="test", tasks=PROXY_TASKS, label="synthetic")
    free = render(get_figure("fig7"), rows, tmp_path / "a", **kw).verdicts
    capped = render(get_figure("fig7"), rows, tmp_path / "b", decides=frozenset(
        {"C7.memorization-tpp"}), **kw).verdicts
    assert free["C7.reasoning-tpp-peak"].status == REPRODUCED
    v = capped["C7.reasoning-tpp-peak"]
    assert v.status == INCONCLUSIVE and "would read reproduced" in v.statistic
    assert v.details["undecided_status"] == REPRODUCED
    assert capped["C7.memorization-tpp"] == free["C7.memorization-tpp"]


def test_verdicts_do_not_depend_on_the_order_rows_were_written():
    """Evaluations finish in any order (the training pool evaluates runs as they finish):
    the checkpoint points, and so Fig 4's verdicts, are the same for shuffled rows."""
    from optimal_sparsity.claims.registry import CLAIMS, ClaimData
    from optimal_sparsity.results.points import checkpoint_points

    rows = world(peaked, monotone_mem, seeds=(0,), steps=(0.25, 0.5, 1.0))
    shuffled = list(np.random.default_rng(3).permutation(np.array(rows, dtype=object)))
    key = [(p.key, p.step, p.run) for p in checkpoint_points(rows)]
    assert key == [(p.key, p.step, p.run) for p in checkpoint_points(shuffled)] == sorted(key)
    for c in (c for c in CLAIMS if c.figure == "fig4"):
        a, b = c.check(ClaimData(rows)), c.check(ClaimData(shuffled))
        assert (a.status, a.statistic) == (b.status, b.statistic), c.id
