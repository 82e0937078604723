"""Self-consistency: majority vote and coverage at every power of two, rows, cache."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimal_sparsity.eval.selfconsistency import (
    TASK,
    SCSettings,
    majority_vote,
    sc_metrics,
    self_consistency,
)
from optimal_sparsity.results.table import read_rows


def test_majority_vote_ties_and_abstentions():
    assert majority_vote([3, 5, 5, 3]) == 3  # tie: first seen wins
    assert majority_vote([None, 5, None, 3, 3]) == 3
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
    assert majority_vote([None, 7]) == 7  # abstentions are not votes


def test_sc_metrics_by_hand():
    answers = [[1, 2, 2, 2], [None, 9, 4, 4], [5, 5, 5, 5]]
    targets = [2, 9, 6]  # maj@2: [1, 2] is a tie won by 1 (wrong); [None, 9] votes 9
    m = sc_metrics(answers, targets, [1, 2, 4])
    assert m == {"maj@1": 0.0, "cov@1": 0.0,
                 "maj@2": pytest.approx(1 / 3), "cov@2": pytest.approx(2 / 3),
                 "maj@4": pytest.approx(1 / 3), "cov@4": pytest.approx(2 / 3)}
    with pytest.raises(ValueError):
        sc_metrics(answers, targets, [8])


@given(st.lists(st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=8, max_size=8),
                min_size=1, max_size=6),
       st.lists(st.integers(0, 4), min_size=6, max_size=6))
def test_coverage_grows_and_bounds_majority(answers, targets):
    m = sc_metrics(answers, targets[:len(answers)], [1, 2, 4, 8])
    covs = [m[f"cov@{n}"] for n in (1, 2, 4, 8)]
    assert covs == sorted(covs)
    assert all(m[f"maj@{n}"] <= m[f"cov@{n}"] for n in (1, 2, 4, 8))
    assert m["maj@1"] == m["cov@1"]


class _Scripted:
    """A generator that answers problem i with a fixed list of answers."""

    def __init__(self, script):
        self.script = script
        self.calls = 0

    def generate(self, prompts, sampling, n=1, seed=0):
        self.calls += 1
        assert (sampling.temperature, sampling.top_p) == (0.6, 0.95)
        assert prompts[0].startswith("Question: ") and prompts[0].endswith("\nAnswer:")
        return [[f" 1 + 1 = 2. #### {a}" if a is not None else " no idea"
                 for a in self.script[seed][:n]]]


def test_self_consistency_rows_and_cache(tiny_lm_checkpoint, tiny_corpus, tmp_path):
    items = [json.loads(x) for x in
             (tiny_corpus / "eval" / "gsm8k_proxy.jsonl").read_text().splitlines()[:2]]
    t0, t1 = int(items[0]["target"]), int(items[1]["target"])
    script = {0: [t0 + 1, t0, t0, None], 1: [None, None, t1 + 3, t1]}
    s = SCSettings(r_max=2, n_problems=2, seed=0)
    res = self_consistency(tiny_lm_checkpoint, tiny_corpus, s, results=tmp_path,
                           generator=_Scripted(script))
    assert res.metrics == {"maj@1": 0.0, "cov@1": 0.0, "maj@2": 0.0, "cov@2": 0.5,
                           "maj@4": 0.5, "cov@4": 1.0}
    rows = read_rows(tmp_path)
    assert {r.metric for r in rows} == set(res.metrics) and {r.task for r in rows} == {TASK}
    assert all(r.n == 2 and r.step == 7 and r.extra["settings"]["r_max"] == 2 for r in rows)
    gen = _Scripted(script)
    again = self_consistency(tiny_lm_checkpoint, tiny_corpus, s, results=tmp_path, generator=gen)
    assert again.cached and gen.calls == 0 and again.metrics == res.metrics


def test_self_consistency_end_to_end_is_deterministic(tiny_lm_checkpoint, tiny_corpus):
    s = SCSettings(r_max=2, n_problems=2, max_new_tokens=6, seed=3)
    a = self_consistency(tiny_lm_checkpoint, tiny_corpus, s)
    b = self_consistency(tiny_lm_checkpoint, tiny_corpus, s)
    assert a.completions == b.completions and a.metrics == b.metrics
    assert [len(c) for c in a.completions] == [4, 4]
    assert set(a.metrics) == {f"{m}@{n}" for m in ("maj", "cov") for n in (1, 2, 4)}


def test_self_consistency_stale_settings_replaced_not_added(tiny_lm_checkpoint, tiny_corpus,
                                                            tmp_path):
    """Other settings replace the checkpoint's part: the table never holds two answers
    (which the claims would average as if they were two seeds)."""
    from optimal_sparsity.results.points import final_points

    always = {i: [7, 7, 7, 7] for i in range(2)}  # maj@1 = 0 (7 is not the answer)
    items = [json.loads(x) for x in
             (tiny_corpus / "eval" / "gsm8k_proxy.jsonl").read_text().splitlines()[:2]]
    right = {i: [int(it["target"])] * 4 for i, it in enumerate(items)}  # maj@1 = 1
    old, new = SCSettings(r_max=2, n_problems=2, seed=0), SCSettings(r_max=1, n_problems=2)
    self_consistency(tiny_lm_checkpoint, tiny_corpus, old, results=tmp_path,
                     generator=_Scripted(always))
    res = self_consistency(tiny_lm_checkpoint, tiny_corpus, new, results=tmp_path,
                           generator=_Scripted(right))
    assert not res.cached and res.metrics["maj@1"] == 1.0
    rows = read_rows(tmp_path)
    assert [r.value for r in rows if r.metric == "maj@1"] == [1.0]  # one value, the new one
    assert {r.metric for r in rows} == {"maj@1", "cov@1", "maj@2", "cov@2"}
    assert all(r.extra["settings"] == new.to_dict() for r in rows)
    (point,) = final_points(rows)
    assert point.values[(TASK, "maj@1")] == [1.0]
    # and back: the part made with `new` is not served for `old`
    gen = _Scripted(always)
    back = self_consistency(tiny_lm_checkpoint, tiny_corpus, old, results=tmp_path,
                            generator=gen)
    assert not back.cached and gen.calls == 2
    assert [r.value for r in read_rows(tmp_path) if r.metric == "maj@1"] == [0.0]
