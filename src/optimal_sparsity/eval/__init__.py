"""Evaluation: the paper's three tiers (pre-training loss, task loss, accuracy), plus
test-time compute (self-consistency), GRPO and code execution. Every measurement lands
in the results table (``optimal_sparsity.results.table``) as rows built by
``eval.rows.make_rows``.

Task and metric names used in the results table:

=====================  ====================================================================
task                   metrics
=====================  ====================================================================
pretrain               train_loss, val_loss (CE, nats/token, recomputed from the checkpoint)
triviaqa_proxy         task_loss (bits/token), task_loss_bpb (bits/byte), acc (exact match)
hellaswag_proxy        task_loss, task_loss_bpb, acc, acc_norm
gsm8k_proxy            task_loss, task_loss_bpb, acc (strict ``#### N``), acc_flexible, step_acc
gsmplus_proxy          task_loss, task_loss_bpb, acc, acc_flexible, step_acc
gsm8k_proxy_sc         maj@N, cov@N for N = 1, 2, 4, ... (self-consistency, zero-shot)
gsm8k_proxy_grpo       acc_before, acc_after, reward_before, reward_after
gsm8k, gsm_plus, ...   the paper's real tasks (pull mode): task_loss, task_loss_bpb, acc, ...
humaneval, mbpp        task_loss, task_loss_bpb, pass@1
=====================  ====================================================================

Modules: ``pretrain_loss``, ``task_loss`` (+ ``taskloss_data``: the proxy JSONL and the
authors' own inputs), ``lm_eval_tasks`` (project-owned lm-eval task YAMLs), ``harness``
(lm-eval runs), ``lm_adapter`` (lm-eval model over MoECausalLM), ``paper_tasks`` (the paper's
stock-task configuration), ``evaluate`` (all tiers of one checkpoint -> results table).
"""
