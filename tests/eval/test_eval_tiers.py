"""The tier declarations (``tiers``) agree with the evaluator that runs them."""

from __future__ import annotations

import inspect

from optimal_sparsity.eval.evaluate import TIER_FUNCS
from optimal_sparsity.tiers import ALL_TIERS, CORPUS_TIERS, DEFAULT_TIERS, PULL_TIERS, TIERS


def test_the_evaluator_runs_exactly_the_checkpoint_tiers():
    assert tuple(TIER_FUNCS) == TIERS
    assert set(DEFAULT_TIERS) <= set(TIERS) and set(PULL_TIERS) <= set(TIERS)
    assert len({t.name for t in ALL_TIERS}) == len(ALL_TIERS)


def test_a_tier_reads_the_corpus_iff_it_is_declared_to():
    """A tier function asks for the corpus (``job.need_corpus``) exactly when its tier is
    declared ``reads_corpus``: the CLI resolves the corpus from that declaration."""
    reads = {t for t, fn in TIER_FUNCS.items() if "need_corpus(" in inspect.getsource(fn)}
    assert reads == CORPUS_TIERS
    assert {"pretrain", "task_loss", "accuracy", "fewshot", "knowledge_bits", "sc", "grpo",
            "grpo2"} == CORPUS_TIERS
