"""Learning-rate schedule: linear warm-up, then cosine decay to min_lr_ratio x peak."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    low = peak * min_ratio
    return low + 0.5 * (peak - low) * (1.0 + math.cos(math.pi * progress))
