"""Pre-training loss, recomputed from a checkpoint: cross-entropy (nats/token, no auxiliary
losses) on the held-out validation split and on a fixed sample of training sequences.

Windows are ``seq_len + 1`` tokens (inputs and next-token labels), as in training.

- validation: the first ``n_val`` windows of ``val.bin`` in order -- the trainer's own
  validation set (``shards.fixed_batches``) when ``n_val`` equals its ``eval_sequences``;
- training: ``n_train`` windows spread evenly over ``train.bin`` (window indices
  ``round(linspace(0, n_windows - 1, n_train))``), the same for every checkpoint of a run.

Each loss is the mean over all tokens of the sample. A corpus built with
``val_by_source`` also gets the validation CE of each source (knowledge, arithmetic,
scripts) on its own shard, the first ``n_val`` windows of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from optimal_sparsity.data.corpus import SOURCES, val_split
from optimal_sparsity.data.shards import fixed_batches, open_split, read_corpus_meta
from optimal_sparsity.errors import UserError
from optimal_sparsity.model.mean_ce import Batches, mean_ce

PROGRESS = "pretrain loss"  # the bar's label


@dataclass(frozen=True)
class PretrainLoss:
    train_loss: float
    val_loss: float
    n_train: int  # sequences
    n_val: int
    seq_len: int
    val_by_source: dict[str, float] = field(default_factory=dict)  # source -> CE (nats)
    n_val_by_source: dict[str, int] = field(default_factory=dict)  # source -> sequences


def train_sample(tokens: np.ndarray, seq_len: int, n: int, batch_size: int) -> Batches:
    w = seq_len + 1
    n_windows = len(tokens) // w
    if n_windows < 1:
        raise UserError(f"train split has {len(tokens)} tokens, fewer than one sequence of {w}")
    idx = np.unique(np.round(np.linspace(0, n_windows - 1, min(n, n_windows))).astype(np.int64))
    rows = torch.from_numpy(np.stack([np.asarray(tokens[i * w:(i + 1) * w], dtype=np.int64)
                                      for i in idx]))
    return [(rows[i:i + batch_size, :-1], rows[i:i + batch_size, 1:])
            for i in range(0, len(rows), batch_size)]


def pretrain_loss(model, corpus: str | Path, seq_len: int, *, n_train: int = 128,
                  n_val: int | None = None, batch_size: int = 16,
                  device: str | torch.device = "cpu") -> PretrainLoss:
    """Train and validation CE of ``model`` on ``corpus``; ``n_val=None``: the whole split."""
    val_tokens = open_split(corpus, "val")
    if n_val is None:
        n_val = len(val_tokens) // (seq_len + 1)
    val = fixed_batches(val_tokens, seq_len, n_val, batch_size)
    train = train_sample(open_split(corpus, "train"), seq_len, n_train, batch_size)
    by_source, n_by_source = {}, {}
    splits = read_corpus_meta(corpus).get("splits", {})
    for source in SOURCES:
        if val_split(source) in splits:
            b = fixed_batches(open_split(corpus, val_split(source)), seq_len, n_val, batch_size)
            by_source[source] = mean_ce(model, b, device, progress=PROGRESS)
            n_by_source[source] = sum(len(x) for x, _ in b)
    return PretrainLoss(train_loss=mean_ce(model, train, device, progress=PROGRESS),
                        val_loss=mean_ce(model, val, device, progress=PROGRESS),
                        n_train=sum(len(x) for x, _ in train), n_val=sum(len(x) for x, _ in val),
                        seq_len=seq_len, val_by_source=by_source, n_val_by_source=n_by_source)
