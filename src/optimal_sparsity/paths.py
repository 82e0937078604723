"""Where the artifact keeps generated data (corpora, runs, results)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def home() -> Path:
    """``$OPTIMAL_SPARSITY_HOME``, else ``runs/`` in the checkout."""
    return Path(os.environ.get("OPTIMAL_SPARSITY_HOME", REPO / "runs"))


def corpus_cache(fingerprint: str) -> Path:
    return home() / "corpora" / fingerprint


def mode_dir(results: str | os.PathLike, mode: str, scale: str) -> Path:
    """Where one mode's figures, results table and ``run.json`` go under a results root:
    ``<scale>/`` for the retrained study, ``pull/`` for the released checkpoints (whatever
    the scale), so a pull-mode run never touches a retrain run's files."""
    return Path(results) / ("pull" if mode == "pull" else scale)
