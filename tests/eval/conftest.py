"""A tiny model trained once per session on the tiny corpus, for the evaluation tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# One thread for evaluation: on a shared 2-core machine, two spinning threads are many
# times slower than one (measured: 0.05 s vs 0.8 s per forward pass under load).
EVAL_THREADS = 1


@dataclass(frozen=True)
class EvalRun:
    run: Path
    ckpt: Path  # the final checkpoint
    corpus: Path
    val_loss: float  # the trainer's final validation loss
    eval_sequences: int
    micro_batch: int
    seq_len: int


@pytest.fixture(scope="session")
def eval_run(tiny_corpus, tmp_path_factory) -> EvalRun:
    """s-d32-E4-k2 (2 layers), 80 steps of 8 x 128 tokens on the tiny corpus (~10 s)."""
    import json

    from optimal_sparsity.train.config import TrainConfig
    from optimal_sparsity.train.loop import Trainer
    from optimal_sparsity.train.state import list_checkpoints

    cfg = TrainConfig.of_model("s-d32-E4-k2", corpus=str(tiny_corpus), steps=80, seq_len=128,
                      micro_batch=8, lr=3e-3, eval_sequences=8, keep_fractions=(0.5,),
                      model_overrides={"n_layers": 2}, threads=EVAL_THREADS)
    out = tmp_path_factory.mktemp("eval-run") / "run"
    threads = torch.get_num_threads()
    try:
        Trainer(cfg, out, progress=False).run()
    finally:
        torch.set_num_threads(threads)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r][-1]
    return EvalRun(run=out, ckpt=list_checkpoints(out / "checkpoints")[-1][1],
                   corpus=Path(tiny_corpus), val_loss=val, eval_sequences=cfg.eval_sequences,
                   micro_batch=cfg.micro_batch, seq_len=cfg.seq_len)


@pytest.fixture(scope="session")
def eval_hf_dir(eval_run, tmp_path_factory) -> Path:
    """The trained checkpoint exported as an HF MixtralForCausalLM directory."""
    from optimal_sparsity.hf_export import export_hf

    return export_hf(eval_run.ckpt, tmp_path_factory.mktemp("eval-hf") / "hf")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(EVAL_THREADS)
    yield
    torch.set_num_threads(threads)
