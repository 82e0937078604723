"""Does the language-model loss train the router? One CE backward, measured.

Mixtral renormalises the top-k routing weights to sum to 1. At k = 1 the single weight is
p/p = 1 whatever the router says, so the cross-entropy sends the router no gradient (only
the load-balancing and z losses train it); at k >= 2 the weights' ratios carry it. The
paper's grid is k in {2, 4, 8, 16}, so every MoE point of a study must pass this check.
"""

from __future__ import annotations

import torch

from optimal_sparsity.config import ModelConfig

# A router gradient below this fraction of the experts' is "none": relative to the expert
# weights' gradient, k = 1 measures 3e-9 to 2e-8 (float32 round-off of d(p/p)/dp), k >= 2
# about 1e-1 (d = 32-64, E = 4-16, 2 layers).
MIN_RELATIVE_ROUTER_GRAD = 1e-6


def router_gradient_ratio(cfg: ModelConfig, *, seed: int = 0, batch: int = 2,
                          seq_len: int = 32) -> float:
    """max |dCE/d router weight| / max |dCE/d expert weights| after one cross-entropy
    backward (no auxiliary losses) of a freshly initialised ``cfg`` on random tokens."""
    from optimal_sparsity.model.transformer import build_model

    model = build_model(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    seq_len = min(seq_len, cfg.max_seq_len)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), generator=gen)
    out = model(ids[:, :-1], labels=ids[:, 1:], return_logits=False)
    out.ce_loss.backward()
    router = expert = 0.0
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = float(p.grad.abs().max())
        if ".router." in name:
            router = max(router, g)
        elif ".experts." in name:
            expert = max(expert, g)
    return router / expert if expert > 0 else 0.0


def router_learns(cfg: ModelConfig, **kw) -> bool:
    """Whether the LM loss gives ``cfg``'s router a non-negligible gradient (E > 1)."""
    return router_gradient_ratio(cfg, **kw) > MIN_RELATIVE_ROUTER_GRAD
