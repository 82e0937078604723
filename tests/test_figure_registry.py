"""What is derived from the figure and claim registries, not declared twice: each figure's
claims (from ``Claim.figure``) and whether pull mode wants a GPU for it (from its tiers)."""

from __future__ import annotations

import pytest

from optimal_sparsity.claims.registry import CLAIMS
from optimal_sparsity.eval.tiers import TIERS_BY_NAME
from optimal_sparsity.figures.registry import FIGURES, FIGURES_BY_ID
from optimal_sparsity.figures.render import skipped


def test_every_claim_belongs_to_exactly_one_figure():
    carried = [cid for f in FIGURES for cid in f.claims]
    assert sorted(carried) == sorted(c.id for c in CLAIMS)
    assert len(set(carried)) == len(carried)
    for f in FIGURES:
        assert f.claims, f"{f.id} checks no claim"
        assert all(FIGURES_BY_ID[c.figure] is f for c in CLAIMS if c.id in f.claims)
    order = [c.id for c in CLAIMS]  # a figure lists its claims in the registry's order
    assert all(list(f.claims) == sorted(f.claims, key=order.index) for f in FIGURES)


@pytest.mark.parametrize("fig_id", list(FIGURES_BY_ID))
def test_a_figures_verdicts_are_its_own_claims(fig_id, tmp_path):
    spec = FIGURES_BY_ID[fig_id]
    res = skipped(spec, "retrain", "smoke", "a test", tmp_path)
    assert tuple(res.verdicts) == spec.claims
    assert {c.figure for c in CLAIMS if c.id in res.verdicts} == {fig_id}


def test_every_figure_tier_is_declared():
    for f in FIGURES:
        assert set(f.tiers) <= set(TIERS_BY_NAME), f.id
