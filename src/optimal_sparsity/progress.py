"""Progress of a long step: items done of total, rate and ETA.

On a terminal it is a tqdm bar. Anywhere else (a log file, a batch job, a pipe) it is one
plain line every ``interval`` seconds, and a last one at the end of a step that took
longer than that::

    s-d64-E8-k1 train: 120/1465 steps (8%), 3.21 steps/s, elapsed 0:37, ETA 6:58,
        loss 2.345, 24.3k tok/s, 48.1G FLOP/s   (one line; wrapped here)

The interval defaults to ``OPTIMAL_SPARSITY_PROGRESS_S`` seconds (30). ``rates`` turn the
item rate into derived rates over the same window (e.g. tokens per step -> tokens/s).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

DEFAULT_INTERVAL_S = 30.0


def interval_s() -> float:
    try:
        return max(0.0, float(os.environ.get("OPTIMAL_SPARSITY_PROGRESS_S", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def duration(seconds: float) -> str:
    """``0:37``, ``6:58``, ``1:02:03``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def si(value: float) -> str:
    """``24.3k``, ``48.1G``."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


class Progress:
    """``update()`` after each item (or ``update(n)``), ``close()`` at the end.

    ``mode``: None picks a bar on a terminal and log lines elsewhere; "bar", "lines" or
    "off" force one. Lines go to ``log`` when given, else to ``stream`` (stderr).
    """

    def __init__(self, total: int, desc: str, unit: str = "items", *, initial: int = 0,
                 mode: str | None = None, stream: TextIO | None = None,
                 log: Callable[[str], None] | None = None, interval: float | None = None,
                 rates: dict[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = initial
        self.stream = stream or sys.stderr
        if mode is None:
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode = mode
        self.log = log
        self.interval = interval_s() if interval is None else interval
        self.rates = rates or {}
        self.clock = clock
        self.fields: dict[str, Any] = {}
        self._t0 = self._last_t = clock()
        self._start = self._last_n = initial
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit.rstrip("s"),
                             file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update(fields)
        if self._bar is not None:
            if fields or self.rates:
                elapsed = self.clock() - self._t0
                rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
                self._bar.set_postfix({**self.fields, **{
                    name: si(rate * factor) for name, factor in self.rates.items()}},
                    refresh=False)
            self._bar.update(n)
        elif self.mode == "lines" and self.clock() - self._last_t >= self.interval:
            self._emit()

    def line(self) -> str:
        now = self.clock()
        elapsed = now - self._t0
        rate = (self.done - self._start) / elapsed if elapsed > 0 else float("nan")
        window = now - self._last_t
        wrate = (self.done - self._last_n) / window if window > 0 else rate
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit}{pct}",
                 f"{rate:.3g} {self.unit}/s", f"elapsed {duration(elapsed)}",
                 f"ETA {duration(eta)}"]
        parts += [f"{k} {v}" for k, v in self.fields.items()]
        parts += [f"{si(wrate * factor)} {name}" for name, factor in self.rates.items()]
        return ", ".join(parts)

    def _emit(self) -> None:
        text = self.line()
        self._last_t, self._last_n = self.clock(), self.done
        if self.log is not None:
            self.log(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif (self.mode == "lines" and self.done != self._last_n
              and (self._last_t > self._t0 or self.clock() - self._t0 >= self.interval)):
            self._emit()  # the last line of a step that logged before (or took as long)
        self.mode = "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
