"""HF export/import: transformers' MixtralForCausalLM gives our logits."""

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from optimal_sparsity.checkpoint import save_checkpoint
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.hf_export import export_hf, import_hf
from optimal_sparsity.model import build_model


def _perturbed(cfg, seed=0):
    model = build_model(cfg, seed=seed)
    with torch.no_grad():  # move off the init so norms and all experts matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize(("e_count", "k"), [(4, 1), (4, 2), (8, 2), (8, 4), (4, 4)])
def test_hf_logits_equal_ours(tmp_path, e_count, k):
    cfg = scaled_config(32, e_count, k, n_layers=2, vocab_size=96, max_seq_len=64)
    model = _perturbed(cfg)
    save_checkpoint(tmp_path / "ckpt", model, cfg)
    export_hf(tmp_path / "ckpt", tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    assert type(hf).__name__ == "MixtralForCausalLM"
    ids = torch.randint(0, 96, (3, 48))
    with torch.no_grad():
        ours, theirs = model(ids).logits, hf(ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-5
    back, back_cfg = import_hf(tmp_path / "hf")
    assert back_cfg.fingerprint() == cfg.fingerprint()
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_export_layout_and_config(tmp_path, tiny_cfg):
    save_checkpoint(tmp_path / "ckpt", build_model(tiny_cfg, seed=0), tiny_cfg)
    export_hf(tmp_path / "ckpt", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["rope_theta"] == 10000.0  # top level: transformers 4.x reads it here
    assert config["rope_parameters"]["rope_theta"] == 10000.0
    assert config["tie_word_embeddings"] is False
    assert config["num_key_value_heads"] == config["num_attention_heads"]
    with safe_open(tmp_path / "hf" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.block_sparse_moe.experts.3.w2.weight" in keys
    assert "model.layers.1.block_sparse_moe.gate.weight" in keys


def test_import_of_transformers_save_pretrained(tmp_path, tiny_cfg):
    """A directory written by transformers itself imports with identical logits."""
    model = _perturbed(tiny_cfg, seed=1)
    save_checkpoint(tmp_path / "ckpt", model, tiny_cfg)
    export_hf(tmp_path / "ckpt", tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    hf.save_pretrained(tmp_path / "resaved")
    back, _ = import_hf(tmp_path / "resaved")
    ids = torch.randint(0, 96, (2, 30))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)
