"""What pull mode can decide: each claim's needs, set against what the release holds and
what the pull pipeline runs.

The release (``checkpoints.lock``) holds the final checkpoints of the 65 math models and of
the one code model whose name is public; no training losses and no intermediate
checkpoints. A claim that needs something the release lacks is ``not testable`` in pull
mode, with that reason. A claim that needs a tier the pull pipeline does not run is
``not testable`` too, saying which tier. The rest are decided from the hub's data, and the
README's pull column says what they need (``study.claims_table``).

What the pipeline runs is read from its own declarations (``tiers.PULL_TIERS`` and
``tiers.PULL_TIER_FOR``,
``eval.paper_tasks``, ``eval.taskloss_data``, ``eval.taskloss_build``, ``eval.code_tasks``),
so the column changes when the pipeline does.
"""

from __future__ import annotations

from dataclasses import dataclass

from optimal_sparsity.tiers import PULL_TIER_FOR, wants_gpu

# What the release lacks, and why a claim that needs it cannot be decided from the release.
UNRELEASED: dict[str, str] = {
    "pretrain_loss": "no training losses released",
    "checkpoints": "no intermediate checkpoints released",
    "code_grid": "one code model public",
}
# Tiers of the paper that a claim may need, by the pull tier that would run them.
TIER_NAMES: dict[str, str] = {"sc": "self-consistency", "grpo": "GRPO",
                              "grpo2": "MATH GRPO", "fewshot": "few-shot sweep"}

MEM_LOSS = ("task_loss:triviaqa", "task_loss:hellaswag")
REA_LOSS = ("task_loss:gsm8k", "task_loss:gsm_plus")
MEM_ACC = ("acc:triviaqa", "acc:hellaswag")
REA_ACC = ("acc:gsm8k", "acc:gsm_plus")
CODE_ACC = ("acc:humaneval", "acc:mbpp", "acc:humaneval_plus", "acc:mbpp_plus")
# The pull tier that measures a need of each kind ("acc:gsm8k" -> paper_accuracy).
PULL_TIER_OF: dict[str, str] = {"acc": "paper_accuracy", "task_loss": "paper_task_loss"}

# What each claim's predicate reads (claims/registry.py), in pull mode's terms.
CLAIM_NEEDS: dict[str, tuple[str, ...]] = {
    "C1.loss-vs-params": ("pretrain_loss",),
    "C1.hellaswag-taskloss": ("task_loss:hellaswag",),
    "C1.gsm8k-taskloss-threshold": ("task_loss:gsm8k",),
    "C2.memorization-monotone": ("pretrain_loss", *MEM_LOSS),
    "C2.reasoning-u-shape": ("pretrain_loss", *REA_LOSS),
    "C2.turning-point-moves": ("pretrain_loss", "task_loss:gsm8k"),
    "C3.memorization-accuracy": ("pretrain_loss", *MEM_ACC),
    "C3.gsm8k-nonmonotone": ("pretrain_loss", "acc:gsm8k"),
    "C4.memorization-one-curve": ("checkpoints", "pretrain_loss", *MEM_ACC),
    "C4.reasoning-denser-better": ("checkpoints", "pretrain_loss", *REA_ACC),
    "C5.memorization-sparser": MEM_ACC,
    "C5.reasoning-small-active-sparser": ("acc:gsm8k",),
    "C5.reasoning-optimum-moves-dense": ("acc:gsm8k",),
    "C6.ttc-raises-accuracy": ("tier:sc",),
    "C6.grpo-raises-accuracy": ("tier:grpo",),
    "C6.trend-survives": ("tier:sc", "tier:grpo"),
    "C7.memorization-tpp": MEM_ACC,
    "C7.reasoning-tpp-peak": REA_ACC,
    "C7.tpp-optimum-near-20": ("acc:gsm8k",),
    "C7.larger-k-better": REA_ACC,
    "C8.code-optimum-dense": ("code_grid", *CODE_ACC),
    "C10.grpo-either-set": ("tier:grpo", "tier:grpo2"),
    "C11.fewshot-unstable": ("tier:fewshot",),
}


@dataclass(frozen=True)
class PullRuns:
    """What the pull pipeline evaluates."""

    tiers: tuple[str, ...]
    accuracy_tasks: frozenset[str]
    carried_task_loss: frozenset[str]  # the authors' files this artifact carries
    built_task_loss: dict[str, str]  # results-table task -> the input the builder makes


def pull_runs() -> PullRuns:
    from optimal_sparsity.eval.code_tasks import PLUS_TASKS
    from optimal_sparsity.eval.paper_tasks import PAPER_TASKS
    from optimal_sparsity.eval.taskloss_data import AUTHORS_INPUTS
    from optimal_sparsity.hub.taskloss_inputs import BUILDS
    from optimal_sparsity.tiers import PULL_TIERS

    tiers = PULL_TIERS + tuple(PULL_TIER_FOR.values())
    acc = frozenset(PAPER_TASKS) | frozenset(PLUS_TASKS) if "paper_accuracy" in PULL_TIERS \
        else frozenset()
    carried = frozenset(AUTHORS_INPUTS) if "paper_task_loss" in PULL_TIERS else frozenset()
    built = ({b.results_task: b.file for b in BUILDS.values() if b.results_task not in carried}
             if "paper_task_loss" in PULL_TIERS else {})
    return PullRuns(tiers, acc, carried, built)


@dataclass(frozen=True)
class PullStatus:
    testable: bool
    text: str  # the README's pull column


def pull_status(claim_id: str, runs: PullRuns | None = None) -> PullStatus:
    """Whether pull mode can decide ``claim_id``, and what it takes."""
    runs = runs or pull_runs()
    needs = CLAIM_NEEDS[claim_id]
    missing = [UNRELEASED[n] for n in needs if n in UNRELEASED]
    wanted = [n.split(":", 1)[1] for n in needs if n.startswith("tier:")]
    tiers = [TIER_NAMES[w] for w in wanted if PULL_TIER_FOR.get(w) not in runs.tiers]
    if tiers:
        missing.append("no " + "/".join(tiers) + " tier in pull mode")
    unknown = [n for n in needs if n.startswith(("acc:", "task_loss:")) and not (
        n[4:] in runs.accuracy_tasks if n.startswith("acc:")
        else n[10:] in runs.carried_task_loss or n[10:] in runs.built_task_loss)]
    if unknown:
        missing.append("pull mode does not evaluate " + ", ".join(unknown))
    if missing:
        return PullStatus(False, "not testable: " + "; ".join(missing))
    parts = ["hub"]
    built = sorted({runs.built_task_loss[n[10:]] for n in needs
                    if n.startswith("task_loss:") and n[10:] in runs.built_task_loss})
    if built:
        parts.append("`taskloss-build` " + ", ".join(b.removesuffix(".json") for b in built))
    if wants_gpu([PULL_TIER_OF[kind] for kind, _, _ in (n.partition(":") for n in needs)
                  if kind in PULL_TIER_OF] + [PULL_TIER_FOR[w] for w in wanted
                                              if w in PULL_TIER_FOR]):
        parts.append("GPU advised")
    return PullStatus(True, "; ".join(parts))
