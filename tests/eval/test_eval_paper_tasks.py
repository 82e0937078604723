"""The paper's lm-eval configuration for released checkpoints: task names, shots, metric
keys and backend arguments (the runs themselves need the hub's data)."""

from __future__ import annotations

from pathlib import Path

import lm_eval
import pytest
import yaml

from optimal_sparsity.eval import paper_tasks as pt

# docs/paper.md, "Evaluation": shots per task
PAPER_SHOTS = {"triviaqa": 4, "hellaswag": 4, "gsm8k": 4, "gsm_plus": 5, "humaneval": 0,
               "mbpp": 3}
STOCK = Path(lm_eval.__file__).parent / "tasks"
STOCK_FILES = {"triviaqa": "triviaqa/default.yaml", "hellaswag": "hellaswag/hellaswag.yaml",
               "gsm8k": "gsm8k/gsm8k.yaml", "gsm_plus": "gsm_plus/gsm_plus.yaml",
               "humaneval": "humaneval/humaneval.yaml", "mbpp": "mbpp/mbpp.yaml"}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # ignore !function


def stock(task: str) -> dict:
    return yaml.load((STOCK / STOCK_FILES[task]).read_text(), Loader=_Loader)


def test_tasks_and_shots_are_the_papers():
    assert {t: p.num_fewshot for t, p in pt.PAPER_TASKS.items()} == PAPER_SHOTS
    for task, spec in pt.PAPER_TASKS.items():
        kw = pt.evaluate_kwargs(task, "/m", "hf", limit=3)
        assert kw["tasks"] == [task] and kw["num_fewshot"] == PAPER_SHOTS[task]
        assert kw["random_seed"] == kw["fewshot_random_seed"] == 42 and kw["limit"] == 3
        assert kw.get("confirm_run_unsafe_code", False) is spec.runs_code
    assert stock("triviaqa")["dataset_name"] == "rc.nocontext"
    assert "Question:" in stock("gsm8k")["generation_kwargs"]["until"]


def test_metric_keys_exist_in_the_stock_tasks():
    """Each results key ``metric,filter`` names a metric and a filter of lm-eval 0.4.13's
    own task config (so parse_results reads what the harness writes)."""
    fn_metric = {"humaneval": "pass@1", "mbpp": "pass_at_1"}  # from !function metrics
    for task, spec in pt.PAPER_TASKS.items():
        cfg = stock(task)
        assert cfg["task"] == task
        filters = {f["name"] for f in cfg.get("filter_list", [])} or {"none"}
        metrics = {m["metric"] for m in cfg["metric_list"] if m["metric"]}
        for key in spec.metrics.values():
            metric, filt = key.split(",")
            assert filt in filters, (task, key)
            assert metric in metrics or metric == fn_metric.get(task), (task, key)


def test_backend_arguments(tmp_path):
    import json

    hf = pt.model_args("rel/dir", "hf")
    assert hf["dtype"] == "float32" and hf["max_length"] == 4096
    assert hf["trust_remote_code"] is False and Path(hf["pretrained"]).is_absolute()
    for window, want in ((2048, 2048), (32768, 4096)):  # never beyond the model's window
        (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": window}))
        vl = pt.model_args(tmp_path, "vllm")
        assert vl["max_model_len"] == want and vl["seed"] == 42
        assert vl["trust_remote_code"] is False
    assert pt.evaluate_kwargs("gsm8k", tmp_path, "vllm")["device"] == "cuda"
    with pytest.raises(ValueError):
        pt.model_args("/m", "tgi")  # type: ignore[arg-type]


def test_unavailable_reasons(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "offline" in pt.unavailable_reason("hf")
    assert "vLLM" in pt.unavailable_reason("vllm")  # not installed on the CPU machines
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    assert "HF_ALLOW_CODE_EVAL" in pt.unavailable_reason("hf")
    assert pt.unavailable_reason("hf", ("gsm8k", "hellaswag")) is None
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    assert pt.unavailable_reason("hf") is None


def test_parse_results():
    out = {"results": {"gsm8k": {"exact_match,strict-match": 0.25,
                                 "exact_match_stderr,strict-match": 0.1,
                                 "exact_match,flexible-extract": 0.5,
                                 "exact_match_stderr,flexible-extract": "N/A"}},
           "n-samples": {"gsm8k": {"original": 1319, "effective": 8}}}
    r = pt.parse_results("gsm8k", out)
    assert r.metrics == {"acc": 0.25, "acc_flexible": 0.5}
    assert r.stderr == {"acc": 0.1} and r.n == 8
