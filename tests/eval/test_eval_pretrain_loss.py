"""Pre-training loss recomputed from a checkpoint equals the trainer's own numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from optimal_sparsity.checkpoint import load_checkpoint
from optimal_sparsity.data.shards import open_split
from optimal_sparsity.eval.pretrain_loss import pretrain_loss, train_sample


def test_val_loss_equals_the_trainers(eval_run, one_thread):
    """Same sequences (the first eval_sequences windows of val.bin), same batches: the
    recomputed validation CE is the trainer's final val_loss."""
    model, _ = load_checkpoint(eval_run.ckpt)
    r = pretrain_loss(model, eval_run.corpus, eval_run.seq_len, n_train=4,
                      n_val=eval_run.eval_sequences, batch_size=eval_run.micro_batch)
    assert r.n_val == eval_run.eval_sequences
    assert r.val_loss == pytest.approx(eval_run.val_loss, abs=1e-6)
    # another batch size changes only the float summation order
    r2 = pretrain_loss(model, eval_run.corpus, eval_run.seq_len, n_train=4,
                       n_val=eval_run.eval_sequences, batch_size=3)
    assert r2.val_loss == pytest.approx(eval_run.val_loss, abs=1e-5)


def test_train_loss_is_the_mean_ce_of_evenly_spread_windows(eval_run, one_thread):
    model, _ = load_checkpoint(eval_run.ckpt)
    tokens = open_split(eval_run.corpus, "train")
    seq, n = eval_run.seq_len, 5
    batches = train_sample(tokens, seq, n, batch_size=2)
    x = torch.cat([b[0] for b in batches])
    n_windows = len(tokens) // (seq + 1)
    first, last = np.asarray(tokens[:seq], dtype=np.int64), np.asarray(
        tokens[(n_windows - 1) * (seq + 1):(n_windows - 1) * (seq + 1) + seq], dtype=np.int64)
    assert x.shape == (n, seq)
    assert torch.equal(x[0], torch.from_numpy(first)) and torch.equal(x[-1], torch.from_numpy(last))
    # by hand: per-sequence CE from the logits, then the token-weighted mean
    with torch.no_grad():
        ces = [F.cross_entropy(model(xb[None]).logits[0], yb, reduction="sum").item()
               for b in batches for xb, yb in zip(*b, strict=True)]
    r = pretrain_loss(model, eval_run.corpus, seq, n_train=n, n_val=2, batch_size=2)
    assert r.n_train == n
    assert r.train_loss == pytest.approx(sum(ces) / (n * seq), rel=1e-5)
    assert 0 < r.train_loss < np.log(len(np.unique(tokens)))  # it learned something
