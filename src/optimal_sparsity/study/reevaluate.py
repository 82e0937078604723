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


def reevaluate_reference(reference: dict[str, Any], scale: str) -> dict[str, dict[str, Any]]:
    """The verdicts a pinned reference's values reach under the current rule, without
    re-running anything: the pin's final points (mean, seed sd, #seeds) stand for the run,
    and for its checkpoints too (Fig 4), since a pin holds no intermediate checkpoints.
    A claim the pin cannot re-decide (its analysis needs the run's checkpoints) keeps its
    pinned verdict, marked as reached under the earlier rule."""
    design = get_design(scale)
    data = ClaimData.of_points(reference_points(reference, design.corpus.train_tokens,
                                                design.corpus.vocab_size),
                               prior=design.noise_prior())
    out = {}
    for c in CLAIMS:
        old = reference.get("verdicts", {}).get(c.id)
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
