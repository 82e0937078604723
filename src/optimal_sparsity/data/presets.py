"""Named corpus configurations (the study's own presets live with the study design)."""

from __future__ import annotations

from optimal_sparsity.data.arithmetic import ArithmeticConfig
from optimal_sparsity.data.corpus import CorpusConfig
from optimal_sparsity.data.knowledge import KnowledgeConfig
from optimal_sparsity.data.scripts import ScriptsConfig
from optimal_sparsity.errors import UserError

PRESETS: dict[str, CorpusConfig] = {
    # a few seconds to build; for tests and the trainer's own smoke runs
    "tiny": CorpusConfig(
        train_tokens=300_000, val_tokens=20_000, vocab_size=384,
        knowledge=KnowledgeConfig(n_people=200), scripts=ScriptsConfig(n_activities=40),
        arithmetic=ArithmeticConfig(), n_eval_knowledge=200, n_eval_scripts=100,
        n_eval_arithmetic=100, n_train_tasks=200, tokenizer_sample_docs=5000),
    "default": CorpusConfig(),
}


def get_corpus_preset(name: str) -> CorpusConfig:
    if name not in PRESETS:
        raise UserError(f"unknown corpus preset {name!r}: one of {', '.join(PRESETS)}")
    return PRESETS[name]
