"""HumanEval and MBPP pass@1: canonical solutions score 1.0, wrong ones 0.0, always
through the sandbox."""

from __future__ import annotations

import gzip
import json

import pytest

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.code_tasks import (
    code_eval,
    evaluate_code,
    humaneval_problems,
    load_mbpp,
    mbpp_prompt,
    score_completions,
)
from optimal_sparsity.eval.sandbox import UNCONFINED_ENV, SandboxLimits

LIMITS = SandboxLimits(timeout_s=10.0)


@pytest.fixture(autouse=True)
def _known_programs_may_run_unconfined(monkeypatch):
    """These programs are the tests' own (canonical and deliberately wrong solutions),
    not model output: on a machine that cannot contain code (no root namespaces, no
    bubblewrap) they may run unconfined. A contained mode is still used where there is
    one; the refusal itself is tested in tests/faults/test_sandbox_escapes.py."""
    monkeypatch.setenv(UNCONFINED_ENV, "1")
MBPP_ITEMS = [
    {"task_id": 2, "text": "Write a function to find the shared elements of two lists.",
     "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
     "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == {4, 5}",
                   "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == {3, 4}"],
     "test_setup_code": ""},
    {"task_id": 3, "text": "Write a python function to identify non-prime numbers.",
     "code": ("import math\ndef is_not_prime(n):\n    return n < 2 or any(n % i == 0 for i "
              "in range(2, int(math.sqrt(n)) + 1))"),
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"],
     "test_setup_code": ""},
    {"task_id": 4, "text": "Write a function to add k to a number.",
     "code": "def add_k(x):\n    return x + K",
     "test_list": ["assert add_k(1) == 4"], "test_setup_code": "K = 3"},
]


class _Fixed:
    """A generator that returns given completions (gold, wrong, or chatter after a stop)."""

    def __init__(self, completions):
        self.completions = completions

    def generate(self, prompts, sampling, n=1, seed=0):
        assert sampling.greedy and len(prompts) == len(self.completions)
        return [[c] for c in self.completions]


def test_humaneval_ships_164_problems():
    problems = humaneval_problems()
    assert len(problems) == 164
    assert problems[0].task_id == "HumanEval/0"
    assert "check(has_close_elements)" in problems[0].test_program


def test_humaneval_gold_scores_one_and_wrong_scores_zero():
    problems = humaneval_problems(12)
    gold = evaluate_code("humaneval", _Fixed([p.gold + "\ndef junk(:\n" for p in problems]),
                         problems, limits=LIMITS, workers=2)
    assert gold.pass_at_1 == 1.0, gold.counts()  # the stop at '\ndef' drops the junk
    wrong = score_completions("humaneval", problems, ["    return None\n"] * len(problems),
                              LIMITS, workers=2)
    assert wrong.pass_at_1 == 0.0 and wrong.counts() == {"failed": len(problems)}


def test_a_hostile_completion_does_not_stop_the_evaluation():
    problems = humaneval_problems(3)
    comps = ["    while True:\n        pass\n", "    import os\n    os.fork()\n    os.fork()\n",
             problems[2].gold]
    res = score_completions("humaneval", problems, comps, SandboxLimits(timeout_s=2.0))
    assert [r.status for r in res.results][::2] == ["timeout", "passed"]
    assert res.pass_at_1 == pytest.approx(1 / 3)


def test_mbpp_gold_scores_one_and_wrong_scores_zero(tmp_path):
    path = tmp_path / "mbpp.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(it) + "\n" for it in MBPP_ITEMS)
    problems = load_mbpp(path, shots=MBPP_ITEMS[:1])
    assert len(problems) == 3 and problems[2].prefix.strip() == "K = 3"
    assert problems[1].prompt.count("[BEGIN]") == 2 and problems[1].prompt.endswith("[BEGIN]\n")
    gold = evaluate_code("mbpp", _Fixed([it["code"] + "\n[DONE]\nmore text"
                                         for it in MBPP_ITEMS]), problems, limits=LIMITS)
    assert gold.pass_at_1 == 1.0, [r.stderr_tail for r in gold.results]
    wrong = score_completions("mbpp", problems, ["def f():\n    pass"] * 3, LIMITS)
    assert wrong.pass_at_1 == 0.0


def test_mbpp_prompt_is_lm_eval_format():
    p = mbpp_prompt(MBPP_ITEMS[1])
    assert p.startswith("You are an expert Python programmer, and here is your task: Write a "
                        "python function to identify non-prime numbers. Your code should pass "
                        "these tests:\n\nassert is_not_prime(2) == False\n")


def test_taskloss_file_without_tests_is_refused(tmp_path):
    path = tmp_path / "mbppplus_test.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump([{"prompt": "Write a function.", "answer": "def f(): pass"}], f)
    with pytest.raises(UserError, match="no test cases"):
        load_mbpp(path)
    with pytest.raises(UserError, match="no MBPP file"):
        load_mbpp(tmp_path / "missing.json")


def test_code_eval_wiring_on_a_tiny_checkpoint(tiny_lm_checkpoint, tmp_path):
    from optimal_sparsity.results.table import read_rows

    res = code_eval(tiny_lm_checkpoint, "humaneval", results=tmp_path, limit=2,
                    max_new_tokens=12)
    assert res.n == 2 and res.pass_at_1 == 0.0  # a random tiny model cannot code
    rows = read_rows(tmp_path)
    assert [(r.task, r.metric, r.n) for r in rows] == [("humaneval", "pass@1", 2)]
