"""Pull mode's test-time compute and few-shot sweep (Fig 6, Fig 11) with the paper's GSM8K
settings, on a tiny released-format model and GSM8K as the authors' task-loss file reveals
it (served as ``openai/gsm8k``'s layout); HF sampling on a CPU."""

from __future__ import annotations

import pytest
from gsm8k_recovered import recover, write_repo
from test_pull_grpo import CHAT, TINY

from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
from optimal_sparsity.eval.paper_ttc import (
    FEWSHOT_TASK,
    SC_TASK,
    PaperSC,
    gsm8k_problems,
    strict_answer,
)
from optimal_sparsity.eval.taskloss_data import load_authors_inputs
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.testing.local_hub import write_model_repo


@pytest.fixture(scope="module")
def gsm8k_dir(tmp_path_factory):
    train, test = recover(load_authors_inputs("gsm8k"))
    return write_repo(tmp_path_factory.mktemp("gsm8k") / "openai" / "gsm8k", train, test)


def test_strict_answer_is_lm_evals_strict_match():
    assert strict_answer("so 3 + 4 = 7\n#### 1,234.") == "1234"
    assert strict_answer("#### -5 apples") == "-5"
    assert strict_answer("the answer is 7") is None
    assert PaperSC().sizes[-1] == 128 and PaperSC().max_new_tokens == 1024


def test_problems_are_the_zero_shot_gsm8k_prompts(gsm8k_dir):
    problems = gsm8k_problems(gsm8k_dir, limit=3)
    _, test = recover(load_authors_inputs("gsm8k"))
    assert [p["prompt"] for p in problems] == [
        f"Question: {t['question']}\nAnswer:" for t in test[:3]]
    assert [p["target"] for p in problems] == [strict_answer(t["answer"]) for t in test[:3]]


def test_paper_sc_and_fewshot_tiers(gsm8k_dir, tiny_corpus, tmp_path):
    cfg = scaled_config(32, 4, 2, n_layers=1, vocab_size=384, max_seq_len=1024)
    model = write_model_repo(tmp_path / "m", "test-org/optimal-sparsity-math-d32-E4-k2", cfg,
                             tokenizer_dir=tiny_corpus / "tokenizer")
    settings = EvalSettings(tiers=("paper_sc", "paper_fewshot"), limit=2, batch_size=2,
                            paper_backend="hf", paper_gsm8k_data=str(gsm8k_dir),
                            paper_sc_power=2, paper_sc_max_new_tokens=8,
                            paper_fewshot_shots=(0, 1))
    statuses: list = []
    rows = evaluate_checkpoint(model, None, tmp_path / "table", settings, log=lambda _: None,
                               statuses=statuses)
    assert [s.status for s in statuses] == ["measured", "measured"], statuses
    sc = {r.metric: r for r in rows if r.task == SC_TASK}
    assert set(sc) == {f"{k}@{n}" for k in ("maj", "cov") for n in (1, 2, 4)}
    assert all(r.n == 2 and r.source == "pull" and 0 <= r.value <= 1 for r in sc.values())
    assert sc["cov@1"].value <= sc["cov@2"].value <= sc["cov@4"].value
    assert sc["maj@1"].value == sc["cov@1"].value  # one sample: the vote is that sample
    assert sc["maj@1"].extra["temperature"] == 0.6 and sc["maj@1"].extra["top_p"] == 0.95
    few = {r.metric: r for r in rows if r.task == FEWSHOT_TASK}
    assert set(few) == {"acc@0shot", "acc@1shot"} and all(r.n == 2 for r in few.values())
    again: list = []
    evaluate_checkpoint(model, None, tmp_path / "table", settings, log=lambda _: None,
                        statuses=again)
    assert [s.status for s in again] == ["cached", "cached"]


def test_without_gsm8k_the_tiers_say_why(tiny_corpus, tmp_path):
    cfg = scaled_config(32, 2, 2, n_layers=1, vocab_size=384, max_seq_len=256)
    model = write_model_repo(tmp_path / "m", "test-org/optimal-sparsity-math-d32-E2-k2", cfg,
                             tokenizer_dir=tiny_corpus / "tokenizer")
    statuses: list = []
    evaluate_checkpoint(model, None, tmp_path / "table",
                        EvalSettings(tiers=("paper_sc", "paper_fewshot"), paper_backend="hf"),
                        log=lambda _: None, statuses=statuses)
    assert [s.status for s in statuses] == ["skipped", "skipped"]
    assert all("no GSM8K snapshot was pulled" in s.reason for s in statuses)


def test_fig6_pull_mode_runs_self_consistency_from_the_hub(tiny_corpus, tmp_path, harness_env):
    """`fig6 --mode pull`: the lock pins two tiny models and GSM8K on the local hub; pull
    mode pulls them, samples self-consistency (cut to 2 problems, 4 samples of 16 tokens) and
    decides C6.ttc-raises-accuracy from those rows; GRPO (the authors' recipe, cut to one
    step of tiny batches: test_pull_grpo.TINY) decides C6.grpo-raises-accuracy;
    paper_accuracy runs GSM8K in the authors' harness from the pulled snapshot."""
    import json

    from hub_helpers import run_pull_figure, tiny_released_models

    from optimal_sparsity.hub.lock import Lock
    from optimal_sparsity.hub.skeleton import DATASETS, dataset_entry

    harness_env()  # paper_accuracy's environment (built on first use; skipped without PyPI)
    gsm8k = next(s for s in DATASETS if s.name == "gsm8k")
    root = tmp_path / "hub"
    train, test = recover(load_authors_inputs("gsm8k"))
    write_repo(root / "datasets" / gsm8k.repo_id, train, test)
    entries = tiny_released_models(root, tiny_corpus, (2, 4), chat_template=CHAT)
    lock = Lock(models=tuple(entries), datasets=(dataset_entry(gsm8k),))
    code, log, err, rows = run_pull_figure(
        root, lock, [e.name for e in entries] + ["gsm8k"], tmp_path,
        ["fig6", "--limit", "2", "--sc-power", "2", "--sc-max-new-tokens", "16",
         *[a for k, v in TINY for a in ("--grpo", f"{k}={v}")]])
    assert code == 0, err
    assert "not run" not in log
    sc = {(r["model"], r["metric"]) for r in rows if r["task"] == SC_TASK}
    assert {(m, "maj@4") for m in ("d32-E2-k2", "d32-E4-k2")} <= sc
    acc = [r for r in rows if r["task"] == "gsm8k" and r["metric"] == "acc"]
    assert {r["model"] for r in acc} == {"d32-E2-k2", "d32-E4-k2"}
    assert all(r["extra"]["lm_eval"] == "0.4.7" and r["n"] == 2 for r in acc)
    assert all(str(tmp_path / "cache") in r["extra"]["data"] for r in acc)
    verdicts = json.loads((tmp_path / "results" / "pull" / "fig6" / "verdicts.json").read_text())
    ttc = verdicts["C6.ttc-raises-accuracy"]
    assert ttc["status"] != "not testable" and "maj@4 - maj@1" in ttc["statistic"]
    grpo = {(r["model"], r["metric"]) for r in rows if r["task"] == "gsm8k_grpo"}
    assert {(m, "acc_after") for m in ("d32-E2-k2", "d32-E4-k2")} <= grpo
    assert verdicts["C6.grpo-raises-accuracy"]["status"] != "not testable"
    assert "tier in pull mode" not in log  # every tier fig6 needs runs
