"""A claim's verdict and how the parts of a claim combine into one.

A claim of several parts ("always", "on both sets", every family) is reproduced only if every
part is, and not reproduced if any part is contradicted, each part judged at the Bonferroni
level 1 - 0.10 / #parts (the rule itself is ``claims.stats``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optimal_sparsity.claims import stats
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


@dataclass(frozen=True)
class Verdict:
    status: str
    statistic: str
    details: dict[str, Any] = field(default_factory=dict)
    lean: str = ""  # inconclusive only: the side the point estimate is on

    @property
    def label(self) -> str:
        return f"{self.status} ({self.lean})" if self.lean else self.status



@dataclass(frozen=True)
class Test:
    """One statistic of a claim, the rule it is judged by, and how it reads."""

    what: str  # e.g. "triviaqa_proxy acc vs density, d64-k1: slope"
    est: Estimate
    rule: Rule
    details: dict[str, Any] = field(default_factory=dict)

    def verdict(self, level: float = stats.CI) -> Verdict:
        status, lean = stats.decide(self.est, self.rule, level)
        pct = f"{100 * level:.3g}%"
        return Verdict(status, f"{self.what} = {self.est.fmt('.2g', level)} ({pct} interval; "
                               f"claim: {self.rule.describe()})",
                       {"value": self.est.value, "lo": self.est.interval(level)[0],
                        "hi": self.est.interval(level)[1], **self.details}, lean)


Part = Test | Verdict  # a verdict stands for a part that could not be computed


def missing(reason: str) -> Verdict:
    """The design (or the table) lacks what the claim needs."""
    return Verdict(NOT_TESTABLE, reason)


def claim_verdict(parts: list[tuple[str, Part]]) -> Verdict:
    """Every part reproduced -> reproduced; any part contradicted -> not reproduced; each part
    judged at level 1 - (1 - CI) / #parts. Parts that are not testable are left out (all of
    them not testable: the claim is not testable)."""
    tests = [(n, p) for n, p in parts if not (isinstance(p, Verdict) and p.status == NOT_TESTABLE)]
    if not tests:
        return Verdict(NOT_TESTABLE, "; ".join(f"{n}: {p.statistic}" if n else p.statistic
                                               for n, p in parts))
    level = 1 - (1 - stats.CI) / len(tests)
    judged = [(n, p.verdict(level) if isinstance(p, Test) else p) for n, p in parts]
    st = [v.status for n, v in judged if v.status != NOT_TESTABLE]
    if all(s == REPRODUCED for s in st):
        status, lean = REPRODUCED, ""
    elif any(s == NOT_REPRODUCED for s in st):
        status, lean = NOT_REPRODUCED, ""
    else:
        status = INCONCLUSIVE
        leans = [v.lean or (LEANS_FOR if v.status == REPRODUCED else LEANS_AGAINST)
                 for _, v in judged if v.status != NOT_TESTABLE]
        lean = LEANS_FOR if all(x == LEANS_FOR for x in leans) else LEANS_AGAINST
    if len(judged) == 1:
        return Verdict(status, judged[0][1].statistic, judged[0][1].details, lean)
    return Verdict(status, "; ".join(f"{n}: {v.label}, {v.statistic}" for n, v in judged),
                   {n: {"status": v.status, **v.details} for n, v in judged}, lean)


def single(part: Part) -> Verdict:
    return claim_verdict([("", part)])


NO_POWER = ("not decided at this scale (its design decides only the claims its calibration "
            "bounds: StudyDesign.decides, from claims --calibrate --every-claim)")


def undecided(v: Verdict, why: str = NO_POWER) -> Verdict:
    """A verdict a scale has no power to decide: inconclusive, keeping what it would read."""
    if v.status in (INCONCLUSIVE, NOT_TESTABLE):
        return v
    return Verdict(INCONCLUSIVE, f"{why}, would read {v.status}: {v.statistic}",
                   {**v.details, "undecided_status": v.status},
                   LEANS_FOR if v.status == REPRODUCED else LEANS_AGAINST)
