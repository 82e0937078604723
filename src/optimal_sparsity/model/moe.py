"""Dropless token-choice top-k MoE, pure PyTorch (the reference backend).

Math (Mixtral): router logits z = x W_r^T; p = softmax(z) over all E experts; take the
top-k of p and renormalise those k weights to sum to 1; each token's output is the
weighted sum of its k experts' SwiGLU outputs, expert e computing
``(silu(x W1_e^T) * (x V1_e^T)) W2_e``.

Dispatch is dropless: the (token, slot) pairs are sorted by expert and each expert runs
on exactly its rows (no capacity factor, nothing dropped). Parameters use MegaBlocks'
dMoE layout so a state dict moves between backends with ``strict=True``:

  router.layer.weight  [E, H]
  experts.mlp.w1       [E*F, H]   gate projection, used as x @ w1_e^T
  experts.mlp.v1       [E*F, H]   up projection,   used as x @ v1_e^T
  experts.mlp.w2       [E*F, H]   down projection, used as h @ w2_e
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from optimal_sparsity.config import ModelConfig
from optimal_sparsity.model.fused_moe import BLOCK_BYTES, dropless_experts, grouped_mm_ok


@dataclass
class RouterOutput:
    """What the trainer needs from a layer's router: logits and the top-k choices."""

    logits: torch.Tensor  # [T, E]
    top_idx: torch.Tensor  # [T, k]


class Router(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.layer = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)


class ExpertWeights(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        rows = cfg.n_experts * cfg.ffn_hidden
        self.w1 = nn.Parameter(torch.empty(rows, cfg.d_model))
        self.v1 = nn.Parameter(torch.empty(rows, cfg.d_model))
        self.w2 = nn.Parameter(torch.empty(rows, cfg.d_model))


class Experts(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.mlp = ExpertWeights(cfg)


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over all experts, top-k, renormalise: -> (weights [T,k] fp32, idx [T,k])."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, idx = torch.topk(probs, top_k, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), idx


def _contiguous_grad(t: torch.Tensor) -> torch.Tensor:
    # grouped_mm's backward rejects expanded (stride-0) gradients.
    if t.requires_grad:
        t.register_hook(lambda g: g.contiguous())
    return t


def expert_swiglu(
    xs: torch.Tensor,
    counts: torch.Tensor,
    w1: torch.Tensor,
    v1: torch.Tensor,
    w2: torch.Tensor,
    impl: str = "auto",
) -> torch.Tensor:
    """SwiGLU of rows ``xs`` [N, H] sorted by expert, ``counts`` [E] rows per expert.

    ``w1``, ``v1``, ``w2`` are viewed as [E, F, H]. ``impl``: ``grouped`` (one grouped
    matmul per projection, no host sync), ``loop`` (a Python loop over experts, not
    tokens), or ``auto`` (grouped where torch supports the shapes).
    """
    n_experts = counts.numel()
    hidden = xs.shape[-1]
    ffn = w1.shape[0] // n_experts
    w1e, v1e, w2e = (w.view(n_experts, ffn, hidden) for w in (w1, v1, w2))
    if impl == "auto":
        impl = "grouped" if grouped_mm_ok(xs, hidden, ffn) else "loop"
    if impl == "grouped":
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        gate = F.grouped_mm(xs, w1e.transpose(1, 2), offs=offs)
        up = F.grouped_mm(xs, v1e.transpose(1, 2), offs=offs)
        h = _contiguous_grad(F.silu(gate) * up)
        return _contiguous_grad(F.grouped_mm(h, w2e, offs=offs))
    if impl != "loop":
        raise ValueError(f"unknown expert implementation {impl!r}")
    outs = []
    for e, rows in enumerate(torch.split(xs, counts.tolist())):
        if rows.shape[0]:
            outs.append((F.silu(rows @ w1e[e].T) * (rows @ v1e[e].T)) @ w2e[e])
    return torch.cat(outs) if outs else xs.new_zeros(0, hidden)


class TorchMoE(nn.Module):
    """Dropless MoE in plain PyTorch; same parameters and math as MegaBlocks' dMoE.

    ``impl``: ``fused`` (default; one autograd Function, ``fused_moe.dropless_experts``),
    or the plain autograd compositions ``grouped`` / ``loop`` (references in tests).
    ``block_bytes`` sets the fused path's cache blocking (None: one block).
    """

    def __init__(self, cfg: ModelConfig, impl: str = "fused",
                 block_bytes: int | None = BLOCK_BYTES) -> None:
        super().__init__()
        if impl not in ("fused", "grouped", "loop", "auto"):
            raise ValueError(f"unknown MoE implementation {impl!r}")
        self.n_experts = cfg.n_experts
        self.top_k = cfg.top_k
        self.impl = "fused" if impl == "auto" else impl
        self.block_bytes = block_bytes
        self.router = Router(cfg)
        self.experts = Experts(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RouterOutput]:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        logits = self.router.layer(x)
        weights, idx = route(logits, self.top_k)
        mlp = self.experts.mlp
        if self.impl == "fused":
            out = dropless_experts(x, weights, idx, mlp.w1, mlp.v1, mlp.w2, self.n_experts,
                                   self.block_bytes)
            return out.view(shape), RouterOutput(logits=logits, top_idx=idx)
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)  # (token, slot) pairs sorted by expert
        counts = torch.bincount(flat, minlength=self.n_experts)
        xs = x[order // self.top_k]
        ys = expert_swiglu(xs, counts, mlp.w1, mlp.v1, mlp.w2, self.impl)
        # Undo the sort, then weight and sum each token's k expert outputs.
        y = torch.empty_like(ys).index_copy_(0, order, ys).view(-1, self.top_k, shape[-1])
        out = torch.einsum("tkh,tk->th", y, weights.to(y.dtype))
        return out.view(shape), RouterOutput(logits=logits, top_idx=idx)


def init_moe_(moe: nn.Module, cfg: ModelConfig) -> None:
    """Normal(0, std) everywhere; the down projection w2 uses the output-layer std."""
    with torch.no_grad():
        nn.init.normal_(moe.router.layer.weight, std=cfg.init_std)
        nn.init.normal_(moe.experts.mlp.w1, std=cfg.init_std)
        nn.init.normal_(moe.experts.mlp.v1, std=cfg.init_std)
        nn.init.normal_(moe.experts.mlp.w2, std=output_init_std(cfg))


def output_init_std(cfg: ModelConfig) -> float:
    """Megatron's scaled init for layers that write into the residual stream."""
    return cfg.init_std / math.sqrt(2.0 * cfg.n_layers)
