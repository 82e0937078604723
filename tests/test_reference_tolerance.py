"""The pinned references: tolerances from the standard error of the pinned mean (a 3-SE
shift fails the regression check), and verdicts current under the verdict rule. Every pin
is checked, the archived ones of earlier designs (``references/scaled/previous/``) too; the
verdicts only of the pins measured on today's designs."""

import json
import math
from pathlib import Path

import pytest

from optimal_sparsity.claims.registry import CLAIMS
from optimal_sparsity.references import (
    TOL_CAP,
    TOL_FLOOR,
    check,
    pooled_seed_sd,
    recompute_tolerances,
    references_dir,
    tolerance,
)
from optimal_sparsity.results.table import Row
from optimal_sparsity.study.design import get_design
from optimal_sparsity.study.reevaluate import reevaluate_reference

SCALES = ("smoke", "full")
SCALED = references_dir() / "scaled"
PIN_FILES = sorted(p.relative_to(SCALED).as_posix() for p in SCALED.rglob("*.json"))
CURRENT = [s for s in SCALES if get_design(s).pin()]


def _pin(rel: str) -> dict:
    return json.loads((SCALED / rel).read_text())


def test_the_default_scale_has_a_pin_of_its_current_design():
    """`./reproduce` compares against a reference measured on the design it runs."""
    assert "smoke" in CURRENT
    assert any(p.startswith("previous/") for p in PIN_FILES)  # earlier designs are kept


def _rows(ref, shift=None):
    """One row per pinned value (its mean), the value ``shift(v)`` moved."""
    rows = []
    for v in ref["values"]:
        delta = shift(v) if shift else 0.0
        rows.append(Row(run=v["model"], model=v["model"], step=1, task=v["task"],
                        metric=v["metric"], value=v["value"] + delta, d=v["d"], E=v["E"],
                        k=v["k"], n_layers=v["n_layers"]))
    return rows


@pytest.mark.parametrize("rel", PIN_FILES)
def test_unshifted_pin_passes_and_a_3_se_shift_fails(rel):
    ref = _pin(rel)
    bad, n = check(_rows(ref), ref)
    assert n == len(ref["values"]) and not bad
    with_se = [v for v in ref["values"] if v["se"] is not None]
    # a value has no SE only if it has one seed and no evaluation error (the losses of a
    # one-seed pin before the full-scale pin of its design exists: tolerance at the cap)
    assert all(v["n_seeds"] < 2 and "eval_se" not in v for v in ref["values"] if v["se"] is None)
    if rel.endswith("full.json"):
        assert len(with_se) >= 0.9 * len(ref["values"])
    # the guarantee: a 3-SE shift fails wherever 3 SE exceeds the floor (below it, e.g. an
    # accuracy of 1.0 with its ~1e-7 binomial SE, the floor covers float rounding)
    above_floor = [v for v in with_se if 3 * v["se"] > v["tolerance"]]
    assert len(above_floor) >= 0.9 * len(with_se)
    for sign in (1, -1):
        bad, n = check(_rows(ref, lambda v, sign=sign: sign * 3 * v["se"] if v["se"] is not None
                             else 0.0), ref)
        flagged = {(g.model, g.task, g.metric) for g in bad}
        assert flagged == {(v["model"], v["task"], v["metric"]) for v in above_floor}


def test_tolerance_basis():
    for kind, metric in (("loss", "train_loss"), ("acc", "acc")):
        assert tolerance(metric, 0.0) == TOL_FLOOR[kind]
        assert tolerance(metric, 10.0) == TOL_CAP[kind]
        assert tolerance(metric, math.nan) == TOL_CAP[kind]  # no error estimate
        se = 0.01
        assert tolerance(metric, se) < 3 * se
    old = {"values": [{"model": "m", "d": 64, "E": 1, "k": 1, "n_layers": 4, "task": "t",
                       "metric": "acc", "value": 0.5, "seed_std": 0.2, "n_seeds": 4,
                       "tolerance": 0.8}]}
    new = recompute_tolerances(old)["values"][0]
    assert new["se"] == pytest.approx(0.1) and new["tolerance"] == pytest.approx(0.15)


@pytest.mark.parametrize("rel", PIN_FILES)
def test_pinned_tolerances_follow_the_basis(rel):
    ref = _pin(rel)
    full = Path(rel).parent / "full.json"  # the fallback seed sd: full's, of the same design
    fallback = pooled_seed_sd(_pin(full.as_posix())) if (SCALED / full).is_file() else {}
    again = recompute_tolerances(ref, fallback=fallback)
    assert again["values"] == ref["values"]
    assert "SE of the pinned mean" in ref["tolerance_basis"]
    assert "tolerances" in ref["provenance"]


@pytest.mark.parametrize("scale", CURRENT)
def test_pinned_verdicts_are_current_under_the_rule(scale):
    """`./reproduce claims --reevaluate-pins` has been run since the rule last changed."""
    ref = get_design(scale).pin()
    new = reevaluate_reference(ref, scale)
    assert {k: (v["status"], v["statistic"]) for k, v in new.items()} == {
        k: (v["status"], v["statistic"]) for k, v in ref["verdicts"].items()}


def test_reevaluation_keeps_the_pinned_runs_fig4_verdicts():
    """A pin holds no intermediate checkpoints, so Fig 4's claims keep the verdict the pinned
    run reached from them (marked), and the README shows it as a current verdict; the other
    claims are re-decided from the pinned values."""
    from optimal_sparsity.report.claims_table import render_table
    from optimal_sparsity.study.reevaluate import FIG4_KEPT

    ref = get_design("full").pin()
    new = reevaluate_reference(ref, "full")
    fig4 = [c.id for c in CLAIMS if c.figure == "fig4"]
    assert fig4 and all(new[c]["rule"] == FIG4_KEPT for c in fig4)
    assert all(new[c]["statistic"] == ref["verdicts"][c]["statistic"] for c in fig4)
    assert all("rule" not in new[c.id] for c in CLAIMS if c.figure != "fig4")
    table = render_table({"smoke": None, "full": {**ref, "verdicts": new}},
                         {c.id: "" for c in CLAIMS})
    row = next(line for line in table.splitlines() if "`C4.reasoning-denser-better`" in line)
    assert f"| {new['C4.reasoning-denser-better']['status']} (" in row
    assert "earlier rule" not in row
