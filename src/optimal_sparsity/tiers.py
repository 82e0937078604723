"""The evaluation tiers, each declared once: whether it reads the proxy corpus its checkpoint
was trained on, and whether it generates text.

``eval.evaluate`` runs every checkpoint tier (``TIERS``), the post-training ones (``sc``,
``grpo``, ``grpo2``) included: the figures (``figures.registry``), the study
(``study.evaluation``), pull mode and ``./reproduce eval --tiers`` name the same tiers.
``code`` (the code models, released only) is named by figures and run by pull mode. A
tier that generates wants a GPU at the released checkpoints' size (the paper's generation
runs through vLLM); a figure wants one if any of its tiers does (``wants_gpu``). The
scaled-down retrain runs every tier on a CPU. ``LM_EVAL_SEED`` is the paper's lm-eval
seed, which every lm-eval call here uses (``eval.lm_eval_run``) and which rebuilds the
authors' task-loss inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LM_EVAL_SEED = 42  # the paper's lm-eval seed (python, numpy, torch and few-shot sampling)


@dataclass(frozen=True)
class Tier:
    name: str
    reads_corpus: bool  # the proxy corpus the checkpoint was trained on
    generates: bool  # sampled completions: a GPU is advised at the released size
    checkpoint: bool = True  # run by ``evaluate_checkpoint`` (else by its own step)


ALL_TIERS: tuple[Tier, ...] = (
    Tier("pretrain", reads_corpus=True, generates=False),
    Tier("task_loss", reads_corpus=True, generates=False),
    Tier("accuracy", reads_corpus=True, generates=True),
    Tier("fewshot", reads_corpus=True, generates=True),
    Tier("knowledge_bits", reads_corpus=True, generates=False),
    Tier("paper_task_loss", reads_corpus=False, generates=False),
    Tier("paper_accuracy", reads_corpus=False, generates=True),
    Tier("paper_sc", reads_corpus=False, generates=True),  # GSM8K self-consistency (Fig 6)
    Tier("paper_fewshot", reads_corpus=False, generates=True),  # GSM8K shot sweep (Fig 11)
    Tier("paper_grpo", reads_corpus=False, generates=True),  # GRPO on GSM8K train (Fig 6, 10)
    Tier("paper_grpo_math", reads_corpus=False, generates=True),  # GRPO on MATH train (Fig 10)
    Tier("sc", reads_corpus=True, generates=True),  # self-consistency on the proxy (Fig 6)
    Tier("grpo", reads_corpus=True, generates=True),  # GRPO on the GSM8K-proxy prompts
    Tier("grpo2", reads_corpus=True, generates=True),  # GRPO on the GSM-Plus-proxy prompts
    Tier("code", reads_corpus=False, generates=True, checkpoint=False),
)
TIERS_BY_NAME: dict[str, Tier] = {t.name: t for t in ALL_TIERS}

TIERS: tuple[str, ...] = tuple(t.name for t in ALL_TIERS if t.checkpoint)
DEFAULT_TIERS: tuple[str, ...] = ("pretrain", "task_loss", "accuracy")
PULL_TIERS: tuple[str, ...] = ("paper_task_loss", "paper_accuracy")  # every pulled figure
# The pull tier that stands for a figure's retrain tier, run only for the figures naming it.
PULL_TIER_FOR: dict[str, str] = {"sc": "paper_sc", "fewshot": "paper_fewshot",
                                 "grpo": "paper_grpo", "grpo2": "paper_grpo_math"}


def pull_tiers(figure_tiers: Iterable[str]) -> tuple[str, ...]:
    """The tiers pull mode runs for a figure of ``figure_tiers``."""
    return PULL_TIERS + tuple(PULL_TIER_FOR[t] for t in figure_tiers if t in PULL_TIER_FOR)
CORPUS_TIERS: frozenset[str] = frozenset(t for t in TIERS if TIERS_BY_NAME[t].reads_corpus)


def wants_gpu(tiers: Iterable[str]) -> bool:
    """Whether any of ``tiers`` generates text: a GPU is advised at the released size."""
    return any(TIERS_BY_NAME[t].generates for t in tiers)
