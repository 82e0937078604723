"""Evaluate one trained run for one figure: the tiers the figure needs, cached.

Base tiers (pre-training loss, task loss, accuracy) run on the final checkpoint; Fig 4
adds pre-training loss and accuracy on the intermediate checkpoints; Fig 6, 10 and 11
add self-consistency, GRPO on one or two prompt sets, and few-shot accuracy on the
design's post-training family. Every result is a results-table part: what exists with the
same settings is not recomputed, and one made with other settings is replaced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint, torch_threads
from optimal_sparsity.figures.spec import FigureSpec
from optimal_sparsity.study.design import StudyDesign
from optimal_sparsity.study.sweep import PointRun

BASE_TIERS = frozenset({"pretrain", "task_loss", "accuracy", "knowledge_bits"})


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
    with torch_threads(design.eval.threads):  # as evaluate_checkpoint's tiers
        if "sc" in spec.tiers:
            from optimal_sparsity.eval.selfconsistency import SCSettings, self_consistency

            p = design.eval
            self_consistency(final, corpus, SCSettings(
                r_max=p.sc_max_power, n_problems=p.sc_problems,
                max_new_tokens=p.max_new_tokens, seed=run.seed), results=table)
        for tier, prompt_set in (("grpo", "gsm8k_proxy_train"),
                                 ("grpo2", "gsmplus_proxy_train")):
            if tier in spec.tiers and design.gets_grpo(run.point):
                _grpo(run, design, final, corpus, table, prompt_set, log)


def _grpo(run: PointRun, design: StudyDesign, final: Path, corpus: Path, table: Path,
          prompt_set: str, log) -> None:
    from optimal_sparsity.eval.grpo import PROMPT_SETS, cached_grpo, get_preset, run_grpo

    settings = get_preset(design.eval.grpo_preset).replace(
        seed=run.seed, **dict(design.eval.grpo_overrides))
    if cached_grpo(table, final, settings, PROMPT_SETS[prompt_set]):
        return
    key = json.dumps([prompt_set, settings.to_dict()], sort_keys=True)
    out = run.run_dir / "grpo" / hashlib.sha256(key.encode()).hexdigest()[:12]
    run_grpo(final, corpus, out, settings, results=table, log=log, prompt_set=prompt_set)
