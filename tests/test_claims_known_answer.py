"""Every predicate on synthetic studies whose answer is known, and the calibration.

The studies come from ``study.calibration``: the full design's grid and seeds, the pinned
noise, and each claim's structure planted at +size (reproduced), -size (not reproduced) or
not at all (inconclusive), in exact tables whose point means are the planted values.
"""

import dataclasses
import json
import math
import re

import pytest

from optimal_sparsity.claims.registry import (
    CLAIMS,
    CLAIMS_BY_ID,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    ClaimData,
    evaluate_claims,
)
from optimal_sparsity.references import references_dir
from optimal_sparsity.results.tasks import PAPER_TASKS
from optimal_sparsity.study import calibration as cal
from optimal_sparsity.study.design import get_design

# The noise levels: the current full design's pin, or (until it is pinned) the archived full
# pin of the earlier design; the grid and seeds are always the current design's.
NOISE_PIN = get_design("full").pin() or json.loads(
    (references_dir() / "scaled" / "previous" / "2026-12-02-k1" / "full.json").read_text())
NOISE = cal.NoiseModel.of_scale("full", 0.3, NOISE_PIN)
SIZE = 4.0
# where the design itself cannot test the claim (its own known answer: not testable)
UNTESTABLE = {"C8.code-optimum-dense"}
# Claims the full design cannot resolve at the known-answer size: they must read inconclusive
# (leaning the planted way), never the opposite verdict.
LOW_POWER = {"C2.turning-point-moves":  # a U over the k = 4 family's 3 points, one seed at E = 8
             "d64-k4: U inconclusive",
             # the HellaSwag proxy sits at its ceiling in full (acc_norm 0.96-1.00): its pinned
             # seed noise leaves the k = 4 family's 3-point slope unresolved at this size
             "C5.memorization-sparser": "hellaswag_proxy acc_norm, d64-k4: inconclusive"}
DECIDABLE = [c.id for c in CLAIMS if c.id not in UNTESTABLE]


def _expect(cid, v, status):
    if cid in LOW_POWER:
        assert v.status in (status, INCONCLUSIVE) and LOW_POWER[cid] in v.statistic, v.statistic
        return
    assert v.status == status, v.statistic


def _check(cid, plant, size=SIZE, noise=NOISE):
    return CLAIMS_BY_ID[cid].check(cal.simulate(noise, plant, size, None))


def _contradicting(cid):
    """A plant where the claim is false in its own direction."""
    if cid == "C6.trend-survives":  # base peaked, after TTC and GRPO U-shaped
        return cal.Plant({cal.REA_ACC[0]: cal._plants(False)[cid].effects[cal.REA_ACC[0]],
                          (cal.T.sc_task, "maj@N"): lambda c, s: cal._u2(c, s),
                          (cal.T.grpo_task, "acc_after"): lambda c, s: cal._u2(c, s)}), SIZE
    if cid == "C11.fewshot-unstable":  # stable across shots, few-shot helps
        return cal.Plant({(cal.T.fewshot_task, "drop"): lambda c, s: s}), SIZE
    return cal._plants(False)[cid], -SIZE


@pytest.mark.parametrize("cid", DECIDABLE)
def test_known_answer_reproduced(cid):
    _expect(cid, _check(cid, cal._plants(False)[cid]), REPRODUCED)


@pytest.mark.parametrize("cid", DECIDABLE)
def test_known_answer_not_reproduced(cid):
    plant, size = _contradicting(cid)
    _expect(cid, _check(cid, plant, size), NOT_REPRODUCED)


@pytest.mark.parametrize("cid", DECIDABLE)
def test_known_answer_inconclusive(cid):
    """No planted structure (at the null's boundary): the interval straddles the claim."""
    v = _check(cid, cal._plants(True)[cid])
    assert v.status == INCONCLUSIVE, v.statistic
    assert v.lean in ("leans toward", "leans against")


@pytest.mark.parametrize("cid", sorted(UNTESTABLE))
def test_known_answer_not_testable_by_design(cid):
    v = _check(cid, cal._plants(False)[cid])
    assert v.status == NOT_TESTABLE
    assert "code corpus" in v.statistic


def test_known_answer_not_testable_without_data_or_noise():
    assert all(v.status == NOT_TESTABLE for v in evaluate_claims([]).values())
    one_seed = dataclasses.replace(cal.NoiseModel.of_scale("smoke", 0.3, NOISE_PIN),
                                   prior={})
    d = cal.simulate(one_seed, cal._plants(False)["C1.loss-vs-params"], SIZE, None)
    v = CLAIMS_BY_ID["C1.loss-vs-params"].check(d)  # one seed, no evaluation error, no prior
    assert v.status == NOT_TESTABLE and "no noise estimate" in v.statistic
    v = CLAIMS_BY_ID["C10.grpo-either-set"].check(d)  # smoke: GRPO on one model
    assert v.status == NOT_TESTABLE


def test_known_answer_one_seed_uses_the_full_scale_seed_noise():
    """Smoke (one seed) takes the seed variance pinned at full scale: the same planted
    effect is decided, with the full-scale df in its t draws."""
    smoke = cal.NoiseModel.of_scale("smoke", 0.3, NOISE_PIN)
    assert smoke.prior and smoke.design.noise_from == "full"
    d = cal.simulate(smoke, cal._plants(False)["C1.loss-vs-params"], SIZE, None)
    v = CLAIMS_BY_ID["C1.loss-vs-params"].check(d)
    assert v.status == REPRODUCED, v.statistic


def _code_world(plant, size):
    """Pull mode: the code grid's pass@1 follows the planted reasoning structure."""
    d = cal.simulate(NOISE, plant, size, None)
    for p in d.final:
        for t in ("humaneval", "mbpp"):
            p.values[(t, "pass@1")] = list(p.values[cal.REA_ACC[0]])
            p.eval_se[(t, "pass@1")] = p.eval_se[cal.REA_ACC[0]]
    return ClaimData.of_points(d.final, tasks=PAPER_TASKS)


@pytest.mark.parametrize("size, plants, expected", [
    (SIZE, False, REPRODUCED), (-SIZE, False, NOT_REPRODUCED), (SIZE, True, INCONCLUSIVE)])
def test_known_answer_code_in_pull_mode(size, plants, expected):
    plant = cal._plants(plants)["C5.reasoning-optimum-moves-dense"]
    v = CLAIMS_BY_ID["C8.code-optimum-dense"].check(_code_world(plant, size))
    assert v.status == expected, v.statistic


@pytest.mark.parametrize("peak_tpp, noise, expected", [
    (12, 0.004, REPRODUCED), (2.5, 0.004, NOT_REPRODUCED), (12, 0.4, INCONCLUSIVE)])
def test_known_answer_tpp_optimum_where_the_grid_reaches_20(peak_tpp, noise, expected):
    from test_claims import monotone_mem, world

    def peaked(pc, tpp, k, loss):
        return 0.5 - 0.04 * math.log(tpp / peak_tpp) ** 2

    v = evaluate_claims(world(peaked, monotone_mem, noise=noise))["C7.tpp-optimum-near-20"]
    assert v.status == expected, v.statistic
    assert "peak at TPP" in v.statistic


def test_multi_part_claims_use_every_part_and_bonferroni():
    """An "always" claim is contradicted by one family even when the other supports it."""
    plant = cal.Plant({m: lambda c, s: -s * c.dens * (1 if c.family_rank == 0 else -1)
                       for m in cal.MEM_ACC})
    v = _check("C5.memorization-sparser", plant)
    assert v.status == NOT_REPRODUCED
    assert "d64-k2: reproduced" in v.statistic and "d64-k4: not reproduced" in v.statistic
    assert "97.5% interval" in v.statistic  # 4 parts: each at 1 - 0.10 / 4


def test_calibration_is_quick_deterministic_and_summarised():
    claims = ("C5.memorization-sparser", "C6.ttc-raises-accuracy", "C8.code-optimum-dense")
    a = cal.calibrate("full", draws=4, claims=claims, reference=NOISE_PIN)
    assert a == cal.calibrate("full", draws=4, claims=claims, reference=NOISE_PIN)
    assert set(a) == set(claims)
    assert a["C8.code-optimum-dense"].null[NOT_TESTABLE] == 1.0
    assert a["C6.ttc-raises-accuracy"].effect[REPRODUCED] >= 0.75
    line = cal.summary_line(a)
    assert re.fullmatch(r"calibration: max false reproduced \d\.\d\d, max false not "
                        r"reproduced \d\.\d\d over 3 claims", line)


def test_calibrate_command_prints_the_summary_last(capsys):
    from optimal_sparsity.cli import main

    assert main(["claims", "--calibrate", "--scale", "smoke", "--draws", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 + len(CLAIMS)
    assert lines[-1].startswith("calibration: max false reproduced ")
    assert lines[-1].endswith(f"over {len(CLAIMS)} claims")
    with pytest.raises(SystemExit) as refused:  # refused at parsing, in one line
        main(["claims", "--calibrate", "--draws", "0"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: reproduce claims: argument --draws")


def test_smokes_decides_list_is_what_its_calibration_bounds():
    """StudyDesign.decides is data from the calibration: smoke's list equals
    ``decidable`` of `claims --calibrate --scale smoke --every-claim` on the shipped pins
    (full's takes 2 minutes: the same command, RESULTS.md); and the rule itself."""
    from optimal_sparsity.study.design import get_design

    rates = cal.calibrate("smoke", draws=100, every_claim=True)
    assert cal.decidable(rates) == get_design("smoke").decides
    r = cal.Rates({REPRODUCED: 0.05, NOT_REPRODUCED: 0.11}, {REPRODUCED: 0.9})
    ok = cal.Rates({REPRODUCED: 0.10, NOT_REPRODUCED: 0.0}, {REPRODUCED: 0.8})
    weak = cal.Rates({REPRODUCED: 0.0, NOT_REPRODUCED: 0.0}, {REPRODUCED: 0.79})
    assert cal.decidable({"a": r, "b": ok, "c": weak}) == ("b",)
