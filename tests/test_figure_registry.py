"""What is derived from the figure and claim registries, not declared twice: each figure's
claims (from ``Claim.figure``) and whether pull mode wants a GPU for it (from its tiers)."""

from __future__ import annotations

import importlib.util

import pytest

from optimal_sparsity.claims.registry import CLAIMS
from optimal_sparsity.figures.registry import FIGURES, FIGURES_BY_ID
from optimal_sparsity.figures.render import skipped
from optimal_sparsity.paths import REPO
from optimal_sparsity.study.pull_claims import CLAIM_NEEDS, PULL_TIER_OF, pull_status
from optimal_sparsity.tiers import PULL_TIER_FOR, TIERS_BY_NAME


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


def test_a_figure_wants_a_gpu_iff_one_of_its_tiers_generates():
    for f in FIGURES:
        assert f.wants_gpu == any(TIERS_BY_NAME[t].generates for t in f.tiers)
    assert FIGURES_BY_ID["fig6"].wants_gpu and FIGURES_BY_ID["fig10"].wants_gpu
    assert not TIERS_BY_NAME["paper_task_loss"].generates
    assert TIERS_BY_NAME["paper_accuracy"].generates


def _noxfile():
    spec = importlib.util.spec_from_file_location("noxfile_under_test", REPO / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nox_figure_sessions_say_what_the_figure_wants():
    nox = _noxfile()
    assert set(nox._FIGURE_DOCS) == set(FIGURES_BY_ID)
    for fig_id, (_, modes) in nox._FIGURE_DOCS.items():
        advised = "pull" in modes and FIGURES_BY_ID[fig_id].wants_gpu
        assert ("GPU advised" in nox._figure_doc(fig_id)) == advised, fig_id


def test_the_claims_table_advises_a_gpu_where_a_read_tier_generates():
    """The pull column's "GPU advised": the testable claims that read an accuracy (the one
    pull tier of needs that generates text, paper_accuracy) or that need a pull tier that
    samples (self-consistency, the few-shot sweep)."""
    assert [t for t in set(PULL_TIER_OF.values()) if TIERS_BY_NAME[t].generates] == [
        "paper_accuracy"]
    assert all(TIERS_BY_NAME[t].generates for t in PULL_TIER_FOR.values())
    advised = {c.id for c in CLAIMS if "GPU advised" in pull_status(c.id).text}
    assert advised == {c.id for c in CLAIMS if pull_status(c.id).testable
                       and any(n.startswith(("acc:", "tier:")) for n in CLAIM_NEEDS[c.id])}
    assert {"C6.ttc-raises-accuracy", "C11.fewshot-unstable"} <= advised
