"""A pinned reference re-decided under the current verdict rule, without re-running the
study (``./reproduce claims --reevaluate-pins``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from optimal_sparsity.claims.registry import CLAIMS, ClaimData
from optimal_sparsity.claims.stats import INCONCLUSIVE, NOT_TESTABLE
from optimal_sparsity.claims.verdicts import Verdict, undecided
from optimal_sparsity.results.points import reference_points
from optimal_sparsity.study.design import get_design

FIG4_KEPT = ("the pinned run's (a pin holds no intermediate checkpoints; the next pin "
             "re-decides)")


def reevaluate_reference(reference: dict[str, Any], scale: str) -> dict[str, dict[str, Any]]:
    """The verdicts a pinned reference's values reach under the current rule, without
    re-running anything: the pin's final points (mean, seed sd, #seeds) stand for the run.
    Fig 4's claims read the run's intermediate checkpoints, which a pin does not hold, so
    they keep the verdict the pinned run reached from them (marked so; final points standing
    in for checkpoints gave other intervals, e.g. full's C4.reasoning-denser-better -0.12
    [-0.48, 0.36] against the run's 0.051 [-0.069, 0.17]); the next pin re-decides them.
    Without a pinned verdict they get the stand-in, marked as such."""
    design = get_design(scale)
    data = ClaimData.of_points(reference_points(reference, design.corpus.train_tokens,
                                                design.corpus.vocab_size),
                               prior=design.noise_prior())
    out = {}
    for c in CLAIMS:
        old = reference.get("verdicts", {}).get(c.id)
        if c.figure == "fig4" and old and old.get("status") != NOT_TESTABLE:
            out[c.id] = {**old, "rule": old.get("rule") or FIG4_KEPT}
            continue
        try:
            v = c.check(data)
        except (ValueError, ArithmeticError) as err:
            v = Verdict(INCONCLUSIVE, f"could not be computed: {err}")
        earlier = v.status == NOT_TESTABLE and c.figure == "fig4" and old
        if earlier:
            v = Verdict(old.get("details", {}).get("undecided_status", old["status"]),
                        old["statistic"].split("would read ", 1)[-1].split(": ", 1)[-1]
                        if "undecided_status" in old.get("details", {}) else old["statistic"],
                        {k: x for k, x in old.get("details", {}).items()
                         if k != "undecided_status"})
        if design.decides is not None and c.id not in design.decides:
            v = undecided(v)
        out[c.id] = asdict(v)
        if earlier:
            out[c.id]["rule"] = ("earlier (not re-evaluated: the pin holds no intermediate "
                                 "checkpoints; the next pin decides)")
    return out
