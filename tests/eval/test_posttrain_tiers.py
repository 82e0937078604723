"""Self-consistency and GRPO as tiers of the one evaluation entry point: ``./reproduce eval
--tiers sc grpo`` finds the corpus, measures what the functions measure, caches under the
same part as the ``selfconsistency`` / ``grpo`` commands, and replaces a part of the
convention a table written before the tiers joined the driver used."""

from __future__ import annotations

import pytest

from optimal_sparsity.cli import main
from optimal_sparsity.eval.evaluate import torch_threads
from optimal_sparsity.eval.rows import checkpoint_identity
from optimal_sparsity.results.table import PARTS, Row, part_name, read_rows, write_part

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # trl's alias warning

SC_ARGS = ["--tiers", "sc", "--sc-power", "1", "--sc-problems", "3", "--max-new-tokens", "8",
           "--threads", "1"]
GRPO = {"max_steps": 1, "num_generations": 2, "per_device_batch": 4,
        "max_completion_length": 6, "eval_n": 3, "eval_max_new_tokens": 6, "reward_samples": 2}


def _eval(eval_run, root, *args: str) -> None:
    assert main(["eval", str(eval_run.ckpt), "--results", str(root), *args]) == 0


def test_sc_tier_is_the_selfconsistency_measurement(eval_run, tmp_path, capsys):
    from optimal_sparsity.eval.selfconsistency import TASK, SCSettings, self_consistency

    _eval(eval_run, tmp_path, *SC_ARGS)  # no --corpus: the checkpoint's own
    rows = read_rows(tmp_path)
    settings = SCSettings(r_max=1, n_problems=3, max_new_tokens=8)
    with torch_threads(1):  # as the tier ran
        direct = self_consistency(eval_run.ckpt, eval_run.corpus, settings)
    assert {r.task for r in rows} == {TASK}
    assert {r.metric: r.value for r in rows} == direct.metrics
    assert all(r.extra["tier"] == "sc" and r.extra["settings"] == settings.to_dict()
               and r.n == 3 for r in rows)
    capsys.readouterr()
    _eval(eval_run, tmp_path, *SC_ARGS)
    assert "sc: cached" in capsys.readouterr().err
    # the command's function reads and writes the same part: one cache, not two
    again = self_consistency(eval_run.ckpt, eval_run.corpus, settings, results=tmp_path)
    assert again.cached and again.metrics == direct.metrics
    assert len(list((tmp_path / PARTS).glob("*.jsonl"))) == 1
    # another seed is another measurement: the part is replaced, not added to
    _eval(eval_run, tmp_path, *SC_ARGS, "--seed", "1")
    rows = read_rows(tmp_path)
    assert len(rows) == len(direct.metrics) and {r.extra["settings"]["seed"] for r in rows} == {1}


def test_sc_tier_replaces_a_part_of_the_former_convention(eval_run, tmp_path):
    """A table written before sc was a tier holds its rows in a part per (run, step, task):
    the tier's part replaces it, so each question keeps one answer."""
    from optimal_sparsity.eval.selfconsistency import TASK

    ident = checkpoint_identity(eval_run.ckpt)
    old = part_name(ident["run"], ident["step"], TASK)
    write_part(tmp_path, old, [Row(run=ident["run"], model=ident["model"], step=ident["step"],
                                   task=TASK, metric="maj@1", value=0.5)])
    _eval(eval_run, tmp_path, *SC_ARGS)
    assert not (tmp_path / PARTS / old).exists()
    assert not (tmp_path / PARTS / (old + ".sha256")).exists()
    rows = read_rows(tmp_path)
    assert sorted(r.metric for r in rows) == ["cov@1", "cov@2", "maj@1", "maj@2"]


def test_grpo_tier_runs_grpo_and_shares_the_commands_cache(eval_run, tmp_path, capsys):
    from optimal_sparsity.eval.grpo import TASK, cached_grpo, get_preset, run_grpo

    overrides = [a for k, v in GRPO.items() for a in ("--grpo", f"{k}={v}")]
    _eval(eval_run, tmp_path / "table", "--tiers", "grpo", "--threads", "1", *overrides)
    rows = read_rows(tmp_path / "table")
    settings = get_preset("cpu").replace(**GRPO)
    assert {r.task for r in rows} == {TASK}
    assert {r.metric for r in rows} == {"acc_before", "acc_after", "reward_before",
                                        "reward_after"}
    assert all(r.extra["tier"] == "grpo" and r.extra["settings"] == settings.to_dict()
               for r in rows)
    ident = checkpoint_identity(eval_run.ckpt)
    tuned = list((tmp_path / "table" / "grpo" / f"{ident['run']}-{ident['step']}")
                 .glob("*/checkpoint"))
    assert len(tuned) == 1  # the tuned model, beside the table
    assert cached_grpo(tmp_path / "table", eval_run.ckpt, settings)
    capsys.readouterr()
    _eval(eval_run, tmp_path / "table", "--tiers", "grpo", "--threads", "1", *overrides)
    assert "grpo: cached" in capsys.readouterr().err
    # the same numbers as the GRPO function (seeded) with the same settings
    with torch_threads(1):
        direct = run_grpo(eval_run.ckpt, eval_run.corpus, tmp_path / "direct", settings,
                          save=False)
    assert {r.metric: r.value for r in rows} == direct.metrics()


def test_posttrain_tiers_skip_a_released_checkpoint(tmp_path):
    from optimal_sparsity.eval.evaluate import TierSkipped, _retrain_only

    class Job:
        source = "pull"

    with pytest.raises(TierSkipped, match="paper_sc"):
        _retrain_only(Job(), "sc", "paper_sc")  # type: ignore[arg-type]
