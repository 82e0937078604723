"""The fused dropless MoE experts: dispatch, SwiGLU experts and combine as one autograd
Function (``dropless_experts``), the default path of ``moe.TorchMoE``.

Same math as ``moe.py``'s readable composition (route, sort the (token, slot) pairs by
expert, each expert's ``(silu(x W1_e^T) * (x V1_e^T)) W2_e``, weighted sum of each token's k
outputs), with the forward and backward written out by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grouped_mm_ok(x: torch.Tensor, *dims: int) -> bool:
    # torch's grouped_mm needs 16-byte aligned strides (fp32: dims % 4, bf16: dims % 8).
    align = 16 // x.element_size()
    return hasattr(F, "grouped_mm") and all(d % align == 0 for d in dims)


# One autograd Function for dispatch, experts and combine. Against the autograd
# composition of ``moe.expert_swiglu`` (measured in BENCHMARKS.md): gathers use index_select and the
# combines index_add_ (both deterministic on CPU; no index_put/scatter with duplicates),
# each block of experts runs its elementwise work right after its matmuls while the
# rows are still in cache, the backward recomputes silu(g) * u instead of storing it,
# writes weight gradients straight into their buffers, and accumulates the input
# gradient of gate and up projections in place (addmm_).

# Bytes of one [rows, F] intermediate of a block: a block's gate, up and hidden rows then
# stay in a core's L2. 256 KiB measured fastest of 128 KiB-4 MiB at every d = 64 study
# point (4-9% over 2 MiB on an EPYC with 1 MiB of L2 per core; BENCHMARKS.md). Blocking
# changes which matmuls run, not their results: each expert's rows are multiplied alone
# either way (bitwise equal, tests/test_moe.py).
BLOCK_BYTES = 256 << 10


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
    grouped_ok = grouped_mm_ok(x.new_empty(0, dtype=cd), hidden, ffn)
    if grouped_ok and (block_bytes is None or x.device.type != "cpu"):
        row_budget = None  # one block: no host sync (and no cache to fit on a GPU)
    else:  # without grouped_mm every block is a single expert
        row_budget = block_bytes // (ffn * cd.itemsize) if grouped_ok and block_bytes else 0
    with torch.autocast(dev, enabled=False):
        return _DroplessExperts.apply(x, weights, idx, w1, v1, w2, n_experts, row_budget, cd)
