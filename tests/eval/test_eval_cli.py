"""``./reproduce eval`` end to end on a tiny trained checkpoint: all tiers, the results
table with provenance, caching, corpus resolution; and the plain ``lm-eval`` CLI on an
exported checkpoint with the project's task definitions (the README's command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optimal_sparsity.cli import main
from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.evaluate import EvalSettings, TierStatus, evaluate_checkpoint
from optimal_sparsity.results.table import PARTS, read_rows
from optimal_sparsity.tiers import CORPUS_TIERS

SMOKE = ["--smoke", "--threads", "1"]
PROXY = ("triviaqa_proxy", "hellaswag_proxy", "gsm8k_proxy", "gsmplus_proxy")
EXPECTED = {("pretrain", "train_loss"), ("pretrain", "val_loss")}
EXPECTED |= {(t, m) for t in PROXY for m in ("task_loss", "task_loss_bpb", "acc")}
EXPECTED |= {("hellaswag_proxy", "acc_norm")}
EXPECTED |= {(t, m) for t in ("gsm8k_proxy", "gsmplus_proxy") for m in ("acc_flexible",
                                                                         "step_acc")}


@pytest.fixture(scope="module")
def cli_run(eval_run, tmp_path_factory):
    """One smoke evaluation as a user runs it (corpus resolved from the checkpoint)."""
    root = tmp_path_factory.mktemp("results")
    res = subprocess.run([sys.executable, "-m", "optimal_sparsity.cli", "eval",
                          str(eval_run.run), "--results", str(root), *SMOKE],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return root, res.stdout


@pytest.fixture(scope="module")
def cli_results(cli_run):
    return cli_run[0]


def test_eval_writes_every_tier_with_provenance(cli_run, eval_run):
    cli_results, stdout = cli_run
    assert "s-d32-E4-k2 step 80" in stdout
    for task, metric in EXPECTED:  # the printed table lists every measurement
        assert any(line.split()[:2] == [task, metric] for line in stdout.splitlines())
    rows = read_rows(cli_results)
    assert {(r.task, r.metric) for r in rows} == EXPECTED
    assert len(rows) == len(EXPECTED)
    assert len(list((cli_results / PARTS).glob("*.jsonl"))) == 3  # one part per tier
    meta = json.loads((eval_run.ckpt / "config.json").read_text())
    for r in rows:
        assert r.model == "s-d32-E4-k2" and r.step == meta["step"] == 80
        assert r.tokens == meta["tokens"] and r.source == "retrain" and r.seed == 0
        assert r.config_hash and r.run and r.commit and r.hardware and r.time
        assert r.versions["lm_eval"] == "0.4.13" and "torch" in r.versions
        assert r.corpus == meta["corpus_fingerprint"]
        assert r.n == 8  # --smoke: 8 items / sequences
        assert r.extra["settings"] and r.extra["tier"] in ("pretrain", "task_loss", "accuracy")
    by = {(r.task, r.metric): r.value for r in rows}
    assert 0 < by[("pretrain", "val_loss")] < 6  # nats/token, vocab 384: ln 384 = 5.95
    for t in PROXY:
        assert by[(t, "task_loss")] > 0 and 0 <= by[(t, "acc")] <= 1


def test_second_run_is_cached_and_settings_changes_recompute(cli_results, eval_run):
    before = {p.name: p.read_bytes() for p in (cli_results / PARTS).glob("*.jsonl")}
    statuses: list[TierStatus] = []
    rows = evaluate_checkpoint(eval_run.ckpt, eval_run.corpus, cli_results,
                               EvalSettings.smoke(threads=1), statuses=statuses)
    assert [s.status for s in statuses] == ["cached"] * 3
    assert len(rows) == len(EXPECTED)
    assert {p.name: p.read_bytes() for p in (cli_results / PARTS).glob("*.jsonl")} == before

    # another limit changes the task-loss numbers: that part is replaced, not duplicated
    statuses = []
    evaluate_checkpoint(eval_run.ckpt, eval_run.corpus, cli_results,
                        EvalSettings.smoke(threads=1, limit=5, tiers=("task_loss",)),
                        statuses=statuses)
    assert [(s.tier, s.status) for s in statuses] == [("task_loss", "measured")]
    rows = read_rows(cli_results)
    assert len(rows) == len(EXPECTED)
    assert {r.n for r in rows if r.metric == "task_loss"} == {5}

    # --force recomputes a part even with the same settings
    statuses = []
    evaluate_checkpoint(eval_run.ckpt, eval_run.corpus, cli_results,
                        EvalSettings.smoke(threads=1, tiers=("pretrain",), force=True),
                        statuses=statuses)
    assert [s.status for s in statuses] == ["measured"]


def test_paper_tiers_on_a_scaled_down_checkpoint(eval_run, tmp_path, capsys):
    rc = main(["eval", str(eval_run.ckpt), "--results", str(tmp_path), *SMOKE,
               "--tiers", "paper_task_loss", "paper_accuracy"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "paper_accuracy: skipped" in out and "offline" in out
    rows = read_rows(tmp_path)
    assert {r.task for r in rows} == {"gsm8k", "humaneval", "mbpp"}
    assert all("not a result" in r.extra["note"] for r in rows)


def test_fewshot_tier_finds_the_corpus_on_its_own(eval_run, tmp_path, capsys):
    """Every tier that reads the corpus resolves it from the checkpoint (no --corpus)."""
    rc = main(["eval", str(eval_run.ckpt), "--results", str(tmp_path), *SMOKE,
               "--tiers", "fewshot", "--limit", "2"])
    assert rc == 0, capsys.readouterr().err
    assert {r.task for r in read_rows(tmp_path)} == {"gsm8k_proxy_fewshot"}


@pytest.mark.parametrize("tier", sorted(CORPUS_TIERS))
def test_every_corpus_tier_finds_the_corpus_on_its_own(tier, eval_run, tmp_path, monkeypatch):
    """``--tiers T`` for any tier that reads the corpus passes the evaluator the checkpoint's
    own corpus (no --corpus)."""
    from optimal_sparsity.eval import evaluate

    seen = []
    monkeypatch.setattr(evaluate, "evaluate_checkpoint",
                        lambda ckpt, corpus, *a, **kw: seen.append(corpus) or [])
    assert main(["eval", str(eval_run.ckpt), "--results", str(tmp_path), "--tiers", tier]) == 0
    assert seen == [eval_run.corpus]


def test_corpus_resolution_and_mismatch(eval_run, tmp_path, tiny_corpus, capsys):
    from optimal_sparsity.commands.eval import resolve_corpus

    assert resolve_corpus(eval_run.ckpt) == Path(tiny_corpus)
    # a checkpoint whose corpus cannot be found: a one-line error asking for --corpus
    ckpt = tmp_path / "ckpt"
    shutil.copytree(eval_run.ckpt, ckpt)
    meta = json.loads((ckpt / "config.json").read_text())
    meta["train"]["corpus"] = str(tmp_path / "gone")
    (ckpt / "config.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="pass --corpus"):
        resolve_corpus(ckpt)
    # a corpus with another tokenizer is refused
    other = tmp_path / "other"
    shutil.copytree(tiny_corpus, other)
    tj = other / "tokenizer" / "tokenizer.json"
    tj.write_text(tj.read_text().replace("<|pad|>", "<|pad2|>"))
    assert main(["eval", str(eval_run.ckpt), "--corpus", str(other), "--results",
                 str(tmp_path / "r"), *SMOKE]) == 2
    assert "tokenizer" in capsys.readouterr().err


def test_plain_lm_eval_cli_on_an_exported_checkpoint(eval_run, eval_hf_dir, tmp_path):
    """The README's commands: write the task YAMLs, then lm-eval's own CLI and hf backend.
    Run from another directory (data paths are absolute); the score equals the adapter's."""
    tasks = tmp_path / "tasks"
    assert main(["lm-eval-tasks", "--corpus", str(eval_run.corpus), "--out", str(tasks)]) == 0
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
           f"pretrained={eval_hf_dir},dtype=float32", "--tasks", "gsm8k_proxy",
           "--include_path", str(tasks), "--limit", "5", "--device", "cpu",
           "--output_path", str(tmp_path / "out"), "--gen_kwargs", "max_gen_toks=32"]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "gsm8k_proxy" in res.stdout and "strict-match" in res.stdout
    (out,) = (tmp_path / "out").rglob("results_*.json")
    cli = json.loads(out.read_text())["results"]["gsm8k_proxy"]

    from optimal_sparsity.checkpoint import load_checkpoint
    from optimal_sparsity.data.tokenizer import load_tokenizer
    from optimal_sparsity.eval.harness import run_proxy_tasks
    from optimal_sparsity.eval.lm_adapter import MoELM

    model, _ = load_checkpoint(eval_run.ckpt)
    ours = run_proxy_tasks(MoELM(model, load_tokenizer(eval_run.ckpt)), eval_run.corpus,
                           ("gsm8k_proxy",), limit=5, gen_kwargs={"max_gen_toks": 32})
    assert cli["exact_match,strict-match"] == ours.metrics["gsm8k_proxy"]["acc"]
    assert cli["exact_match,flexible-extract"] == ours.metrics["gsm8k_proxy"]["acc_flexible"]


def test_hf_directory_is_evaluated_as_a_pulled_model(eval_run, eval_hf_dir, tmp_path, capsys):
    """An HF Mixtral directory (what a pull yields) runs the paper tiers with source 'pull';
    task loss through import_hf equals the one through our checkpoint."""
    released = tmp_path / "optimal-sparsity-math-d32-E4-k2"
    shutil.copytree(eval_hf_dir, released)
    assert main(["eval", str(released), "--results", str(tmp_path / "r"), "--limit", "2",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "paper_accuracy: skipped" in out and "pretrain" not in out
    pulled = read_rows(tmp_path / "r")
    # the code answers exceed this 128-token model's window: only gsm8k and mbpp fit
    assert {r.task for r in pulled} == {"gsm8k", "mbpp"}
    assert all(r.source == "pull" and r.model == "d32-E4-k2" and "note" not in r.extra
               for r in pulled)
    ours = evaluate_checkpoint(eval_run.ckpt, None, tmp_path / "r2",
                               EvalSettings(tiers=("paper_task_loss",), limit=2, threads=1))
    assert ({(r.task, r.metric): r.value for r in ours}
            == pytest.approx({(r.task, r.metric): r.value for r in pulled}, rel=1e-5))


def test_accuracy_tier_through_the_hf_backend_equals_the_adapter(eval_run, tmp_path):
    def acc(backend: str) -> dict:
        s = EvalSettings.smoke(tiers=("accuracy",), tasks=("triviaqa_proxy", "hellaswag_proxy"),
                               limit=3, backend=backend, threads=1)
        rows = evaluate_checkpoint(eval_run.ckpt, eval_run.corpus, tmp_path / backend, s)
        assert all(r.extra["backend"] == backend for r in rows)
        return {(r.task, r.metric): r.value for r in rows}

    ours = acc("adapter")
    assert set(ours) == {("triviaqa_proxy", "acc"), ("hellaswag_proxy", "acc"),
                         ("hellaswag_proxy", "acc_norm")}
    assert acc("hf") == ours


def test_sharded_hf_directory_evaluates_like_the_checkpoint(eval_run, tmp_path):
    """An export split into many shards (with its index) is read whole by the pull path."""
    from optimal_sparsity.hf_export import WEIGHTS_INDEX, export_hf

    sharded = export_hf(eval_run.ckpt, tmp_path / "optimal-sparsity-math-d32-E4-k2",
                        max_shard_size=40_000)
    assert (sharded / WEIGHTS_INDEX).is_file() and len(list(sharded.glob("*.safetensors"))) > 2
    settings = EvalSettings(tiers=("paper_task_loss",), limit=2, threads=1)
    pulled = evaluate_checkpoint(sharded, None, tmp_path / "r", settings)
    ours = evaluate_checkpoint(eval_run.ckpt, None, tmp_path / "r2", settings)
    assert pulled and all(r.source == "pull" for r in pulled)
    assert ({(r.task, r.metric): r.value for r in ours}
            == pytest.approx({(r.task, r.metric): r.value for r in pulled}, rel=1e-5))
