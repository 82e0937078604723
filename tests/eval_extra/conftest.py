"""Fixtures for the generative evaluations: a tiny checkpoint with the tiny corpus's
tokenizer, and its Hugging Face export."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_lm_checkpoint(tiny_corpus, tmp_path_factory):
    from optimal_sparsity.checkpoint import save_checkpoint
    from optimal_sparsity.data.tokenizer import load_tokenizer
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.model import build_model

    tok = load_tokenizer(tiny_corpus / "tokenizer")
    cfg = scaled_config(32, 4, 2, n_layers=2, vocab_size=len(tok), max_seq_len=256)
    model = build_model(cfg, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # off the init, so that sampled text varies
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model, cfg,
                           tokenizer_dir=tiny_corpus / "tokenizer",
                           meta={"step": 7, "tokens": 1000})


@pytest.fixture(scope="session")
def tiny_hf_dir(tiny_lm_checkpoint, tmp_path_factory):
    from optimal_sparsity.hf_export import export_hf

    return export_hf(tiny_lm_checkpoint, tmp_path_factory.mktemp("hf") / "tiny")
