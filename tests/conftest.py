from __future__ import annotations

import os

import pytest
import torch

# Bit-reproducible CPU runs: fixed threads, deterministic algorithms where torch has them.
torch.set_num_threads(int(os.environ.get("OPTIMAL_SPARSITY_THREADS", "2")))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tiny_cfg():
    from optimal_sparsity.grid import scaled_config

    return scaled_config(32, 4, 2, n_layers=2, vocab_size=96, max_seq_len=64)
