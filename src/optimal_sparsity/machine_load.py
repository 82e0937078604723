"""How busy the machine is: the share of its CPU time other processes take (Linux
``/proc``). The benchmark rows and the design probes record it beside every timing."""

from __future__ import annotations


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def _own_jiffies(children: bool = False) -> int | None:
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    own = int(fields[11]) + int(fields[12])  # utime + stime, all threads
    # cutime + cstime: children that ended and were waited for
    return own + int(fields[13]) + int(fields[14]) if children else own


class OtherLoad:
    """Share of the machine's CPU time used by *other* processes during a block.

    ``with OtherLoad() as load: ...`` then ``load.fraction`` (0 = machine to ourselves,
    0.5 = others kept one of two cores busy). None where /proc is unavailable. Child
    processes we start count as others, unless ``children``: then the time of those that
    ended (and were waited for) inside the block is ours.
    """

    def __init__(self, children: bool = False) -> None:
        self.children = children

    def __enter__(self) -> OtherLoad:
        self._m0, self._s0 = _cpu_jiffies(), _own_jiffies(self.children)
        self.fraction: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        m1, s1 = _cpu_jiffies(), _own_jiffies(self.children)
        if None in (self._m0, self._s0, m1, s1):
            return
        busy = m1[0] - self._m0[0]
        total = m1[1] - self._m0[1]
        if total > 0:
            self.fraction = max(0.0, (busy - (s1 - self._s0)) / total)
