"""The study designs as data: what each scale trains, post-trains and decides."""

from optimal_sparsity.claims.registry import CLAIMS
from optimal_sparsity.grid import GridPoint
from optimal_sparsity.study.design import DESIGNS


def test_decided_claims_exist():
    ids = {c.id for c in CLAIMS}
    for design in DESIGNS.values():
        assert set(design.decides or ()) <= ids, design.scale


def test_grpo_runs_on_the_chosen_posttrain_points_only():
    smoke, full = DESIGNS["smoke"], DESIGNS["full"]
    assert [p.E for p in smoke.points if smoke.gets_grpo(p)] == []  # smoke runs no GRPO
    assert [p.E for p in full.points if full.gets_grpo(p)] == [2, 8, 16]  # a curve in k = 2
    assert [p.E for p in full.posttrain_points] == [2, 4, 8, 16]
    assert not full.gets_grpo(GridPoint(64, 4, 4))  # outside the post-training family


def test_anchors_must_be_grid_points():
    import dataclasses

    import pytest

    with pytest.raises(ValueError, match="are not grid points"):
        dataclasses.replace(DESIGNS["full"], anchors=(GridPoint(64, 32, 2),))


def test_smoke_does_not_decide_claims_it_has_too_few_grpo_models_for():
    decides = set(DESIGNS["smoke"].decides or ())
    assert not decides & {"C6.grpo-raises-accuracy", "C10.grpo-either-set"}
    assert "C6.ttc-raises-accuracy" in decides
