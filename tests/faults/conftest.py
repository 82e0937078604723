"""A tiny finished training run, shared by the fault tests, and a snapshot of a tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_run(tiny_train_config, tmp_path_factory) -> Path:
    """A finished 4-step run of s-d32-E4-k2 (2 layers) with one checkpoint (~2 s)."""
    from optimal_sparsity.train.loop import Trainer

    out = tmp_path_factory.mktemp("faults-run") / "run"
    Trainer(tiny_train_config.replace(steps=4, keep_fractions=()), out, progress=False).run()
    return out


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every entry under ``root``: its mode and (for files) sha256."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[str(p.relative_to(root))] = (p.stat().st_mode, digest)
    return out
