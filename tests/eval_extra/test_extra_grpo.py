"""GRPO: the reward, the prompt wiring, the presets, and one real trl step."""

from __future__ import annotations

import json

import pytest
import torch

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.grpo import (
    GRPO_PRESETS,
    TASK,
    GRPOSettings,
    answer_reward,
    build_trainer,
    final_answer_reward,
    gsm8k_dataset,
    heldout_items,
    proxy_train_prompts,
    run_grpo,
)

# transformers warns about trl's use of its deprecated gradient_checkpointing alias
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_reward_parses_the_final_answer_only():
    assert answer_reward(" 3 + 4 = 7. #### 7", "7") == 1.0
    assert answer_reward(" 3 + 4 = 7. #### 8", "7") == 0.0
    assert answer_reward(" 3 + 4 = 7.", "7") == 0.0  # no '#### N': no reward
    assert answer_reward("#### 1,234", "1234") == 1.0
    assert answer_reward("#### -2", "-2") == 1.0
    assert answer_reward("#### 7", "seven") == 0.0
    # output that looks like code is text to parse, never run
    assert answer_reward("__import__('os').system('true') #### 5", "5") == 1.0
    # trl's calling convention: plain strings or chat messages, target column as kwarg
    assert final_answer_reward(["#### 1", "#### 2"], target=["1", "1"], prompts=["p", "p"]) \
        == [1.0, 0.0]
    chat = [[{"role": "assistant", "content": "so #### 12"}]]
    assert final_answer_reward(chat, target=["12"]) == [1.0]


def test_proxy_prompts_and_targets(tiny_corpus):
    rows = proxy_train_prompts(tiny_corpus, 50)
    assert len(rows) == 50 and set(rows[0]) == {"prompt", "target"}
    assert all(r["prompt"].startswith("Question: ") and r["prompt"].endswith("\nAnswer:")
               for r in rows)
    train = [json.loads(x) for x in
             (tiny_corpus / "train_tasks" / "gsm8k_proxy_train.jsonl").read_text().splitlines()]
    # the gold chain of thought earns the reward: prompt and target are aligned
    assert final_answer_reward([t["answer"] for t in train[:50]],
                               target=[r["target"] for r in rows]) == [1.0] * 50
    held = heldout_items(tiny_corpus, 20)
    assert not {r["prompt"] for r in rows} & {h["prompt"] for h in held}


def test_gsm8k_prompts_are_single_user_messages(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "What is 600+634?",
                                "answer": "600+634=1234\n#### 1,234"}) + "\n")
    rows = gsm8k_dataset(path)
    assert rows == [{"prompt": [{"role": "user", "content": "What is 600+634?"}],
                     "target": "1234"}]
    path.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(UserError):
        gsm8k_dataset(path)


def test_presets():
    paper = GRPO_PRESETS["paper"]
    assert (paper.num_generations, paper.max_completion_length, paper.learning_rate,
            paper.beta, paper.use_vllm, paper.prompts) == (5, 1024, 5e-6, 1e-3, True, "gsm8k")
    cpu = GRPO_PRESETS["cpu"]
    assert cpu.use_cpu and not cpu.use_vllm and not cpu.bf16
    c = cpu.trl_config("/tmp/unused")
    assert (c.use_vllm, c.bf16, c.gradient_checkpointing, c.top_k) == (False, False, False, 0)
    assert c.generation_batch_size % c.num_generations == 0
    # the paper's config builds (bf16 needs a GPU; everything else is checked here)
    p = paper.replace(bf16=False, use_cpu=True).trl_config("/tmp/unused")
    assert p.use_vllm and p.generation_batch_size % 5 == 0 and p.beta == 1e-3
    with pytest.raises(UserError, match="multiple of num_generations"):
        GRPOSettings(num_generations=3, per_device_batch=8)


def _digits_reward(completions, **_):
    """A dense reward for the wiring test: a random tiny model never writes '#### N'."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def _one_step(tiny_hf_dir, rows, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    s = GRPOSettings(max_steps=1, num_generations=4, per_device_batch=8,
                     max_completion_length=8, learning_rate=1e-2, temperature=1.0, seed=0)
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_hf_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(tiny_hf_dir))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_seed(0)
    trainer = build_trainer(model, tok, rows, s, tmp_path, reward_funcs=[_digits_reward])
    trainer.train()
    after = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    return before, after, trainer.state.log_history


def test_one_grpo_step_changes_weights_deterministically(tiny_hf_dir, tiny_corpus, tmp_path):
    rows = proxy_train_prompts(tiny_corpus, 16)
    b1, a1, log1 = _one_step(tiny_hf_dir, rows, tmp_path / "a")
    _, a2, _ = _one_step(tiny_hf_dir, rows, tmp_path / "b")
    changed = [k for k in b1 if not torch.equal(b1[k], a1[k])]
    assert changed, "one GRPO step left every weight unchanged"
    assert any("self_attn" in k for k in changed)
    assert all(torch.equal(a1[k], a2[k]) for k in a1), "GRPO is not deterministic per seed"
    assert "reward" in log1[0]


def test_run_grpo_saves_a_checkpoint_and_rows(tiny_lm_checkpoint, tiny_corpus, tmp_path,
                                              monkeypatch, capsys):
    from optimal_sparsity.checkpoint import load_checkpoint, read_config
    from optimal_sparsity.results.table import read_rows

    monkeypatch.setenv("OPTIMAL_SPARSITY_PROGRESS_S", "0")  # a progress line per step

    s = GRPOSettings(max_steps=1, num_generations=2, per_device_batch=4,
                     max_completion_length=6, eval_n=3, eval_max_new_tokens=6,
                     reward_samples=2)
    res = run_grpo(tiny_lm_checkpoint, tiny_corpus, tmp_path / "out", s,
                   results=tmp_path / "results")
    assert set(res.metrics()) == {"acc_before", "acc_after", "reward_before", "reward_after"}
    assert "GRPO: 1/1 steps (100%)" in capsys.readouterr().err
    _model, cfg = load_checkpoint(res.checkpoint)
    meta = read_config(res.checkpoint)
    assert meta["posttrain"]["method"] == "grpo" and meta["step"] == 7
    assert cfg == load_checkpoint(tiny_lm_checkpoint)[1]
    summary = json.loads((tmp_path / "out" / "grpo.json").read_text())
    assert summary["settings"]["max_steps"] == 1
    rows = read_rows(tmp_path / "results")
    assert {r.metric for r in rows} == set(res.metrics()) and {r.task for r in rows} == {TASK}
    # the tuned checkpoint is a run of its own (rows and caches never mix with the base)
    from optimal_sparsity.eval.rows import checkpoint_identity

    base, tuned = checkpoint_identity(tiny_lm_checkpoint), checkpoint_identity(res.checkpoint)
    assert tuned["run"].startswith(base["run"] + "+grpo-") and tuned["step"] == base["step"]


def test_grpo_rows_stale_settings_replaced_not_added(tiny_lm_checkpoint, tmp_path):
    """A GRPO rerun with other settings replaces the checkpoint's part (and the cache check
    of the sweep only accepts a part made with the settings asked for)."""
    from optimal_sparsity.eval.grpo import GRPOResult, PolicyScore, cached_grpo, write_grpo_rows
    from optimal_sparsity.results.points import final_points
    from optimal_sparsity.results.table import read_rows

    def result(settings, acc_after):
        return GRPOResult(settings, PolicyScore(0.1, 0.1, 4), PolicyScore(acc_after, 0.2, 4),
                          0.0, 0.5, 1.0, None)

    old, new = GRPOSettings(max_steps=2), GRPOSettings(max_steps=3)
    write_grpo_rows(tmp_path, tiny_lm_checkpoint, result(old, 0.25))
    assert cached_grpo(tmp_path, tiny_lm_checkpoint, old)
    assert not cached_grpo(tmp_path, tiny_lm_checkpoint, new)
    write_grpo_rows(tmp_path, tiny_lm_checkpoint, result(new, 0.75))
    rows = read_rows(tmp_path)
    assert [r.value for r in rows if r.metric == "acc_after"] == [0.75]  # one value
    assert all(r.extra["settings"] == new.to_dict() for r in rows)
    (point,) = final_points(rows)
    assert point.values[(TASK, "acc_after")] == [0.75]
    assert cached_grpo(tmp_path, tiny_lm_checkpoint, new)
    assert not cached_grpo(tmp_path, tiny_lm_checkpoint, old)
