"""The few-shot tier (Fig 11): shots come from the training problems, with their chains
of thought, in front of each held-out question."""

import json

from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
from optimal_sparsity.eval.harness import FEWSHOT_TASK, fewshot_task_config


def test_fewshot_config_uses_training_problems(tiny_corpus):
    cfg = fewshot_task_config(tiny_corpus)
    train = cfg["dataset_kwargs"]["data_files"]["train"]
    assert train.endswith("train_tasks/gsm8k_proxy_train.jsonl")
    with open(train) as f:
        first = json.loads(f.readline())
    assert first["answer"].strip().split("#### ")[1] == first["target"]
    assert cfg["fewshot_config"]["doc_to_target"] == "{{answer}}"


def test_fewshot_tier_writes_one_metric_per_shot_count(eval_run, tmp_path, one_thread):
    settings = EvalSettings(tiers=("fewshot",), limit=6, batch_size=6, max_new_tokens=24,
                            fewshot_shots=(0, 2))
    rows = evaluate_checkpoint(eval_run.ckpt, eval_run.corpus, tmp_path, settings)
    assert {r.task for r in rows} == {FEWSHOT_TASK}
    assert {r.metric for r in rows} == {"acc@0shot", "acc@2shot"}
    assert all(0 <= r.value <= 1 and r.n == 6 for r in rows)


def test_shots_are_in_the_context(tiny_corpus):
    from lm_eval.api.model import LM

    from optimal_sparsity.eval.harness import run_fewshot

    class Recorder(LM):
        def __init__(self):
            super().__init__()
            self.contexts = []

        def loglikelihood(self, requests):
            raise AssertionError("generation task")

        def loglikelihood_rolling(self, requests):
            raise AssertionError("generation task")

        def generate_until(self, requests):
            self.contexts += [r.args[0] for r in requests]
            return [" #### 0"] * len(requests)

    lm = Recorder()
    res = run_fewshot(lm, tiny_corpus, (0, 2), limit=3)
    assert set(res) == {0, 2}
    zero, two = lm.contexts[:3], lm.contexts[3:]
    assert all(c.count("Question:") == 1 for c in zero)
    assert all(c.count("Question:") == 3 and c.count("#### ") == 2 for c in two)
