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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The 'tiny' preset corpus, built once per test session."""
    from optimal_sparsity.data.corpus import build_corpus
    from optimal_sparsity.data.presets import PRESETS

    return build_corpus(PRESETS["tiny"], tmp_path_factory.mktemp("corpus") / "tiny")


@pytest.fixture(scope="session")
def tiny_train_config(tiny_corpus):
    from optimal_sparsity.train.config import TrainConfig

    return TrainConfig.of_model("s-d32-E4-k2", corpus=str(tiny_corpus), steps=12, seq_len=64,
                       micro_batch=4, lr=3e-3, eval_sequences=8, ckpt_interval=4,
                       keep_fractions=(0.5,), model_overrides={"n_layers": 2}, threads=2)


@pytest.fixture(scope="session")
def harness_env():
    """``harness_env(requirements=None)``: the Python of an authors'-harness environment
    (``eval.harness_env``), built on first use from PyPI; the test is skipped, saying why,
    only where it cannot be built (no PyPI)."""
    from optimal_sparsity.errors import UserError
    from optimal_sparsity.eval.harness_env import REQUIREMENTS, harness_python

    def get(requirements=None):
        req = requirements or REQUIREMENTS
        try:
            return harness_python(req, log=lambda _: None)
        except (UserError, OSError) as err:
            pytest.skip(f"the environment of {req.name} cannot be built here (needs PyPI): {err}")

    return get
