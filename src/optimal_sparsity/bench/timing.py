"""Side-by-side timing on a noisy machine (how busy it was meanwhile: ``machine_load``).

Peers of one row run interleaved: every repeat times each peer once, in an order that
rotates from repeat to repeat, so load from other processes falls on all peers alike.
Figures are medians over repeats; compare ratios within a row.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Stats:
    """Wall seconds per call over the timed repeats."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(peers: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, Stats]:
    """Time each peer ``repeats`` times, interleaved; ``warmup`` untimed calls first."""
    device = torch.device(device)
    names = list(peers)
    for name in names:
        for _ in range(warmup):
            peers[name]()
    _sync(device)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            t0 = time.perf_counter()
            peers[name]()
            _sync(device)
            samples[name].append(time.perf_counter() - t0)
    return {n: Stats.of(s) for n, s in samples.items()}


def omp_wait_policy() -> str:
    return os.environ.get("OMP_WAIT_POLICY", "default")
