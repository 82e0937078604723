"""Router auxiliary losses, in the convention of the authors' Megatron-Core trainer.

For one MoE layer with router logits z (T tokens x E experts), softmax probabilities
p = softmax(z) over all E experts, and top-k assignments:

  load balancing   LB = E / (k T^2) * sum_e (sum_t p_te) * c_e
                      = E * sum_e f_e P_e,   f_e = c_e / (k T), P_e = mean_t p_te
  router z-loss    Z  = mean_t (logsumexp_e z_te)^2

where c_e counts the (token, slot) assignments routed to expert e (sum_e c_e = kT).
LB is 1 for a perfectly balanced router and E for a collapsed one.

The training loss is   CE + alpha * sum_layers LB + beta * sum_layers Z
with alpha = 1e-2, beta = 1e-3 (docs/paper.md). Megatron adds each layer's term to the
loss, i.e. the aux losses are *summed over layers*. (MegaBlocks averages LB over
layers; HF Mixtral pools tokens of all layers into one LB. This artifact uses the
Megatron convention in both of its backends.)
"""

from __future__ import annotations

import torch


def load_balancing_loss(logits: torch.Tensor, top_idx: torch.Tensor, n_experts: int
                        ) -> torch.Tensor:
    """LB for one layer: ``logits`` [T, E], ``top_idx`` [T, k] -> scalar (fp32)."""
    n_tokens, top_k = top_idx.shape
    probs = torch.softmax(logits.float(), dim=-1)
    counts = torch.bincount(top_idx.reshape(-1), minlength=n_experts).to(probs.dtype)
    return (probs.sum(0) * counts).sum() * (n_experts / (top_k * n_tokens * n_tokens))


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Z for one layer: ``logits`` [T, E] -> scalar (fp32)."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()
