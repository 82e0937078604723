"""Auxiliary losses against values computed by hand (Megatron convention)."""

import math

import pytest
import torch

from optimal_sparsity.model import build_model
from optimal_sparsity.model.losses import load_balancing_loss, router_z_loss

LN3 = math.log(3.0)


def test_balanced_router_gives_one():
    # p = [.75, .25] and [.25, .75]; top-1 sends one token to each expert.
    logits = torch.tensor([[LN3, 0.0], [0.0, LN3]])
    idx = torch.tensor([[0], [1]])
    # E/(k T^2) * sum_e (sum_t p_te) c_e = 2/(1*4) * (1*1 + 1*1) = 1
    assert load_balancing_loss(logits, idx, 2).item() == pytest.approx(1.0)


def test_collapsed_router():
    logits = torch.tensor([[LN3, 0.0], [LN3, 0.0]])
    idx = torch.tensor([[0], [0]])
    # sum_t p = [1.5, 0.5], c = [2, 0]: 2/4 * 3 = 1.5
    assert load_balancing_loss(logits, idx, 2).item() == pytest.approx(1.5)


def test_top2_of_three():
    logits = torch.zeros(1, 3)
    idx = torch.tensor([[0, 1]])
    # p = 1/3 each, c = [1, 1, 0]: 3/(2*1) * (1/3 + 1/3) = 1
    assert load_balancing_loss(logits, idx, 3).item() == pytest.approx(1.0)


def test_z_loss():
    logits = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    # logsumexp = ln 4 and ln 2: mean of squares
    want = (math.log(4) ** 2 + math.log(2) ** 2) / 2
    assert router_z_loss(logits).item() == pytest.approx(want)


def test_model_loss_sums_aux_over_layers(tiny_cfg):
    cfg = tiny_cfg.replace(n_layers=3)
    model = build_model(cfg, seed=0)
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    labels = torch.roll(ids, -1, 1)
    out = model(ids, labels=labels)
    lb = sum(load_balancing_loss(r.logits, r.top_idx, cfg.n_experts) for r in out.routing)
    z = sum(router_z_loss(r.logits) for r in out.routing)
    assert len(out.routing) == 3
    torch.testing.assert_close(out.lb_loss, lb)
    torch.testing.assert_close(out.z_loss, z)
    torch.testing.assert_close(out.loss, out.ce_loss + 1e-2 * lb + 1e-3 * z)
    # near-uniform router at init: LB is about 1 per layer
    assert out.lb_loss.item() == pytest.approx(3.0, rel=0.1)
