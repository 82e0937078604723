"""``paper_accuracy`` in the authors' harness: lm-eval 0.4.7 (its own environment) runs the
stock GSM8K task, 4-shot, on a tiny released-format model, reading a GSM8K snapshot laid out
as ``openai/gsm8k`` (recovered from the authors' task-loss file); offline, the tasks without
a snapshot are skipped with the reason."""

from __future__ import annotations

import json

import pytest
from gsm8k_recovered import recover, write_repo

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
from optimal_sparsity.eval.taskloss_data import load_authors_inputs
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.testing.local_hub import write_model_repo


@pytest.fixture(scope="module")
def harness_047(harness_env):
    return harness_env()  # the lm-eval 0.4.7 environment (skipped only without PyPI)


@pytest.fixture(scope="module")
def gsm8k_dir(tmp_path_factory):
    train, test = recover(load_authors_inputs("gsm8k"))
    return write_repo(tmp_path_factory.mktemp("gsm8k") / "openai" / "gsm8k", train, test)


@pytest.fixture(scope="module")
def model_dir(tiny_corpus, tmp_path_factory):
    cfg = scaled_config(32, 4, 2, n_layers=1, vocab_size=384, max_seq_len=4096)
    return write_model_repo(tmp_path_factory.mktemp("m"), "test-org/optimal-sparsity-math-d32-"
                            "E4-k2", cfg, tokenizer_dir=tiny_corpus / "tokenizer")


def test_gsm8k_runs_in_lm_eval_047_from_the_snapshot(harness_047, gsm8k_dir, model_dir,
                                                     tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    settings = EvalSettings(tiers=("paper_accuracy",), limit=3, batch_size=3,
                            paper_backend="hf", paper_task_data=(f"gsm8k={gsm8k_dir}",))
    logs: list[str] = []
    statuses: list = []
    rows = evaluate_checkpoint(model_dir, None, tmp_path / "table", settings, log=logs.append,
                               statuses=statuses)
    assert [s.status for s in statuses] == ["measured"], (statuses, logs[-5:])
    assert {(r.task, r.metric) for r in rows} == {("gsm8k", "acc"), ("gsm8k", "acc_flexible")}
    for r in rows:
        assert r.n == 3 and 0 <= r.value <= 1 and r.source == "pull"
        assert r.extra["lm_eval"] == "0.4.7" and r.extra["harness"] == "authors"
        assert r.extra["data"] == str(gsm8k_dir) and r.extra["num_fewshot"] == 4
        assert r.extra["settings"]["paper_harness"] == "authors"
        assert r.extra["settings"]["paper_data_tasks"] == ["gsm8k"]
    assert any("gsm8k with lm-eval 0.4.7" in m for m in logs)
    skipped = [m for m in logs if "lm-eval tasks skipped" in m]
    assert len(skipped) == 1 and "offline" in skipped[0]
    assert all(t in skipped[0] for t in ("triviaqa", "hellaswag", "gsm_plus", "humaneval"))
    again: list = []
    evaluate_checkpoint(model_dir, None, tmp_path / "table", settings, log=lambda _: None,
                        statuses=again)
    assert [s.status for s in again] == ["cached"]


def test_the_runner_prints_one_json_line_per_task(harness_047, gsm8k_dir, model_dir,
                                                  tmp_path, monkeypatch):
    """The module the tier runs in the environment, called as the tier calls it: its stdout
    is the records alone. On the same model and items, lm-eval 0.4.7 and the project's
    0.4.13 build the same 4-shot prompts, generate the same greedy answers and filter them
    (strict-match, flexible-extract) to the same strings."""
    from optimal_sparsity.eval.harness_env import run_in_harness
    from optimal_sparsity.eval.paper_accuracy_run import harness_args, parse_records, run_task

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    args = harness_args(model_dir, "hf", {"gsm8k": str(gsm8k_dir)}, limit=2, batch_size=2,
                        samples=True)
    res = run_in_harness(args)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and parse_records(res.stdout) == [json.loads(lines[0])]
    rec = json.loads(lines[0])
    assert rec["task"] == "gsm8k" and rec["lm_eval"] == "0.4.7" and rec["n"] == 2
    assert set(rec["metrics"]) == {"acc", "acc_flexible"}
    pinned = run_task("gsm8k", model_dir, "hf", str(gsm8k_dir), limit=2, batch_size=2,
                      samples=True)
    assert pinned["lm_eval"] != "0.4.7" and pinned["n"] == 2
    assert len(rec["samples"]) == 4  # 2 items x 2 filters
    assert all(s["prompt"].count("Question:") == 5 for s in rec["samples"])  # 4 shots + item
    assert pinned["samples"] == rec["samples"] and pinned["metrics"] == rec["metrics"]


def test_the_settings_key_tells_the_harnesses_apart():
    authors = EvalSettings(tiers=("paper_accuracy",))
    pinned = EvalSettings(tiers=("paper_accuracy",), paper_harness="pinned")
    assert authors.paper_harness == "authors"
    assert authors.tier_key("paper_accuracy") != pinned.tier_key("paper_accuracy")
    with pytest.raises(UserError, match="paper_harness"):
        EvalSettings(paper_harness="0.4.7")
    with pytest.raises(UserError, match="TASK=DIR"):
        EvalSettings(paper_task_data=("mmlu=/d",))
    gsm = EvalSettings(paper_gsm8k_data="/g", paper_task_data=("hellaswag=/h",))
    assert gsm.paper_data == {"hellaswag": "/h", "gsm8k": "/g"}


def test_eval_cli_runs_the_pinned_harness_on_a_snapshot(gsm8k_dir, model_dir, tmp_path,
                                                        monkeypatch, capsys):
    """``./reproduce eval HF_DIR --paper-harness pinned --paper-data gsm8k=DIR``: the
    project's lm-eval runs GSM8K in this process; its rows say so."""
    from importlib.metadata import version

    from optimal_sparsity.cli import main
    from optimal_sparsity.results.table import read_rows

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    assert main(["eval", str(model_dir), "--tiers", "paper_accuracy", "--paper-backend", "hf",
                 "--paper-harness", "pinned", "--paper-data", f"gsm8k={gsm8k_dir}",
                 "--limit", "2", "--batch-size", "2", "--results", str(tmp_path / "t")]) == 0
    rows = read_rows(tmp_path / "t")
    assert {(r.task, r.metric) for r in rows} == {("gsm8k", "acc"), ("gsm8k", "acc_flexible")}
    assert all(r.extra["lm_eval"] == version("lm_eval") != "0.4.7" for r in rows)
    assert all(r.extra["settings"]["paper_harness"] == "pinned" for r in rows)
    assert "gsm8k" in capsys.readouterr().out
