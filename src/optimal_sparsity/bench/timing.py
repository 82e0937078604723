"""Side-by-side timing on a noisy machine, and how busy the machine was meanwhile.

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


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def _own_jiffies() -> int | None:
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


class OtherLoad:
    """Share of the machine's CPU time used by *other* processes during a block.

    ``with OtherLoad() as load: ...`` then ``load.fraction`` (0 = machine to ourselves,
    0.5 = others kept one of two cores busy). None where /proc is unavailable. Child
    processes we start count as others.
    """

    def __enter__(self) -> OtherLoad:
        self._m0, self._s0 = _cpu_jiffies(), _own_jiffies()
        self.fraction: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        m1, s1 = _cpu_jiffies(), _own_jiffies()
        if None in (self._m0, self._s0, m1, s1):
            return
        busy = m1[0] - self._m0[0]
        total = m1[1] - self._m0[1]
        if total > 0:
            self.fraction = max(0.0, (busy - (s1 - self._s0)) / total)


def omp_wait_policy() -> str:
    return os.environ.get("OMP_WAIT_POLICY", "default")
