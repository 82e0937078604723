"""Dry run: build a config's model and one batch, everywhere.

Paper-size models are built on the meta device (no memory) and checked for their
parameter layout and count; models that fit run one real forward and backward.
"""

from __future__ import annotations

from pathlib import Path

import torch

from optimal_sparsity.accounting import count_params, matmul_flops_per_token
from optimal_sparsity.grid import get_config
from optimal_sparsity.model import build_model

REAL_RUN_LIMIT = 50_000_000  # parameters: above this only the meta build runs


def dry_run(name: str, corpus: Path | None = None, seq_len: int | None = None,
            micro_batch: int = 1) -> dict:
    overrides = {}
    if corpus is not None:
        from optimal_sparsity.data.shards import read_corpus_meta

        overrides["vocab_size"] = read_corpus_meta(corpus)["vocab_size"]
    cfg = get_config(name, **overrides)
    seq_len = seq_len or cfg.max_seq_len
    pc = count_params(cfg)
    info = {"model": cfg.name, "total_params": pc.total, "active_params": pc.active,
            "train_flops_per_token": matmul_flops_per_token(cfg, seq_len),
            "adamw_fp32_bytes": 16 * pc.total, "seq_len": seq_len, "micro_batch": micro_batch}
    if corpus is not None:
        from optimal_sparsity.data.shards import BatchSampler, open_split

        x, y = BatchSampler(open_split(corpus, "train"), seq_len, 0).batch(0, micro_batch)
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, cfg.vocab_size, (micro_batch, seq_len), generator=g)
        y = torch.roll(x, -1, 1)
    info["batch_shape"] = list(x.shape)
    if pc.total > REAL_RUN_LIMIT or cfg.backend != "torch":
        model = build_model(cfg.replace(backend="torch"), device="meta")
        n = sum(p.numel() for p in model.parameters())
        assert n == pc.total
        info["mode"] = "meta build (no forward: needs the GPU cluster)"
    else:
        model = build_model(cfg, seed=0)
        out = model(x, labels=y)
        out.loss.backward()
        info["mode"] = "forward + backward on CPU"
        info["loss"] = out.loss.item()
    for k, v in info.items():
        print(f"{k:>22}: {v:,}" if isinstance(v, int) else f"{k:>22}: {v}")
    return info
