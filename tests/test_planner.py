"""The sparsity planner on hand-worked cases with known answers."""

import math

import pytest

from optimal_sparsity.accounting import count_params
from optimal_sparsity.config import ModelConfig
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import PAPER_TOKENS, paper_config, paper_models
from optimal_sparsity.planner import candidates, plan, recommend

SMALL = dict(widths=(512,), experts=(8, 16, 32, 64), topk=(2, 4))
PAPER = dict(widths=(512, 1024, 2048), experts=(8, 16, 32, 64, 128, 256), topk=(2, 4, 8, 16))


def test_known_answer_issue_example_prefers_active_flops_then_tpp_near_20():
    """1e12 tokens, <= 1e9 active: the old rule (largest k first) picked d1024-E256-k4
    (TPP 38.4, 0.674B active). The most active compute that fits is d = 1536 at k = 2
    (0.910B active); among its E, E = 256 has TPP 17.1, the closest to 20."""
    result = plan(1e12, "reasoning", active_params=1e9)
    best = result.best
    assert best.name == "d1536-E256-k2"
    assert abs(best.tpp - 17.11) < 0.01
    old = next(c for c in result.candidates if c.name == "d1024-E256-k4")
    assert best.train_flops_per_token > old.train_flops_per_token
    assert abs(math.log(best.tpp / 20)) < abs(math.log(old.tpp / 20))
    assert result.runner_up.name == "d1536-E128-k2"
    assert "runner-up d1536-E128-k2" in result.reason
    assert any("1e+12 tokens" in e for e in result.extrapolation)  # 8x the paper's data


def test_known_answer_memorization_takes_the_most_total_params():
    cands = candidates(125e9, active_params=230e6, **SMALL)
    best = recommend(cands, "memorization")
    # at d=512 every (E, k<=4) is within 230M active; E=64 has the most parameters, and
    # at equal total parameters k = 4 has more active FLOPs than k = 2
    assert (best.d, best.E, best.k) == (512, 64, 4)


def test_known_answer_memory_capped_memorization():
    # 1e9 cap: d512-E32 (924M) fits, E64 (1.7B) does not; k=4 beats k=2 on active FLOPs
    capped = candidates(125e9, active_params=230e6, max_total_params=1e9, **SMALL)
    best = recommend(capped, "memorization")
    assert (best.E, best.k) == (32, 4)
    assert best.total_params <= 1e9


def test_known_answer_reasoning_flops_budget():
    """20B tokens and 2e19 training FLOPs at d512. Worked by hand from the accounting:
    k=4 costs 1.21e9 training FLOPs/token x 20e9 tokens = 2.43e19 > 2e19, so only k=2
    (9.1e8 x 20e9 = 1.82e19) fits; in the band (TPP 10-40) E=32 (TPP 21.6), E=16 (38.3)
    and E=64 (11.6) tie on FLOPs, and E=32 is closest to 20. With 3e19, k=4 fits and wins."""
    result = plan(20e9, "reasoning", flops_budget=2e19, **SMALL)
    assert result.best.name == "d512-E32-k2"
    assert sum(c.recommended for c in result.candidates) == 1
    assert all(c.train_flops <= 2e19 for c in result.candidates)
    assert plan(20e9, "reasoning", flops_budget=3e19, **SMALL).best.name == "d512-E32-k4"


def test_known_answer_out_of_band_takes_closest_tpp():
    # 125B tokens at d512 up to E64: every TPP >= 72, none in 10-40 -> closest (E64)
    result = plan(125e9, "reasoning", active_params=230e6, **SMALL)
    assert (result.best.E, result.best.k) == (64, 4)
    assert "closest TPP" in result.reason
    assert not any("TPP" in e for e in result.extrapolation)  # 72 is inside 2.4-390


def test_known_answer_paper_grid_reasoning_picks_tpp_10_to_40():
    """On the paper's own grid at 125B tokens, for each active budget of a released
    model, the reasoning pick lies in the TPP band and uses at least that model's
    active FLOPs."""
    budgets = sorted({count_params(m.config()).active for m in paper_models()})
    for active in budgets:
        result = plan(PAPER_TOKENS, "reasoning", active_params=active, **PAPER)
        assert 10 <= result.best.tpp <= 40, (active, result.best)
        assert result.extrapolation == [], result.extrapolation


def test_k1_is_left_out_unless_asked():
    cands = candidates(1e12, active_params=1e9)
    assert cands and all(c.k >= 2 for c in cands)
    with_k1 = candidates(1e12, active_params=1e9, allow_k1=True)
    assert any(c.k == 1 for c in with_k1)


def test_k1_config_warns_once_in_one_line(capsys):
    cfg = paper_config(512, 8, 2)
    ModelConfig(**{**cfg.to_dict(), "name": "warn-test-E8-k1", "top_k": 1})
    ModelConfig(**{**cfg.to_dict(), "name": "warn-test-E8-k1", "top_k": 1})
    ModelConfig(**{**cfg.to_dict(), "name": "warn-test-E1-k1", "top_k": 1, "n_experts": 1})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no gradient" in err and "warn-test-E8-k1" in err


def test_active_budget_excludes_larger_k():
    cands = candidates(20e9, active_params=200e6, **SMALL)
    assert {c.k for c in cands} == {2}


@pytest.mark.parametrize("kwargs", [
    dict(active_params=None), dict(active_params=1e9, flops_budget=1e20),
    dict(active_params=-1.0), dict(active_params=1.0),
])
def test_bad_budgets(kwargs):
    with pytest.raises(UserError):
        plan(1e12, "reasoning", **kwargs)
