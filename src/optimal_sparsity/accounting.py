"""Exact parameter and FLOP accounting.

Counts come from the real ``nn.Parameter``s of a model built on the meta device (no
memory is allocated), split into embedding (input embedding and output head), expert,
router and the rest.

Active parameters follow the convention of the released models' names
(``...-320M-A170M``): everything that belongs to one expert -- its three FFN matrices
and its row of the router -- is counted for k of the E experts. (Every token does
compute all E router logits; counting the full router instead adds L(E-k)d, at most
0.9% on the grid, and would make 3 of the 65 names round differently.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from optimal_sparsity.config import ModelConfig


@dataclass(frozen=True)
class ParamCount:
    total: int
    active: int
    embedding: int  # input embedding + untied output head
    expert: int  # all experts of all layers
    router: int

    @property
    def active_non_embedding(self) -> int:
        return self.active - self.embedding


@functools.lru_cache(maxsize=4096)
def count_params(cfg: ModelConfig) -> ParamCount:
    """Count the parameters of the model ``cfg`` builds (on the meta device)."""
    from optimal_sparsity.model import build_model

    model = build_model(cfg.replace(backend="torch"), device="meta")
    total = embedding = expert = router = 0
    for name, p in model.named_parameters():
        n = p.numel()
        total += n
        if name.startswith(("embed_tokens.", "lm_head.")):
            embedding += n
        elif ".moe.experts." in name:
            expert += n
        elif ".moe.router." in name:
            router += n
    per_expert = expert + router
    active = total - per_expert + per_expert * cfg.top_k // cfg.n_experts
    return ParamCount(total=total, active=active, embedding=embedding, expert=expert,
                      router=router)


def formula_params(cfg: ModelConfig) -> tuple[int, int]:
    """docs/paper.md's closed form (total, active): L(4d^2 + 3*E*d*F + E*d + 2d) + d + 2Vd,
    with k in place of E for active."""
    d, f, n_layers, v = cfg.d_model, cfg.ffn_hidden, cfg.n_layers, cfg.vocab_size

    def with_experts(n: int) -> int:
        return n_layers * (4 * d * d + 3 * n * d * f + n * d + 2 * d) + d + 2 * v * d

    return with_experts(cfg.n_experts), with_experts(cfg.top_k)


def matmul_flops_per_token(cfg: ModelConfig, seq_len: int | None = None,
                           training: bool = True) -> float:
    """Matmul FLOPs per token actually executed by the model (2 per multiply-add).

    Counts q/k/v/o, router, k experts' three projections, the output head, and
    attention scores and values over a causal context (on average (S+1)/2 keys per
    query). Training = forward + backward = 3x forward.
    """
    s = seq_len or cfg.max_seq_len
    fwd = forward_flops_per_token(cfg, (s + 1) / 2)
    return 3 * fwd if training else fwd


def forward_flops_per_token(cfg: ModelConfig, context: float) -> float:
    """Matmul FLOPs of one token's forward pass attending to ``context`` keys."""
    d, f = cfg.d_model, cfg.ffn_hidden
    per_layer = 4 * d * d + cfg.n_experts * d + cfg.top_k * 3 * d * f + 2 * d * context
    return 2 * (cfg.n_layers * per_layer + cfg.vocab_size * d)


def activation_bytes_per_token(cfg: ModelConfig) -> dict[str, int]:
    """Bytes the forward keeps for the backward, per token, under bf16 autocast with a
    flash-style attention (no S x S matrix) -- an estimate counted tensor by tensor:

    attention, per layer: the fp32 residual into the norm (4d), its bf16 cast (2d),
    q, k, v (6d), RoPE'd q and k (4d), the attention output (2d), its log-sum-exp (4h),
    the o-projection input (2d); MoE, per layer: the fp32 residual (4d), the router
    input (2d), router logits and probabilities in fp32 (8E), and for each of the k
    (token, expert) pairs the dispatched input (2d), gate and up outputs (4F), SiLU
    output and product (4F), expert output (2d); once: final norm and head input (6d),
    bf16 logits, their fp32 copy and log-softmax (10V).
    """
    d, f, e, k, h = cfg.d_model, cfg.ffn_hidden, cfg.n_experts, cfg.top_k, cfg.n_heads
    attention = 20 * d + 4 * h
    moe = 6 * d + 8 * e + k * (4 * d + 8 * f)
    return {"attention": cfg.n_layers * attention, "moe": cfg.n_layers * moe,
            "head": 6 * d + 10 * cfg.vocab_size}


def training_memory(cfg: ModelConfig, micro_batch: int, seq_len: int) -> dict[str, int]:
    """Bytes per data-parallel rank as this trainer trains (fp32 master weights, fp32
    gradients, AdamW's two fp32 moments, bf16 autocast; no sharding): model state,
    autocast's bf16 weight copies and the activations of one micro-batch (an estimate,
    ``activation_bytes_per_token``)."""
    p = count_params(cfg).total
    act = sum(activation_bytes_per_token(cfg).values()) * micro_batch * seq_len
    return {"weights": 4 * p, "grads": 4 * p, "adam": 8 * p, "bf16_weights": 2 * p,
            "activations": act}
