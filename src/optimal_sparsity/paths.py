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
