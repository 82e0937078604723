"""Evaluate one trained run for one figure: the tiers the figure needs, cached.

Base tiers (pre-training loss, task loss, accuracy) run on the final checkpoint; Fig 4
adds pre-training loss and accuracy on the intermediate checkpoints; Fig 6, 10 and 11
add self-consistency, GRPO on one or two prompt sets, and few-shot accuracy on the
design's post-training family. Every one is a tier of ``eval.evaluate``, so every result
is a results-table part: what exists with the same settings is not recomputed, and one
made with other settings is replaced.
"""

from __future__ import annotations

from pathlib import Path

from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
from optimal_sparsity.figures.spec import FigureSpec
from optimal_sparsity.study.design import StudyDesign
from optimal_sparsity.study.sweep import PointRun

BASE_TIERS = frozenset({"pretrain", "task_loss", "accuracy", "knowledge_bits"})
POSTTRAIN_TIERS = ("sc", "grpo", "grpo2")  # in this order, after the others


def _settings(design: StudyDesign, tiers: tuple[str, ...], **kw) -> EvalSettings:
    p = design.eval
    base = dict(tiers=tiers, limit=p.limit or None, batch_size=p.batch_size,
                max_new_tokens=p.max_new_tokens, threads=p.threads,
                val_sequences=design.train.get("eval_sequences"))
    return EvalSettings(**{**base, **kw})


def evaluate_run(run: PointRun, design: StudyDesign, spec: FigureSpec, table: Path,
                 log=lambda _m: None) -> None:
    corpus = Path(run.config.corpus)
    ckpts = run.checkpoints("all")
    final = ckpts[-1][1]
    tiers = tuple(t for t in spec.tiers if t in BASE_TIERS)
    if tiers:
        evaluate_checkpoint(final, corpus, table, _settings(design, tiers), log=log)
    if spec.checkpoints == "all":
        for _, ck in ckpts[:-1]:
            evaluate_checkpoint(ck, corpus, table, _settings(design, ("pretrain", "accuracy")),
                                log=log)
    if "fewshot" in spec.tiers:
        evaluate_checkpoint(final, corpus, table, _settings(
            design, ("fewshot",), limit=design.eval.fewshot_limit or None,
            fewshot_shots=design.eval.fewshot_shots), log=log)
    post = tuple(t for t in POSTTRAIN_TIERS if t in spec.tiers
                 and (t == "sc" or design.gets_grpo(run.point)))
    if post:
        p = design.eval
        evaluate_checkpoint(final, corpus, table, _settings(
            design, post, seed=run.seed, sc_max_power=p.sc_max_power,
            sc_problems=p.sc_problems, grpo_preset=p.grpo_preset,
            grpo_overrides=p.grpo_overrides, grpo_dir=str(run.run_dir / "grpo")), log=log)
