"""Pull mode's GRPO (Fig 6, Fig 10) with the authors' verl settings expressed in trl: the
settings and their arithmetic, the rewards, and both tiers (GSM8K train, MATH train) run on a
tiny released-format model with a chat template, GSM8K as the authors' task-loss file reveals
it and a few MATH rows, HF sampling on a CPU."""

from __future__ import annotations

import json

import pytest
from gsm8k_recovered import recover, write_repo

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval import paper_grpo as pg
from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
from optimal_sparsity.eval.grpo import GRPO_PRESETS, parse_override
from optimal_sparsity.eval.taskloss_data import load_authors_inputs
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.testing.local_hub import write_model_repo

CHAT = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}")
# A CPU-sized run of the authors' recipe: same algorithm and options, tiny batches.
TINY = (("use_vllm", False), ("use_cpu", True), ("bf16", False), ("epochs", 0),
        ("max_steps", 1), ("n_prompts", 4), ("num_generations", 2), ("per_device_batch", 4),
        ("grad_accum", 1), ("generation_batch", 4), ("max_completion_length", 8))
MATH_ROWS = [
    {"problem": "What is $1+1$?", "solution": "We add: $1+1=\\boxed{2}$."},
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
    {"problem": "Evaluate $3^2$.", "solution": "$3^2 = \\boxed{9}$"},
    {"problem": "What is $10-4$?", "solution": "So \\boxed{6}."},
]


def test_the_authors_settings_in_trl():
    """train_batch_size 1024 prompts x rollout.n 5, ppo_mini_batch_size 256, 15 epochs of
    MATH train (7,500) or GSM8K train (7,473): 105 rollout batches of 4 optimizer steps."""
    paper = GRPO_PRESETS["paper"]
    assert paper.num_generations == 5 and paper.generation_batch == 1024 * 5
    assert paper.per_device_batch * paper.grad_accum == 256 * 5
    assert (paper.max_completion_length, paper.max_prompt_tokens) == (1024, 512)
    assert (paper.learning_rate, paper.beta, paper.kl_bias_correction) == (5e-6, 1e-3, False)
    assert paper.steps_for(7500) == paper.steps_for(7473) == 105 * 4
    cfg = paper.replace(bf16=False, use_cpu=True).trl_config("/tmp/unused")
    assert cfg.generation_batch_size == 5120 and cfg.use_bias_correction_kl is False
    assert cfg.steps_per_generation * cfg.per_device_train_batch_size == 5120
    with pytest.raises(UserError):
        paper.steps_for(1000)  # fewer prompts than one rollout batch


def test_overrides_parse_as_the_fields_types():
    assert parse_override("max_steps=2") == ("max_steps", 2)
    assert parse_override("use_vllm=false") == ("use_vllm", False)
    assert parse_override("learning_rate=1e-5") == ("learning_rate", 1e-5)
    assert parse_override("generation_batch=none") == ("generation_batch", None)
    for bad in ("max_steps", "nope=1", "max_steps=two", "use_vllm=maybe", "name=x"):
        with pytest.raises(UserError):
            parse_override(bad)


def test_rewards_read_text_only():
    assert pg.last_boxed("a \\boxed{\\frac{1}{2}} then \\boxed{3}") == "3"
    assert pg.last_boxed("\\boxed{x^{2}}") == "x^{2}" and pg.last_boxed("none") is None
    assert pg.last_boxed("\\boxed{unclosed") is None
    got = pg.paper_reward(
        ["so #### 1,234", "#### 12", "\\boxed{\\dfrac{1}{2}}.", "\\boxed{ 3 }", "no answer"],
        ["1234", "13", "\\frac{1}{2}", "4", "\\frac{1}{2}"],
        ["gsm8k", "gsm8k", "math", "math", "math"])
    assert got == [1.0, 0.0, 1.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("data")
    train, test = recover(load_authors_inputs("gsm8k"))
    gsm8k = write_repo(root / "openai" / "gsm8k", train, test)
    math = root / "math"
    (math / "data").mkdir(parents=True)
    pq.write_table(pa.table({k: [r[k] for r in MATH_ROWS] for k in ("problem", "solution")}),
                   math / "data" / "train-00000-of-00001.parquet")
    return gsm8k, math


def test_training_sets_are_single_user_messages(data):
    gsm8k, math = data
    rows = pg.gsm8k_train_rows(gsm8k, 2)
    assert len(rows) == 2 and rows[0]["prompt"][0]["role"] == "user"
    assert rows[0]["kind"] == "gsm8k" and rows[0]["target"].lstrip("-").isdigit()
    m = pg.math_train_rows(math)
    assert [r["target"] for r in m] == ["2", "\\frac{1}{2}", "9", "6"]
    assert m[0]["prompt"] == [{"role": "user", "content": "What is $1+1$?"}]


def test_both_grpo_tiers_on_a_tiny_model(data, tiny_corpus, tmp_path):
    gsm8k, math = data
    cfg = scaled_config(32, 4, 2, n_layers=1, vocab_size=384, max_seq_len=1024)
    model = write_model_repo(tmp_path / "m", "test-org/optimal-sparsity-math-d32-E4-k2", cfg,
                             tokenizer_dir=tiny_corpus / "tokenizer", chat_template=CHAT)
    settings = EvalSettings(tiers=("paper_grpo", "paper_grpo_math"), limit=2, batch_size=2,
                            paper_backend="hf", paper_gsm8k_data=str(gsm8k),
                            paper_math_data=str(math), paper_grpo_overrides=TINY)
    statuses: list = []
    rows = evaluate_checkpoint(model, None, tmp_path / "table", settings, log=lambda _: None,
                               statuses=statuses)
    assert [s.status for s in statuses] == ["measured", "measured"], statuses
    by = {(r.task, r.metric): r for r in rows}
    for task, train_set in (("gsm8k_grpo", "gsm8k"), ("math_grpo", "math")):
        before, after = by[(task, "acc_before")], by[(task, "acc_after")]
        assert before.n == after.n == 2 and 0 <= before.value <= 1 and 0 <= after.value <= 1
        extra = after.extra
        assert extra["train_set"] == train_set and extra["grpo"]["max_steps"] == 1
        assert extra["grpo"]["kl_bias_correction"] is False  # the authors' KL, kept
        assert extra["eval_shots"] == 4 and extra["prompts"] == 4
    again: list = []
    evaluate_checkpoint(model, None, tmp_path / "table", settings, log=lambda _: None,
                        statuses=again)
    assert [s.status for s in again] == ["cached", "cached"]


def test_the_tiers_say_why_they_cannot_run(data, tiny_corpus, tmp_path):
    gsm8k, _ = data
    cfg = scaled_config(32, 2, 2, n_layers=1, vocab_size=384, max_seq_len=1024)
    model = write_model_repo(tmp_path / "m", "test-org/optimal-sparsity-math-d32-E2-k2", cfg,
                             tokenizer_dir=tiny_corpus / "tokenizer")
    cases = [(EvalSettings(tiers=("paper_grpo",), paper_backend="hf",
                           paper_gsm8k_data=str(gsm8k)), "CUDA GPU"),  # the authors' preset
             (EvalSettings(tiers=("paper_grpo_math",), paper_backend="hf",
                           paper_gsm8k_data=str(gsm8k), paper_grpo_overrides=TINY),
              "no MATH snapshot")]
    for settings, reason in cases:
        statuses: list = []
        evaluate_checkpoint(model, None, tmp_path / "t", settings, log=lambda _: None,
                            statuses=statuses)
        assert statuses[0].status == "skipped" and reason in statuses[0].reason, statuses
    with pytest.raises(UserError, match="chat template"):
        evaluate_checkpoint(model, None, tmp_path / "t", EvalSettings(
            tiers=("paper_grpo",), paper_backend="hf", paper_gsm8k_data=str(gsm8k),
            paper_grpo_overrides=TINY), log=lambda _: None)
    assert json.dumps(TINY)  # the overrides are JSON (the cache key stores them)


def test_fig10_pull_mode_pulls_math_and_runs_both_sets(tiny_corpus, tmp_path):
    """`fig10 --mode pull`: the lock pins three tiny models, GSM8K and MATH on the local hub;
    pull mode pulls them, runs GRPO on each training set (cut to one step: TINY) and decides
    C10 from those rows (no claim lacks a tier)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from hub_helpers import run_pull_figure, tiny_released_models

    from optimal_sparsity.hub.lock import Lock
    from optimal_sparsity.hub.skeleton import DATASETS, dataset_entry

    specs = {s.name: s for s in DATASETS}
    root = tmp_path / "hub"
    train, test = recover(load_authors_inputs("gsm8k"))
    write_repo(root / "datasets" / specs["gsm8k"].repo_id, train, test)
    math = root / "datasets" / specs["math"].repo_id / "data"
    math.mkdir(parents=True)
    pq.write_table(pa.table({k: [r[k] for r in MATH_ROWS] for k in ("problem", "solution")}),
                   math / "train-00000-of-00001.parquet")
    entries = tiny_released_models(root, tiny_corpus, (2, 4, 8), chat_template=CHAT)
    lock = Lock(models=tuple(entries), datasets=(dataset_entry(specs["gsm8k"]),
                                                 dataset_entry(specs["math"])))
    code, log, err, rows = run_pull_figure(
        root, lock, [e.name for e in entries] + ["gsm8k", "math"], tmp_path,
        ["fig10", "--limit", "2", *[a for k, v in TINY for a in ("--grpo", f"{k}={v}")]])
    assert code == 0, err
    assert "tier in pull mode" not in log
    assert "MATH (GRPO): not pulled" not in log and "GSM8K (self-consistency" not in log
    for task in ("gsm8k_grpo", "math_grpo"):
        got = {r["model"] for r in rows if r["task"] == task and r["metric"] == "acc_after"}
        assert got == {e.name for e in entries}, task
    verdicts = json.loads((tmp_path / "results" / "pull" / "fig10" / "verdicts.json").read_text())
    c10 = verdicts["C10.grpo-either-set"]
    assert "tier" not in json.dumps(c10) and c10["statistic"], c10
