"""Which (task, metric) of a results table plays each role in the paper's analysis:
memorization or reasoning, accuracy or task loss, pre-training loss, post-training. The
scaled-down study's proxies (retrain mode) and the authors' tasks (pull mode)."""

from __future__ import annotations

from dataclasses import dataclass

Metric = tuple[str, str]  # (task, metric), as in a results-table row


@dataclass(frozen=True)
class TaskSet:
    """Which (task, metric) plays each role: the proxies (retrain) or the real tasks (pull)."""

    memorization_acc: tuple[Metric, ...]
    memorization_loss: tuple[Metric, ...]
    reasoning_acc: tuple[Metric, ...]
    reasoning_loss: tuple[Metric, ...]
    train_loss: Metric = ("pretrain", "train_loss")
    val_loss: Metric = ("pretrain", "val_loss")
    sc_task: str = "gsm8k_proxy_sc"
    grpo_task: str = "gsm8k_proxy_grpo"
    grpo_second_task: str = "gsm8k_proxy_grpo_plus"
    fewshot_task: str = "gsm8k_proxy_fewshot"
    code_tasks: tuple[Metric, ...] = ()  # none: the scaled-down corpus has no code


PROXY_TASKS = TaskSet(
    memorization_acc=(("triviaqa_proxy", "acc"), ("hellaswag_proxy", "acc_norm")),
    memorization_loss=(("triviaqa_proxy", "task_loss"), ("hellaswag_proxy", "task_loss")),
    reasoning_acc=(("gsm8k_proxy", "acc"), ("gsmplus_proxy", "acc")),
    reasoning_loss=(("gsm8k_proxy", "task_loss"), ("gsmplus_proxy", "task_loss")),
)
PAPER_TASKS = TaskSet(
    memorization_acc=(("triviaqa", "acc"), ("hellaswag", "acc_norm")),
    memorization_loss=(("triviaqa", "task_loss"), ("hellaswag", "task_loss")),
    reasoning_acc=(("gsm8k", "acc"), ("gsm_plus", "acc")),
    reasoning_loss=(("gsm8k", "task_loss"), ("gsm_plus", "task_loss")),
    sc_task="gsm8k_sc", grpo_task="gsm8k_grpo", grpo_second_task="math_grpo",
    fewshot_task="gsm8k_fewshot", code_tasks=(("humaneval", "pass@1"), ("mbpp", "pass@1")),
)
