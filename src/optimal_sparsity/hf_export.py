"""Export to, and import from, Hugging Face ``MixtralForCausalLM`` directories.

Exported directories use the legacy Mixtral key layout that every transformers
version, vLLM and lm-eval read::

    model.layers.{i}.block_sparse_moe.gate.weight            = router.layer.weight
    model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight  = w1[eF:(e+1)F]     (gate)
    model.layers.{i}.block_sparse_moe.experts.{e}.w3.weight  = v1[eF:(e+1)F]     (up)
    model.layers.{i}.block_sparse_moe.experts.{e}.w2.weight  = w2[eF:(e+1)F].T   (down)

Weights above ``MAX_SHARD_SIZE`` are split into ``model-0000i-of-0000n.safetensors``
shards with a ``model.safetensors.index.json`` (huggingface_hub's saver, the layout
``from_pretrained``, vLLM and the hub read); smaller models get one ``model.safetensors``.
The tokenizer is written in the form transformers 4.x and 5.x both load, with the
model's window as ``model_max_length``.

The config carries ``rope_theta`` both at the top level (transformers 4.x reads it
there and silently falls back to 1e6 without it) and in ``rope_parameters`` (5.x).
Import also reads transformers 5.x's fused in-memory names (``mlp.gate``,
``mlp.experts.gate_up_proj``/``down_proj``) and sharded checkpoints.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from optimal_sparsity.atomic import atomic_dir, check_replaceable
from optimal_sparsity.checkpoint import copy_tokenizer, load_checkpoint, safetensors_io
from optimal_sparsity.config import ModelConfig
from optimal_sparsity.errors import IntegrityError, UserError

# transformers 4.x's default shard size; the hub takes files up to 50 GB.
MAX_SHARD_SIZE = "5GB"
WEIGHTS_INDEX = "model.safetensors.index.json"

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_SIMPLE = {  # our name -> HF name, for everything but the MoE
    "embed_tokens.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_LAYER_SIMPLE = ("input_layernorm.weight", "post_attention_layernorm.weight",
                 "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                 "self_attn.v_proj.weight", "self_attn.o_proj.weight")


def hf_config(cfg: ModelConfig, bos_token_id: int | None = None,
              eos_token_id: int | None = None, pad_token_id: int | None = None) -> dict:
    return {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "num_local_experts": cfg.n_experts,
        "num_experts_per_tok": cfg.top_k,
        "router_aux_loss_coef": cfg.lb_coef,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "initializer_range": cfg.init_std,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "torch_dtype": "float32",
    }


def to_hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    e_count, f = cfg.n_experts, cfg.ffn_hidden
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name in _SIMPLE:
            out[_SIMPLE[name]] = t
            continue
        m = _LAYER.match(name)
        if not m:
            raise KeyError(f"unexpected parameter {name}")
        i, rest = m.groups()
        pre = f"model.layers.{i}."
        if rest in _LAYER_SIMPLE:
            out[pre + rest] = t
        elif rest == "moe.router.layer.weight":
            out[pre + "block_sparse_moe.gate.weight"] = t
        elif rest.startswith("moe.experts.mlp."):
            kind = rest.rsplit(".", 1)[1]
            for e in range(e_count):
                block = t[e * f:(e + 1) * f]
                if kind == "w1":
                    out[f"{pre}block_sparse_moe.experts.{e}.w1.weight"] = block.clone()
                elif kind == "v1":
                    out[f"{pre}block_sparse_moe.experts.{e}.w3.weight"] = block.clone()
                elif kind == "w2":
                    out[f"{pre}block_sparse_moe.experts.{e}.w2.weight"] = block.T.contiguous()
                else:
                    raise KeyError(f"unexpected parameter {name}")
        else:
            raise KeyError(f"unexpected parameter {name}")
    return out


EXPORT_KIND = "hf-export"  # the output marker atomic_dir writes


def export_hf(checkpoint: str | Path, out: str | Path, *, replace: bool = False,
              max_shard_size: int | str = MAX_SHARD_SIZE) -> Path:
    """Write a ``MixtralForCausalLM`` directory (weights sharded above ``max_shard_size``)
    for a (verified) checkpoint or an HF Mixtral directory; ``replace``: an earlier export
    at ``out`` may be replaced. ``out`` may not overlap the input."""
    checkpoint, out = Path(checkpoint), Path(out)
    src, dst = checkpoint.resolve(), out.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise UserError(f"export: the output {out} overlaps the input {checkpoint}; choose "
                        "an output outside it")
    check_replaceable(out, EXPORT_KIND, replace=replace)
    if is_hf_model_dir(checkpoint):
        model, cfg = import_hf(checkpoint)
    else:
        model, cfg = load_checkpoint(checkpoint)
    special = _special_token_ids(checkpoint)
    with atomic_dir(out, EXPORT_KIND, replace=replace) as tmp:
        write_hf_files(model.state_dict(), cfg, tmp, special, max_shard_size=max_shard_size)
        if (checkpoint / "tokenizer.json").is_file():
            copy_tokenizer(checkpoint, tmp, model_max_length=cfg.max_seq_len)
    return out


def write_hf_files(state: dict[str, torch.Tensor], cfg: ModelConfig, out: Path,
                   special: dict[str, int | None] | None = None, *,
                   max_shard_size: int | str = MAX_SHARD_SIZE) -> None:
    """Weights (sharded above ``max_shard_size``), config and generation config of a
    ``MixtralForCausalLM`` into ``out``, a directory being built (``atomic_dir``)."""
    from huggingface_hub import save_torch_state_dict

    special = special or {}
    state = {k: v.detach().cpu() for k, v in state.items()}
    with safetensors_io(out / "model.safetensors"):
        save_torch_state_dict(to_hf_state_dict(state, cfg), out, max_shard_size=max_shard_size,
                              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config(cfg, **special), indent=2) + "\n")
    gen = {k: v for k, v in special.items() if v is not None}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    umask = os.umask(0)
    os.umask(umask)
    for p in out.glob("*.safetensors"):  # safetensors writes 0600 whatever the umask
        p.chmod(0o666 & ~umask)


def _special_token_ids(checkpoint: Path) -> dict[str, int | None]:
    ids: dict[str, int | None] = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if not (checkpoint / "tokenizer.json").is_file():
        return ids
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(checkpoint))
    ids.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id)
    return ids


# Import ---------------------------------------------------------------------------

def is_hf_model_dir(path: Path) -> bool:
    """An HF Mixtral directory (not this project's checkpoint, whose config has a format)."""
    try:
        data = json.loads((Path(path) / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "mixtral" and "format" not in data


def config_from_hf(hf: dict, name: str = "hf-import") -> ModelConfig:
    if hf.get("model_type") != "mixtral":
        raise UserError(f"not a Mixtral config (model_type={hf.get('model_type')!r})")
    heads = hf["num_attention_heads"]
    if hf.get("num_key_value_heads", heads) != heads:
        raise UserError("grouped-query attention (num_key_value_heads != heads) is not "
                        "part of the paper's architecture")
    theta = hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta")
    if theta is None:
        raise UserError("config has no rope_theta")
    if hf.get("tie_word_embeddings"):
        raise UserError("tied embeddings are not part of the paper's architecture")
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    if head_dim * heads != hf["hidden_size"]:
        raise UserError("head_dim * heads != hidden_size is not supported")
    return ModelConfig(
        name=name, d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=heads,
        n_experts=hf["num_local_experts"], top_k=hf["num_experts_per_tok"],
        ffn_hidden=hf["intermediate_size"], vocab_size=hf["vocab_size"],
        max_seq_len=hf["max_position_embeddings"], rope_theta=float(theta),
        norm_eps=hf.get("rms_norm_eps", 1e-5), init_std=hf.get("initializer_range", 0.02),
        lb_coef=hf.get("router_aux_loss_coef", 1e-2),
    )


def _hf_tensors(directory: Path) -> Iterator[tuple[str, torch.Tensor]]:
    index = directory / WEIGHTS_INDEX
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise UserError(f"no safetensors weights in {directory} (pickled .bin files are refused)")
    for fname in files:
        with safe_open(directory / fname, framework="pt") as f:
            for k in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                yield k, f.get_tensor(k)


def from_hf_state_dict(tensors: dict[str, torch.Tensor], cfg: ModelConfig
                       ) -> dict[str, torch.Tensor]:
    inverse = {v: k for k, v in _SIMPLE.items()}
    out: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name in inverse:
            out[inverse[name]] = t
            continue
        m = re.match(r"^model\.layers\.(\d+)\.(.+)$", name)
        if not m:
            raise IntegrityError(f"unexpected tensor {name} in HF checkpoint")
        i, rest = int(m.group(1)), m.group(2)
        pre = f"layers.{i}."
        if rest in _LAYER_SIMPLE:
            out[pre + rest] = t
        elif rest in ("block_sparse_moe.gate.weight", "mlp.gate.weight"):
            out[pre + "moe.router.layer.weight"] = t
        elif em := re.match(r"^block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$", rest):
            experts.setdefault((i, em.group(2)), {})[int(em.group(1))] = t
        elif rest == "mlp.experts.gate_up_proj":  # [E, 2F, H]
            gate, up = t.chunk(2, dim=1)
            out[pre + "moe.experts.mlp.w1"] = gate.reshape(-1, t.shape[-1])
            out[pre + "moe.experts.mlp.v1"] = up.reshape(-1, t.shape[-1])
        elif rest == "mlp.experts.down_proj":  # [E, H, F]
            out[pre + "moe.experts.mlp.w2"] = t.transpose(1, 2).reshape(-1, t.shape[1])
        else:
            raise IntegrityError(f"unexpected tensor {name} in HF checkpoint")
    ours = {"w1": "w1", "w3": "v1", "w2": "w2"}
    for (i, kind), blocks in experts.items():
        if sorted(blocks) != list(range(cfg.n_experts)):
            raise IntegrityError(f"layer {i}: expected experts 0..{cfg.n_experts - 1} for {kind}")
        parts = [blocks[e].T if kind == "w2" else blocks[e] for e in range(cfg.n_experts)]
        out[f"layers.{i}.moe.experts.mlp.{ours[kind]}"] = torch.cat(parts).contiguous()
    return out


def import_hf(directory: str | Path, device: str | torch.device = "cpu"
              ) -> tuple[torch.nn.Module, ModelConfig]:
    """Load an HF Mixtral directory (safetensors only) into this project's model."""
    from optimal_sparsity.model import build_model

    directory = Path(directory)
    cfg = config_from_hf(json.loads((directory / "config.json").read_text()),
                         name=directory.name)
    state = from_hf_state_dict(dict(_hf_tensors(directory)), cfg)
    model = build_model(cfg, device="meta")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model.to(device), cfg
