"""GRPO on the released checkpoints with the authors' settings (pull mode: Fig 6 and Fig 10).

The authors post-trained with verl (``eval.grpo``'s ``paper`` preset expresses their run in
trl: 1,024 prompts x 5 rollouts per batch, mini-batch 256, prompt 512 / response 1,024
tokens, LR 5e-6, KL 1e-3 with the low-variance estimator, no entropy bonus, 15 epochs).
Training prompts are the bare question (GSM8K) or problem (MATH) as one user message, sent
through the model's chat template, as their preprocessing sends it; a tokenizer without a
chat template cannot take them, and the tier says so.

- GSM8K train: the ``train`` split of the pulled GSM8K snapshot, read through lm-eval's stock
  ``gsm8k`` task; reward 1 when the completion's strict ``#### N`` answer equals the
  reference (lm-eval's strict-match normalisation), else 0.
- MATH train: the ``train`` split of the pulled MATH snapshot (``checkpoints.lock``:
  ``math``; columns ``problem`` and ``solution``); the reference is the last ``\\boxed{}``
  of the solution; reward 1 when the completion's last ``\\boxed{}`` equals it after a
  string normalisation (spaces, ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac``, ``$``, a
  final ``.``), else 0. The paper names math-verify, which is not in the pinned
  environment; this is the rule-based check verl's MATH reward also applies.
- Before and after: GSM8K test accuracy with lm-eval's stock ``gsm8k`` task, 4-shot,
  strict match (the paper's GSM8K evaluation, ``eval.paper_ttc.fewshot_sweep``), on the
  released model and on the tuned one. Both prompt sets are scored on GSM8K.

Rows: task ``gsm8k_grpo`` (trained on GSM8K) or ``math_grpo`` (trained on MATH), metrics
``acc_before`` and ``acc_after`` (``results.tasks.PAPER_TASKS``), with the settings, the
optimizer steps and the mean training reward of the first and last quarter of steps.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimal_sparsity.errors import UserError

TASKS = {"gsm8k": "gsm8k_grpo", "math": "math_grpo"}  # train set -> results-table task
EVAL_SHOTS = 4  # GSM8K before/after: the paper's 4-shot evaluation


# Training prompts ------------------------------------------------------------------------

def gsm8k_train_rows(data_dir: str | Path, n: int | None = None) -> list[dict[str, Any]]:
    """GSM8K train (lm-eval's stock task on the pulled snapshot) as single user messages."""
    from optimal_sparsity.eval.paper_ttc import GSM8K_YAML, strict_answer
    from optimal_sparsity.eval.taskloss_build import load_stock_task

    task = load_stock_task(GSM8K_YAML, data_dir, what="GSM8K train (GRPO)")
    rows = []
    for i, doc in enumerate(task.training_docs()):
        if n is not None and i >= n:
            break
        target = strict_answer(doc["answer"])
        if target is None:
            raise UserError(f"GSM8K train item {i} has no '#### N' answer")
        rows.append({"prompt": [{"role": "user", "content": doc["question"]}],
                     "target": target, "kind": "gsm8k"})
    return rows


def math_train_rows(data_dir: str | Path, n: int | None = None) -> list[dict[str, Any]]:
    """MATH train (the pulled snapshot's ``train`` split) as single user messages."""
    import datasets

    try:
        ds = datasets.load_dataset(str(Path(data_dir).resolve()), split="train")
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as err:
        first = str(err).splitlines()[0] if str(err) else repr(err)
        raise UserError(f"MATH train (GRPO): cannot read {data_dir}: {first}") from None
    rows = []
    for i, doc in enumerate(ds):
        if n is not None and i >= n:
            break
        target = last_boxed(str(doc.get("solution", "")))
        if target is None:
            raise UserError(f"MATH train item {i} has no \\boxed{{}} answer in its solution")
        rows.append({"prompt": [{"role": "user", "content": doc["problem"]}],
                     "target": target, "kind": "math"})
    return rows


# Rewards (text only: model output is never executed) ---------------------------------------

def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``) of ``text``, braces
    matched, or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def normalise_answer(s: str) -> str:
    """A MATH answer compared as a string: no spaces, sizing commands or dollars,
    ``\\dfrac``/``\\tfrac`` as ``\\frac``, no final period."""
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\dfrac", "\\frac"),
                 ("\\tfrac", "\\frac"), ("$", ""), (" ", "")):
        s = s.replace(a, b)
    return s.strip().removesuffix(".")


def paper_reward(completions: Sequence[Any], target: Sequence[str], kind: Sequence[str],
                 **_: Any) -> list[float]:
    """trl reward function over rows of both sets (``kind``: "gsm8k" or "math")."""
    from optimal_sparsity.eval.grpo import completion_text
    from optimal_sparsity.eval.paper_ttc import strict_answer

    out = []
    for c, t, k in zip(completions, target, kind, strict=True):
        text = completion_text(c)
        if k == "gsm8k":
            out.append(1.0 if strict_answer(text) == t else 0.0)
        else:
            got = last_boxed(text)
            out.append(1.0 if got is not None and normalise_answer(got) == normalise_answer(t)
                       else 0.0)
    return out


# The run --------------------------------------------------------------------------------

def fit_prompts(rows: list[dict[str, Any]], tokenizer, max_tokens: int) -> list[dict[str, Any]]:
    """The rows whose templated prompt has at most ``max_tokens`` tokens (0: all)."""
    if not max_tokens:
        return rows
    return [r for r in rows if len(tokenizer.apply_chat_template(
        r["prompt"], tokenize=True, add_generation_prompt=True)) <= max_tokens]


@dataclass(frozen=True)
class PaperGRPOResult:
    metrics: dict[str, float]  # acc_before, acc_after (GSM8K, 4-shot strict match)
    n_eval: int
    n_prompts: int
    steps: int
    train_reward_first: float
    train_reward_last: float
    wall_s: float


def run_paper_grpo(hf_dir: str | Path, rows: list[dict[str, Any]], gsm8k_dir: str | Path,
                   settings, *, backend: str, limit: int | None = None, batch_size: int = 8,
                   log: Callable[[str], None] = lambda _m: None) -> PaperGRPOResult:
    """GRPO of the HF model in ``hf_dir`` on ``rows``; GSM8K 4-shot accuracy before and after."""
    from transformers import set_seed

    from optimal_sparsity.eval.grpo import _load_hf, _mean_reward, _steps_progress, build_trainer
    from optimal_sparsity.eval.paper_ttc import fewshot_sweep

    start = time.monotonic()
    model, tok = _load_hf(Path(hf_dir))
    if not getattr(tok, "chat_template", None):
        raise UserError(f"{hf_dir}: the tokenizer has no chat template; the authors' GRPO sends "
                        "each question as one user message through it")
    rows = fit_prompts(rows, tok, settings.max_prompt_tokens)
    steps = settings.steps_for(len(rows))
    settings = settings.replace(max_steps=steps)

    def accuracy(model_dir) -> tuple[float, int]:
        acc, _, n = fewshot_sweep(model_dir, gsm8k_dir, backend, (EVAL_SHOTS,), limit=limit,
                                  batch_size=batch_size)[EVAL_SHOTS]
        return acc, n

    before, n_eval = accuracy(hf_dir)
    log(f"GRPO ({settings.name}, {len(rows)} prompts, {steps} steps): GSM8K {EVAL_SHOTS}-shot "
        f"before {before:.3f} (n={n_eval})")
    with tempfile.TemporaryDirectory(prefix="paper-grpo-") as tmp:
        set_seed(settings.seed)
        trainer = build_trainer(model, tok, rows, settings, Path(tmp) / "trl",
                                reward_funcs=[paper_reward])
        trainer.add_callback(_steps_progress(steps))
        trainer.train()
        history = list(trainer.state.log_history)
        tuned = Path(tmp) / "tuned"
        trainer.model.save_pretrained(tuned, safe_serialization=True)
        tok.save_pretrained(tuned)
        after, _ = accuracy(tuned)
    log(f"GRPO: GSM8K {EVAL_SHOTS}-shot after {after:.3f}")
    first, last = _mean_reward(history, True), _mean_reward(history, False)
    return PaperGRPOResult({"acc_before": before, "acc_after": after}, n_eval, len(rows), steps,
                           first, last, time.monotonic() - start)


def finite(x: float) -> float | None:
    return None if math.isnan(x) else x
