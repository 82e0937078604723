"""Metric wiring of the project's lm-eval task definitions, with stub models whose answers
are known: gold answers must score 1.0, wrong ones 0.0, on every proxy task and metric."""

from __future__ import annotations

import pytest
import yaml
from lm_eval.api.model import LM

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.harness import run_proxy_tasks
from optimal_sparsity.eval.lm_eval_tasks import METRICS, PROXY_TASKS, write_task_configs

LIMIT = 12


class StubLM(LM):
    """Answers from the request's document: ``mode`` is 'gold', 'wrong' or 'unformatted'
    (the right number without '#### ', which only the flexible-extract filter finds)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def loglikelihood(self, requests):
        out = []
        for req in requests:
            doc, (_, continuation) = req.doc, req.args
            gold = continuation == doc["endings"][doc["label"]]
            good = gold if self.mode == "gold" else not gold
            out.append((0.0 if good else -20.0, good))
        return out

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        out = []
        for req in requests:
            doc = req.doc
            if doc["task"] == "triviaqa_proxy":
                out.append(doc["answer"] if self.mode == "gold" else " Nobody")
            elif self.mode == "gold":
                out.append(doc["answer"])
            elif self.mode == "unformatted":
                out.append(f" The count is {doc['target']}")
            else:
                out.append(f" 0 + 0 = 0. #### {int(doc['target']) + 1}")
        return out


@pytest.fixture(scope="module")
def stub_results(tiny_corpus):
    return {mode: run_proxy_tasks(StubLM(mode), tiny_corpus, limit=LIMIT)
            for mode in ("gold", "wrong", "unformatted")}


def test_gold_answers_score_one(stub_results):
    res = stub_results["gold"]
    for task in PROXY_TASKS:
        assert res.n[task] == LIMIT
        expected = set(METRICS[task]) | ({"step_acc"} if task.startswith("gsm") else set())
        assert set(res.metrics[task]) == expected
        for metric, value in res.metrics[task].items():
            assert value == 1.0, (task, metric)


def test_wrong_answers_score_zero(stub_results):
    for task in PROXY_TASKS:
        for metric, value in stub_results["wrong"].metrics[task].items():
            assert value == 0.0, (task, metric)


def test_strict_and_flexible_filters_differ(stub_results):
    for task in ("gsm8k_proxy", "gsmplus_proxy"):
        m = stub_results["unformatted"].metrics[task]
        assert m["acc"] == 0.0 and m["acc_flexible"] == 1.0 and m["step_acc"] == 0.0


def test_task_configs_have_absolute_data_paths(tiny_corpus, tmp_path):
    out = write_task_configs(tiny_corpus, tmp_path / "tasks")
    for task in PROXY_TASKS:
        cfg = yaml.safe_load((out / f"{task}.yaml").read_text())
        path = cfg["dataset_kwargs"]["data_files"]["test"]
        assert path == str((tiny_corpus / "eval" / f"{task}.jsonl").resolve())
        assert cfg["task"] == task and cfg["num_fewshot"] == 0
        if task != "hellaswag_proxy":
            assert cfg["generation_kwargs"]["do_sample"] is False
            assert {"\n\n", "Question:", "<|endoftext|>"} <= set(
                cfg["generation_kwargs"]["until"])
    with pytest.raises(UserError, match="has no eval"):
        write_task_configs(tmp_path, tmp_path / "none")
