"""The model's KV cache: cached decoding computes what the full forward pass computes."""

from __future__ import annotations

import pytest
import torch

from optimal_sparsity.model.transformer import KVCache, build_model


def _model(tiny_cfg):
    model = build_model(tiny_cfg, seed=0).eval()
    # Trained-looking routers: random init routes almost uniformly; scale them so that
    # routing (top-k choice) matters and a wrong position or mask would show.
    with torch.no_grad():
        for layer in model.layers:
            layer.moe.router.layer.weight.mul_(30)
    return model


def test_prefill_with_left_padding_equals_forward_per_row(tiny_cfg):
    model = _model(tiny_cfg)
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, tiny_cfg.vocab_size, (n,), generator=g) for n in (9, 5, 1)]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    valid = torch.zeros_like(ids, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], valid[i, width - len(r):] = r, True
    cache = KVCache.empty(tiny_cfg.n_layers, len(rows), ids.device)
    cached = model.forward_cached(ids, valid, cache)
    for i, r in enumerate(rows):
        full = model(r[None]).logits[0]
        torch.testing.assert_close(cached[i, width - len(r):], full, atol=1e-5, rtol=1e-5)
    assert cache.next_pos.tolist() == [9, 5, 1]


@pytest.mark.parametrize("capacity", [None, 12, 6])  # concatenated, preallocated, grown
def test_token_by_token_decoding_equals_forward(tiny_cfg, capacity):
    model = _model(tiny_cfg)
    seq = torch.randint(0, tiny_cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(2))
    full = model(seq).logits
    cache = KVCache.empty(tiny_cfg.n_layers, 2, seq.device, capacity=capacity)
    steps = [model.forward_cached(seq[:, :4], torch.ones(2, 4, dtype=torch.bool), cache)]
    for t in range(4, 12):
        steps.append(model.forward_cached(seq[:, t:t + 1], torch.ones(2, 1, dtype=torch.bool),
                                          cache))
        if t == 7:  # a row leaves the batch mid-way; the other continues unchanged
            cache.select(torch.tensor([0, 1]))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    cache.select(torch.tensor([1]))
    assert cache.layers[0].k.shape[0] == 1 and cache.valid.shape == (1, 12)


def test_greedy_cached_equals_recompute_in_the_lm_eval_adapter(tiny_cfg):
    from optimal_sparsity.eval.lm_adapter import MoELM

    class Tok:  # ids as text, enough for the adapter's stop-string checks
        eos_token_id, bos_token_id = 0, None

        def encode(self, s, **kw):
            return [int(x) for x in s.split()]

        def decode(self, ids, skip_special_tokens=True):
            ids = [ids] if isinstance(ids, int) else ids
            return " ".join(str(i) for i in ids if not (skip_special_tokens and i == 0))

    lm = MoELM(_model(tiny_cfg), Tok(), batch_size=4)
    g = torch.Generator().manual_seed(3)
    contexts = [torch.randint(1, tiny_cfg.vocab_size, (n,), generator=g).tolist()
                for n in (7, 3, 11, 2, 5)]
    for until in ([], ["5"]):
        cached = lm._greedy_cached(contexts, 20, until)
        again = lm._greedy_recompute(contexts, 20, until)
        assert cached == again
        assert any(len(c) == 20 for c in cached) or until


def test_preallocated_cache_decodes_bitwise_like_the_concatenated_one(tiny_cfg):
    """Writing keys in place at the decode's capacity computes exactly what concatenating
    them does (the adapter preallocates; the greedy tokens must not move)."""
    model = _model(tiny_cfg)
    seq = torch.randint(0, tiny_cfg.vocab_size, (3, 10), generator=torch.Generator().manual_seed(3))
    outs = []
    for capacity in (None, 10):
        cache = KVCache.empty(tiny_cfg.n_layers, 3, seq.device, capacity=capacity)
        steps = [model.forward_cached(seq[:, :3], torch.ones(3, 3, dtype=torch.bool), cache)]
        for t in range(3, 10):
            steps.append(model.forward_cached(seq[:, t:t + 1],
                                              torch.ones(3, 1, dtype=torch.bool), cache))
        outs.append(torch.cat(steps, dim=1))
    assert torch.equal(outs[0], outs[1])
