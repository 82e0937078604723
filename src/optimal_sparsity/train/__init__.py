"""Resumable MoE pre-training (the paper's recipe, scaled down), optionally under torchrun."""
