"""Mixtral-style decoder (docs/paper.md): pre-norm RMSNorm, full multi-head attention with
RoPE (base 10000), and a dropless top-k MoE of SwiGLU experts in every layer. No biases,
no dropout, untied input and output embeddings, Normal(0, 0.02) init (the two
projections writing into the residual stream use 0.02/sqrt(2L), Megatron's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from optimal_sparsity.config import ModelConfig
from optimal_sparsity.model.losses import load_balancing_loss, router_z_loss
from optimal_sparsity.model.moe import RouterOutput, TorchMoE, init_moe_, output_init_std


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.float32 and self.weight.dtype == torch.float32:
            # torch's fused kernel: same math, bitwise-equal here, fewer passes.
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_cos_sin(seq_len: int, head_dim: int, theta: float, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [S, head_dim] in the half-rotation layout HF Mixtral uses."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    pos = torch.arange(seq_len, device=device, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        d = cfg.d_model
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: LayerKV | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Without ``cache``: causal attention over ``x`` (cos/sin [S, head_dim]). With it:
        ``x`` holds the next tokens, cos/sin [B, s, head_dim] are their positions' tables,
        their keys/values are appended to ``cache`` and ``mask`` [B, 1, s, T] says which
        cached keys each query sees."""
        b, s, d = x.shape
        # One matmul for q, k and v (their weights concatenated per call: 3d^2 copied),
        # and RoPE applied to q and k together.
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        qkv = F.linear(x, w).view(b, s, 3, self.n_heads, self.head_dim)
        if cache is None:
            qk = apply_rope(qkv[:, :, :2], cos[:s, None, None], sin[:s, None, None])
        else:
            qk = apply_rope(qkv[:, :, :2], cos[:, :, None, None], sin[:, :, None, None])
        q, k, v = (t.transpose(1, 2) for t in (qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]))
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v = cache.append(k, v)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(b, s, d))


@dataclass
class LayerKV:
    """One layer's cached keys and values [B, H, T, head_dim] (RoPE already applied).

    With a ``capacity`` (slots), the buffers are allocated once at that length and each
    step writes its keys in place; without one, each step concatenates (a copy of the
    whole cache per step)."""

    capacity: int | None = None
    k_buf: torch.Tensor | None = None
    v_buf: torch.Tensor | None = None
    length: int = 0

    @property
    def k(self) -> torch.Tensor | None:
        return None if self.k_buf is None else self.k_buf[:, :, :self.length]

    @property
    def v(self) -> torch.Tensor | None:
        return None if self.v_buf is None else self.v_buf[:, :, :self.length]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = k.shape[2]
        end = self.length + s
        if self.k_buf is None or (self.capacity is None or end > self.k_buf.shape[2]):
            size = max(end, self.capacity or 0)
            grown = [t.new_empty(*t.shape[:2], size, t.shape[3]) for t in (k, v)]
            if self.k_buf is not None:
                grown[0][:, :, :self.length] = self.k
                grown[1][:, :, :self.length] = self.v
            self.k_buf, self.v_buf = grown
        self.k_buf[:, :, self.length:end] = k
        self.v_buf[:, :, self.length:end] = v
        self.length = end
        return self.k, self.v


@dataclass
class KVCache:
    """Decoding state of a batch: every layer's keys/values, which cached slots hold real
    tokens (``valid`` [B, T]: False for left padding) and each row's next position."""

    layers: list[LayerKV]
    valid: torch.Tensor
    next_pos: torch.Tensor
    rope: tuple[torch.Tensor, torch.Tensor] | None = None  # cos/sin of every position so far

    @classmethod
    def empty(cls, n_layers: int, batch: int, device: torch.device,
              capacity: int | None = None) -> KVCache:
        """``capacity``: the slots a decode will fill (prompt width + new tokens), so
        keys and values are written in place instead of concatenated each step."""
        return cls([LayerKV(capacity) for _ in range(n_layers)],
                   torch.zeros((batch, 0), dtype=torch.bool, device=device),
                   torch.zeros(batch, dtype=torch.long, device=device))

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` of the batch (finished sequences leave it)."""
        for layer in self.layers:
            if layer.k_buf is not None:
                layer.k_buf, layer.v_buf = layer.k_buf[rows], layer.v_buf[rows]
        self.valid, self.next_pos = self.valid[rows], self.next_pos[rows]


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, moe: nn.Module) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.moe = moe

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: LayerKV | None = None, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, RouterOutput]:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, mask)
        y, routing = self.moe(self.post_attention_layernorm(x))
        return x + y, routing


@dataclass
class ModelOutput:
    logits: torch.Tensor | None
    loss: torch.Tensor | None = None  # CE + lb_coef * lb_loss + z_coef * z_loss
    ce_loss: torch.Tensor | None = None
    lb_loss: torch.Tensor | None = None  # summed over layers, unscaled
    z_loss: torch.Tensor | None = None  # summed over layers, unscaled
    routing: list[RouterOutput] = field(default_factory=list)


def make_moe(cfg: ModelConfig) -> nn.Module:
    if cfg.backend == "torch":
        return TorchMoE(cfg)
    from optimal_sparsity.model.megablocks_moe import build_megablocks_moe

    return build_megablocks_moe(cfg)


class MoECausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(DecoderLayer(cfg, make_moe(cfg)) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        std = self.cfg.init_std
        nn.init.normal_(self.embed_tokens.weight, std=std)
        nn.init.normal_(self.lm_head.weight, std=std)
        for layer in self.layers:
            attn = layer.self_attn
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
                nn.init.normal_(lin.weight, std=std)
            nn.init.normal_(attn.o_proj.weight, std=output_init_std(self.cfg))
            if self.cfg.backend == "torch":  # MegaBlocks initialises its own experts
                init_moe_(layer.moe, self.cfg)
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        self.norm.weight.fill_(1.0)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                return_logits: bool = True) -> ModelOutput:
        """``input_ids`` [B, S]; ``labels`` [B, S] aligned with the inputs (the next
        token at each position; -100 is ignored). Returns logits and, with labels, the
        loss and its parts."""
        cfg = self.cfg
        x = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(input_ids.shape[1], cfg.head_dim, cfg.rope_theta, x.device)
        routing = []
        for layer in self.layers:
            x, r = layer(x, cos, sin)
            routing.append(r)
        logits = self.lm_head(self.norm(x))
        out = ModelOutput(logits=logits if return_logits else None, routing=routing)
        if labels is not None:
            ce = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.reshape(-1),
                                 ignore_index=-100)
            lb = sum(load_balancing_loss(r.logits, r.top_idx, cfg.n_experts) for r in routing)
            z = sum(router_z_loss(r.logits) for r in routing)
            out.ce_loss, out.lb_loss, out.z_loss = ce, lb, z
            out.loss = ce + cfg.lb_coef * lb + cfg.z_coef * z
        return out

    @torch.no_grad()
    def forward_cached(self, input_ids: torch.Tensor, valid: torch.Tensor,
                       cache: KVCache) -> torch.Tensor:
        """Logits [B, s, V] of the next ``s`` tokens of each row, appended to ``cache``.

        ``valid`` [B, s] marks real tokens (False: left padding, which takes no position
        and is never attended to). The same math as ``forward`` on each row's real
        tokens; a pad query attends to itself only, so no softmax row is empty."""
        cfg = self.cfg
        s = input_ids.shape[1]
        pos = (cache.next_pos[:, None] + valid.long().cumsum(1) - 1).clamp(min=0)
        cache.next_pos = cache.next_pos + valid.long().sum(1)
        cache.valid = torch.cat([cache.valid, valid], dim=1)
        t = cache.valid.shape[1]
        key_slot = torch.arange(t, device=input_ids.device)
        query_slot = key_slot[t - s:, None]
        mask = (cache.valid[:, None, :] & (key_slot <= query_slot)) | (key_slot == query_slot)
        need = int(pos.max()) + 1
        if cache.rope is None or cache.rope[0].shape[0] < need:  # tables of the capacity
            length = max(need, cache.layers[0].capacity or 0) if cache.layers else need
            cache.rope = rope_cos_sin(length, cfg.head_dim, cfg.rope_theta, input_ids.device)
        cos, sin = cache.rope
        x = self.embed_tokens(input_ids)
        for layer, kv in zip(self.layers, cache.layers, strict=True):
            x, _ = layer(x, cos[pos], sin[pos], kv, mask[:, None])
        return self.lm_head(self.norm(x))


def build_model(cfg: ModelConfig, seed: int | None = None, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> MoECausalLM:
    """Build and initialise a model. On ``device='meta'`` nothing is allocated."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        model = MoECausalLM(cfg)
    if str(device) != "meta":
        model.init_weights()
    return model.to(dtype=dtype)
