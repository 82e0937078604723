"""The torch MoE backend against a per-token reference, and its dropless dispatch."""

import pytest
import torch
import torch.nn.functional as F

from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.model import build_model
from optimal_sparsity.model.megablocks_moe import megablocks_unavailable_reason
from optimal_sparsity.model.moe import TorchMoE, init_moe_


def reference_moe(moe: TorchMoE, x: torch.Tensor) -> torch.Tensor:
    """Token by token: softmax over all E, top-k, renormalise, weighted SwiGLU experts."""
    e_count, k = moe.n_experts, moe.top_k
    w1, v1, w2 = (w.view(e_count, -1, x.shape[-1]) for w in (moe.experts.mlp.w1,
                                                              moe.experts.mlp.v1,
                                                              moe.experts.mlp.w2))
    out = []
    for tok in x:
        p = torch.softmax(moe.router.layer.weight @ tok, dim=-1)
        top = torch.topk(p, k)
        weights = top.values / top.values.sum()
        y = sum(wt * ((F.silu(w1[e] @ tok) * (v1[e] @ tok)) @ w2[e])
                for wt, e in zip(weights, top.indices.tolist(), strict=True))
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize(("e_count", "k"), [(4, 1), (4, 2), (8, 2), (8, 8), (16, 4)])
@pytest.mark.parametrize("impl", ["fused", "grouped", "loop"])
def test_matches_per_token_reference(e_count, k, impl):
    torch.manual_seed(0)
    cfg = scaled_config(32, e_count, k, n_layers=1)
    moe = TorchMoE(cfg, impl=impl)
    init_moe_(moe, cfg)
    with torch.no_grad():
        moe.router.layer.weight.normal_(std=1.0)  # confident routing, no near-ties
    x = torch.randn(2, 11, 32)
    y, routing = moe(x)
    ref = reference_moe(moe, x.view(-1, 32)).view_as(y)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-5)
    assert routing.top_idx.shape == (22, k)


def test_grouped_and_loop_agree_on_gradients():
    torch.manual_seed(1)
    cfg = scaled_config(32, 8, 2, n_layers=1)
    a = TorchMoE(cfg, impl="grouped")
    init_moe_(a, cfg)
    b = TorchMoE(cfg, impl="loop")
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(3, 9, 32)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a(xa)[0].sum().backward()  # .sum() gives an expanded gradient: must still work
    b(xb)[0].sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-6, rtol=1e-5)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_dropless_every_token_reaches_k_experts():
    torch.manual_seed(2)
    cfg = scaled_config(32, 8, 2, n_layers=1)
    moe = TorchMoE(cfg)
    init_moe_(moe, cfg)
    with torch.no_grad():  # route almost everything to expert 0 and 1: no capacity limit
        moe.router.layer.weight.zero_()
        moe.router.layer.weight[0] = 5.0
        moe.router.layer.weight[1] = 4.0
    x = torch.rand(64, 32) + 0.1
    y, routing = moe(x)
    counts = torch.bincount(routing.top_idx.reshape(-1), minlength=8)
    assert counts[0] == 64 and counts[1] == 64 and counts.sum() == 128
    torch.testing.assert_close(y, reference_moe(moe, x), atol=1e-6, rtol=1e-5)


def test_parameter_layout_is_megablocks():
    cfg = scaled_config(32, 4, 2, n_layers=1)
    shapes = {n: tuple(p.shape) for n, p in TorchMoE(cfg).named_parameters()}
    assert shapes == {"router.layer.weight": (4, 32), "experts.mlp.w1": (4 * 64, 32),
                      "experts.mlp.v1": (4 * 64, 32), "experts.mlp.w2": (4 * 64, 32)}


def test_same_seed_same_model_and_bitwise_forward(tiny_cfg):
    a, b = build_model(tiny_cfg, seed=3), build_model(tiny_cfg, seed=3)
    ids = torch.randint(0, tiny_cfg.vocab_size, (2, 20))
    assert torch.equal(a(ids).logits, b(ids).logits)


def test_megablocks_backend_refuses_clearly_without_gpu(tiny_cfg):
    reason = megablocks_unavailable_reason()
    if reason is None:
        pytest.skip("MegaBlocks can run here; covered by test_megablocks_parity")
    with pytest.raises(UserError, match="megablocks backend cannot run: ") as err:
        build_model(tiny_cfg.replace(backend="megablocks"))
    assert "\n" not in str(err.value)


@pytest.mark.gpu
@pytest.mark.skipif(megablocks_unavailable_reason() is not None,
                    reason=f"MegaBlocks parity needs its GPU: {megablocks_unavailable_reason()}")
def test_megablocks_parity():
    """dMoE and TorchMoE on the same weights: same outputs, input and weight gradients, and
    state dicts both ways (fp32, max abs difference <= 1e-4), as `./reproduce gpu-check` runs it."""
    from optimal_sparsity.gpu_check import megablocks_parity

    res = megablocks_parity(d=128, cases=((8, 2), (16, 4), (8, 8)), tol=1e-4)
    assert res["passed"], res


@pytest.mark.parametrize("block_bytes", [None, 0, 4096, 1 << 20])
@pytest.mark.parametrize(("d", "e_count", "k"), [(32, 8, 2), (64, 16, 4), (32, 64, 2), (96, 4, 4)])
def test_fused_matches_loop_outputs_and_all_gradients(d, e_count, k, block_bytes):
    """The fused Function (any cache blocking) against plain autograd: outputs, input,
    expert and router gradients (the router's flow through the routing weights)."""
    torch.manual_seed(4)
    cfg = scaled_config(d, e_count, k, n_layers=1)
    ref = TorchMoE(cfg, impl="loop")
    init_moe_(ref, cfg)
    with torch.no_grad():
        ref.router.layer.weight.normal_(std=0.5)
    fused = TorchMoE(cfg, impl="fused", block_bytes=block_bytes)
    fused.load_state_dict(ref.state_dict(), strict=True)
    x, g = torch.randn(2, 37, d), torch.randn(2, 37, d)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, ra = ref(xa)
    yb, rb = fused(xb)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.equal(ra.top_idx, rb.top_idx)
    torch.testing.assert_close(yb, ya, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-6, rtol=1e-5)
    for (n, pa), pb in zip(ref.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_fused_is_bitwise_deterministic_under_deterministic_algorithms():
    cfg = scaled_config(64, 8, 2, n_layers=1)
    x = torch.randn(4, 64, 64)
    grads = []
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # raises on any nondeterministic op
    try:
        for _ in range(2):
            torch.manual_seed(5)
            moe = TorchMoE(cfg)
            init_moe_(moe, cfg)
            xi = x.clone().requires_grad_()
            moe(xi)[0].square().sum().backward()
            grads.append([xi.grad, *(p.grad for p in moe.parameters())])
    finally:
        torch.use_deterministic_algorithms(prev)
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_fused_under_bf16_autocast_runs_experts_in_bf16():
    torch.manual_seed(6)
    cfg = scaled_config(64, 8, 2, n_layers=1)
    ref = TorchMoE(cfg, impl="loop")
    init_moe_(ref, cfg)
    fused = TorchMoE(cfg)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(3, 40, 64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        ya, _ = ref(xa)
        yb, _ = fused(xb)
    assert yb.dtype == torch.float32  # the combine stays in the input's dtype
    ya.float().sum().backward()
    yb.sum().backward()
    scale = ya.float().abs().max()
    assert (yb - ya.float()).abs().max() <= 2e-2 * scale  # bf16 rounding, not a bug
    assert fused.experts.mlp.w1.grad.dtype == torch.float32
    torch.testing.assert_close(fused.experts.mlp.w1.grad, ref.experts.mlp.w1.grad,
                               atol=2e-2 * ref.experts.mlp.w1.grad.abs().max().item(), rtol=0)


@pytest.mark.parametrize(("e_count", "k"), [(2, 2), (16, 2), (4, 4), (16, 4)])
def test_cache_blocking_changes_no_bit(e_count, k):
    """The fused path's blocks (the default BLOCK_BYTES, 2 MiB, one block per expert)
    give bitwise the same outputs and gradients at the study's d = 64 shapes, so the
    block size is a speed setting only."""
    from optimal_sparsity.model.fused_moe import BLOCK_BYTES

    cfg = scaled_config(64, e_count, k, n_layers=1)
    x, g = torch.randn(16, 128, 64), torch.randn(16, 128, 64)
    results = []
    for block_bytes in (BLOCK_BYTES, 2 << 20, 0):
        torch.manual_seed(6)
        moe = TorchMoE(cfg, block_bytes=block_bytes)
        init_moe_(moe, cfg)
        xi = x.clone().requires_grad_()
        y, _ = moe(xi)
        (y * g).sum().backward()
        results.append([y, xi.grad, *(p.grad for p in moe.parameters())])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))
