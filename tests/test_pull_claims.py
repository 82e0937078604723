"""What pull mode can decide: every claim declares its needs, and the README's pull column
follows the pipeline's own declarations."""

from dataclasses import replace

from optimal_sparsity.claims.registry import CLAIMS
from optimal_sparsity.study.claims_table import claims_markdown
from optimal_sparsity.study.pull_claims import CLAIM_NEEDS, UNRELEASED, pull_runs, pull_status


def test_every_claim_declares_its_pull_mode_needs():
    assert set(CLAIM_NEEDS) == {c.id for c in CLAIMS}


def test_claims_needing_what_the_release_lacks_are_not_testable():
    for cid, needs in CLAIM_NEEDS.items():
        status = pull_status(cid)
        if any(n in UNRELEASED for n in needs):
            assert not status.testable and status.text.startswith("not testable: ")
            assert any(UNRELEASED[n] in status.text for n in needs if n in UNRELEASED)
    assert "no training losses" in pull_status("C1.loss-vs-params").text
    assert "intermediate checkpoints" in pull_status("C4.reasoning-denser-better").text
    assert pull_status("C1.gsm8k-taskloss-threshold").text == "hub"  # carried authors' file
    assert "taskloss-build" in pull_status("C1.hellaswag-taskloss").text
    assert pull_status("C7.reasoning-tpp-peak").testable


def test_the_column_follows_what_the_pipeline_runs():
    runs = pull_runs()
    assert "humaneval_plus" in runs.accuracy_tasks and "gsm_plus" in runs.built_task_loss
    assert pull_status("C6.ttc-raises-accuracy", runs).text == "hub; GPU advised"
    assert pull_status("C11.fewshot-unstable", runs).text == "hub; GPU advised"
    for cid in ("C6.grpo-raises-accuracy", "C6.trend-survives", "C10.grpo-either-set"):
        assert pull_status(cid, runs).text == "hub; GPU advised"
    without_math = replace(runs, tiers=tuple(t for t in runs.tiers if t != "paper_grpo_math"))
    assert pull_status("C10.grpo-either-set", without_math).text == (
        "not testable: no MATH GRPO tier in pull mode")
    without_sc = replace(runs, tiers=tuple(t for t in runs.tiers if t != "paper_sc"))
    assert pull_status("C6.ttc-raises-accuracy", without_sc).text == (
        "not testable: no self-consistency tier in pull mode")
    no_loss = replace(runs, tiers=("paper_accuracy",), carried_task_loss=frozenset(),
                      built_task_loss={})
    assert "does not evaluate task_loss:gsm8k" in pull_status("C1.gsm8k-taskloss-threshold",
                                                              no_loss).text
    table = claims_markdown()
    for c in CLAIMS:
        assert f"| {pull_status(c.id, runs).text} |" in table
    assert "GPU advised)" not in table  # the old hand-written column is gone
