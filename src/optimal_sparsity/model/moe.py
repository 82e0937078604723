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


def _grouped_mm_ok(x: torch.Tensor, *dims: int) -> bool:
    # torch's grouped_mm needs 16-byte aligned strides (fp32: dims % 4, bf16: dims % 8).
    align = 16 // x.element_size()
    return hasattr(F, "grouped_mm") and all(d % align == 0 for d in dims)


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
        impl = "grouped" if _grouped_mm_ok(xs, hidden, ffn) else "loop"
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


# Fused dropless experts -------------------------------------------------------------
# One autograd Function for dispatch, experts and combine. Against the autograd
# composition above it (measured in BENCHMARKS.md): gathers use index_select and the
# combines index_add_ (both deterministic on CPU; no index_put/scatter with duplicates),
# each block of experts runs its elementwise work right after its matmuls while the
# rows are still in cache, the backward recomputes silu(g) * u instead of storing it,
# writes weight gradients straight into their buffers, and accumulates the input
# gradient of gate and up projections in place (addmm_).

# Rows of one block: its [rows, F] intermediates should stay in the last-level cache.
BLOCK_BYTES = 2 << 20


def _plan_blocks(counts: list[int], row_budget: int) -> list[tuple[int, int, int, int]]:
    """Split experts into runs ``(e0, e1, r0, r1)`` of consecutive experts whose rows
    (r0..r1 of the sorted rows) total at most ``row_budget`` (or a single expert)."""
    blocks, e0, r0, r = [], 0, 0, 0
    for e, c in enumerate(counts):
        if r > r0 and r + c - r0 > row_budget:
            blocks.append((e0, e, r0, r))
            e0, r0 = e, r
        r += c
    blocks.append((e0, len(counts), r0, r))
    return blocks


def _block_mm(a: torch.Tensor, w: torch.Tensor, e0: int, e1: int,
              offs: torch.Tensor | None) -> torch.Tensor:
    """Rows ``a`` of experts e0..e1 times their matrices ``w[e]`` ([E, K, N] views)."""
    if e1 - e0 == 1:
        return torch.mm(a, w[e0])
    return F.grouped_mm(a, w[e0:e1], offs=offs)


def _block_wgrad(a: torch.Tensor, b: torch.Tensor, e0: int, e1: int,
                 offs: torch.Tensor | None, out: torch.Tensor) -> None:
    """``out[e] = a_e^T b_e`` for each expert's rows (a: [n, M], b: [n, N])."""
    if e1 - e0 == 1:
        if out.dtype == a.dtype:
            torch.mm(a.t(), b, out=out[e0])
        else:
            out[e0].copy_(a.t() @ b)
    else:
        out[e0:e1].copy_(F.grouped_mm(a.t(), b, offs=offs))


class _DroplessExperts(torch.autograd.Function):
    """``out[t] = sum_j weights[t, j] * SwiGLU_{idx[t, j]}(x[t])`` (see module docstring)."""

    @staticmethod
    def forward(ctx, x, weights, idx, w1, v1, w2, n_experts, row_budget, compute_dtype):
        n_tokens, hidden = x.shape
        top_k = idx.shape[1]
        ffn = w1.shape[0] // n_experts
        cd = compute_dtype
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)  # (token, slot) pairs sorted by expert
        counts = torch.bincount(flat, minlength=n_experts)
        src = order // top_k  # token of each sorted row
        ws = weights.reshape(-1).index_select(0, order).unsqueeze(1)  # [N, 1] fp32
        xs = x.to(cd).index_select(0, src)
        w1t, v1t = (w.to(cd).view(n_experts, ffn, hidden).transpose(1, 2) for w in (w1, v1))
        w2e = w2.to(cd).view(n_experts, ffn, hidden)
        if row_budget is None:  # one block: no host sync (GPU)
            blocks = [(0, n_experts, 0, xs.shape[0])]
        else:
            blocks = _plan_blocks(counts.tolist(), row_budget)
        yw = torch.empty(xs.shape[0], hidden, dtype=x.dtype, device=x.device)
        saved = []
        for e0, e1, r0, r1 in blocks:
            if r0 == r1:
                saved.append(None)
                continue
            offs = None if e1 - e0 == 1 else torch.cumsum(counts[e0:e1], 0, dtype=torch.int32)
            xb = xs[r0:r1]
            g = _block_mm(xb, w1t, e0, e1, offs)
            u = _block_mm(xb, v1t, e0, e1, offs)
            y = _block_mm(F.silu(g).mul_(u), w2e, e0, e1, offs)
            torch.mul(y, ws[r0:r1], out=yw[r0:r1])
            saved.append((offs, g, u, y))
        out = torch.zeros(n_tokens, hidden, dtype=x.dtype, device=x.device)
        out.index_add_(0, src, yw)
        ctx.save_for_backward(xs, ws, order, src, w1, v1, w2)
        ctx.blocks, ctx.saved_blocks, ctx.cd = blocks, saved, cd
        ctx.dims = (n_tokens, top_k, hidden, ffn, n_experts, x.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        xs, ws, order, src, w1, v1, w2 = ctx.saved_tensors
        n_tokens, top_k, hidden, ffn, n_experts, x_dtype = ctx.dims
        cd = ctx.cd
        w1e, v1e = (w.to(cd).view(n_experts, ffn, hidden) for w in (w1, v1))
        w2t = w2.to(cd).view(n_experts, ffn, hidden).transpose(1, 2)
        grads = [torch.empty_like(w) for w in (w1, v1, w2)]
        dw1, dv1, dw2 = (g.view(n_experts, ffn, hidden) for g in grads)
        gd = dout.contiguous().index_select(0, src)  # [N, H] output grad of each row
        dws = torch.empty(gd.shape[0], dtype=ws.dtype, device=gd.device)
        dxs = torch.empty(gd.shape[0], hidden, dtype=x_dtype, device=gd.device)
        for (e0, e1, r0, r1), blk in zip(ctx.blocks, ctx.saved_blocks, strict=True):
            if blk is None:
                for g in (dw1, dv1, dw2):
                    g[e0:e1].zero_()
                continue
            offs, g, u, y = blk
            gb = gd[r0:r1]
            torch.sum(y * gb, dim=1, out=dws[r0:r1])
            gw = (gb * ws[r0:r1]).to(cd)
            s = F.silu(g)
            dh = _block_mm(gw, w2t, e0, e1, offs)
            _block_wgrad(s * u, gw, e0, e1, offs, dw2)  # h = silu(g) * u, recomputed
            du = s.mul_(dh)
            dg = torch.ops.aten.silu_backward(dh.mul_(u), g)
            xb = xs[r0:r1]
            _block_wgrad(dg, xb, e0, e1, offs, dw1)
            _block_wgrad(du, xb, e0, e1, offs, dv1)
            if e1 - e0 == 1 and cd == x_dtype:
                torch.mm(dg, w1e[e0], out=dxs[r0:r1]).addmm_(du, v1e[e0])
            else:
                dxs[r0:r1] = _block_mm(dg, w1e, e0, e1, offs).add_(
                    _block_mm(du, v1e, e0, e1, offs))
        dx = torch.zeros(n_tokens, hidden, dtype=x_dtype, device=dxs.device)
        dx.index_add_(0, src, dxs)
        dweights = torch.empty_like(dws).index_copy_(0, order, dws).view(n_tokens, top_k)
        ctx.saved_blocks = None
        return dx, dweights, None, *grads, None, None, None


def dropless_experts(x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor,
                     w1: torch.Tensor, v1: torch.Tensor, w2: torch.Tensor, n_experts: int,
                     block_bytes: int | None = BLOCK_BYTES) -> torch.Tensor:
    """The fused dropless MoE: ``x`` [T, H], routing ``weights``/``idx`` [T, k] -> [T, H].

    Under autocast the expert matmuls run in the autocast dtype (as nn.Linear would),
    the combine in ``x``'s dtype. On a CPU, experts run in blocks of consecutive experts
    whose [rows, F] intermediates fit in ``block_bytes`` (a host sync, free on a CPU);
    ``block_bytes=None``, or a GPU, runs all experts as one block with no host sync.
    """
    dev = x.device.type
    cd = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    ffn, hidden = w1.shape[0] // n_experts, x.shape[-1]
    grouped_ok = _grouped_mm_ok(x.new_empty(0, dtype=cd), hidden, ffn)
    if grouped_ok and (block_bytes is None or x.device.type != "cpu"):
        row_budget = None  # one block: no host sync (and no cache to fit on a GPU)
    else:  # without grouped_mm every block is a single expert
        row_budget = block_bytes // (ffn * cd.itemsize) if grouped_ok and block_bytes else 0
    with torch.autocast(dev, enabled=False):
        return _DroplessExperts.apply(x, weights, idx, w1, v1, w2, n_experts, row_budget, cd)


class TorchMoE(nn.Module):
    """Dropless MoE in plain PyTorch; same parameters and math as MegaBlocks' dMoE.

    ``impl``: ``fused`` (default; one autograd Function, see ``dropless_experts``),
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
