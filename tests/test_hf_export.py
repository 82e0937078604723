"""HF export/import: transformers' MixtralForCausalLM gives our logits."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from optimal_sparsity.checkpoint import save_checkpoint, write_manifest
from optimal_sparsity.data.tokenizer import train_bpe
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.hf_export import WEIGHTS_INDEX, export_hf, import_hf
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


def test_sharded_export(tmp_path, tiny_cfg):
    """Above the shard size: model-0000i-of-0000n.safetensors with an index, readable by
    transformers and our importer alike, each file 0644 under umask 022."""
    model = _perturbed(tiny_cfg, seed=2)
    save_checkpoint(tmp_path / "ckpt", model, tiny_cfg)
    old = os.umask(0o022)
    try:
        export_hf(tmp_path / "ckpt", tmp_path / "hf", max_shard_size=40_000)
    finally:
        os.umask(old)
    hf_dir = tmp_path / "hf"
    index = json.loads((hf_dir / WEIGHTS_INDEX).read_text())
    shards = sorted(p.name for p in hf_dir.glob("*.safetensors"))
    assert len(shards) > 2 and "model.safetensors" not in shards
    assert sorted(set(index["weight_map"].values())) == shards
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in hf_dir.iterdir())
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    back, _ = import_hf(hf_dir)
    ids = torch.randint(0, 96, (2, 30))
    with torch.no_grad():
        ours = model(ids).logits
        assert (hf(ids).logits - ours).abs().max().item() <= 1e-5
        assert torch.equal(back(ids).logits, ours)


def _tokenizer(tmp_path):
    texts = [f"Question: what is {a} + {b}?\nAnswer: {a + b}" for a in range(20) for b in range(9)]
    return train_bpe(texts, 200, tmp_path / "tok")


def _portable(config: dict, window: int) -> None:
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # not 5.x's TokenizersBackend
    assert config["model_input_names"] == ["input_ids", "attention_mask"]
    assert config["model_max_length"] == window


def test_export_tokenizer_loads_in_every_transformers(tmp_path):
    """The checkpoint's and the export's tokenizer_config.json are the form 4.x and 5.x both
    load (tests/compat/ loads it in 4.57); generate(**tok(text)) runs on the export."""
    tok_dir = _tokenizer(tmp_path)
    vocab = len(AutoTokenizer.from_pretrained(tok_dir))
    cfg = scaled_config(32, 4, 2, n_layers=2, vocab_size=vocab, max_seq_len=48)
    save_checkpoint(tmp_path / "ckpt", _perturbed(cfg), cfg, tokenizer_dir=tok_dir)
    _portable(json.loads((tmp_path / "ckpt" / "tokenizer_config.json").read_text()), 48)
    export_hf(tmp_path / "ckpt", tmp_path / "hf")
    _portable(json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text()), 48)
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.model_max_length == 48
    enc = tok("Question: what is 3 + 4?", return_tensors="pt")
    assert sorted(enc) == ["attention_mask", "input_ids"]
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    out = hf.generate(**enc, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out.shape[1] == enc["input_ids"].shape[1] + 4


def test_export_of_an_older_checkpoint_rewrites_its_tokenizer(tmp_path):
    """A checkpoint saved with transformers 5.x's own tokenizer_config.json (class
    TokenizersBackend, window 1,000,000) still exports a portable tokenizer."""
    tok_dir = _tokenizer(tmp_path)
    cfg = scaled_config(32, 4, 2, n_layers=2, vocab_size=len(AutoTokenizer.from_pretrained(
        tok_dir)), max_seq_len=64)
    ckpt = save_checkpoint(tmp_path / "ckpt", build_model(cfg, seed=0), cfg, tokenizer_dir=tok_dir)
    (ckpt / "tokenizer_config.json").write_text(json.dumps(
        {"backend": "tokenizers", "tokenizer_class": "TokenizersBackend",
         "eos_token": "<|endoftext|>", "model_max_length": 1_000_000}))
    write_manifest(ckpt)
    export_hf(ckpt, tmp_path / "hf")
    _portable(json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text()), 64)
