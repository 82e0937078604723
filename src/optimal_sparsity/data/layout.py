"""The layout of a corpus directory, declared once: every writer (``data.corpus``) and reader
(trainer, evaluation tiers, probes, export checks) names its files through ``CorpusFiles``.

``corpus.json`` (the manifest: shards, tokenizer, statistics), ``tokenizer/`` (an HF
tokenizer), ``<split>.bin`` token shards (``train``, ``val``, ``val_<source>``), the proxy
tasks' items ``eval/<task>.jsonl`` (and the knowledge base's value records), and the training
problems the few-shot and GRPO tiers draw from, ``train_tasks/<set>.jsonl``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CORPUS_FILE = "corpus.json"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class CorpusFiles:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> CorpusFiles:
        return cls(Path(root))

    @property
    def manifest(self) -> Path:
        return self.root / CORPUS_FILE

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TOKENIZER_DIR

    @property
    def tokenizer_json(self) -> Path:
        return self.tokenizer_dir / "tokenizer.json"

    def shard(self, split: str) -> Path:
        """The token shard a corpus build writes for ``split``."""
        return self.root / f"{split}.bin"

    def eval_items(self, task: str) -> Path:
        """A proxy task's held-out items (``eval/<task>.jsonl``)."""
        return self.root / "eval" / f"{task}.jsonl"

    @property
    def knowledge_records(self) -> Path:
        """The knowledge base's value records (values-style knowledge only)."""
        return self.eval_items("knowledge_records")

    def train_problems(self, name: str) -> Path:
        """Training problems of a prompt set (``train_tasks/<name>.jsonl``)."""
        return self.root / "train_tasks" / f"{name}.jsonl"
