"""Build a corpus once per config and reuse it (keyed by the config's fingerprint)."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

from optimal_sparsity.checkpoint import verify_checkpoint
from optimal_sparsity.data.corpus import CorpusConfig, build_corpus
from optimal_sparsity.paths import corpus_cache


def ensure_corpus(cfg: CorpusConfig, root: Path | None = None) -> Path:
    """The verified corpus directory for ``cfg``, built if absent (one builder at a time)."""
    path = (root / cfg.fingerprint()) if root else corpus_cache(cfg.fingerprint())
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_dir():
            verify_checkpoint(path)  # same manifest format: refuse a corrupt corpus
            return path
        return build_corpus(cfg, path)
