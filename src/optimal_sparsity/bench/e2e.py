"""The end-to-end row: ``./reproduce --scale SCALE`` from an empty cache, in a fresh
process, timed once. Its cache and results go to a temporary directory (removed after),
so the checkout's own runs are neither reused nor touched.

Peak memory is the high-water resident set of the largest process it ran
(``RUSAGE_CHILDREN``'s ``ru_maxrss``: the run and the evaluation workers it starts), read
by a small wrapper process so that earlier children of the benchmark do not count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optimal_sparsity.bench.cases import EndToEndCase, case_to_dict


def reproduce_argv(case: EndToEndCase, results: Path) -> list[str]:
    return [sys.executable, "-m", "optimal_sparsity.cli", "--scale", case.scale,
            "--results", str(results)]


# Runs argv[2:], then writes its exit status and its children's resource use to argv[1].
_WRAPPER = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "cpu_s": r.ru_utime + r.ru_stime, "maxrss_kib": r.ru_maxrss}, f)
"""


def run_e2e(case: EndToEndCase, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``argv`` (default: the reproduction) and measure it; raise if it fails."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        cmd = list(argv) if argv is not None else reproduce_argv(case, Path(tmp) / "results")
        env = {**os.environ, "OPTIMAL_SPARSITY_HOME": str(Path(tmp) / "home")}
        usage = Path(tmp) / "usage.json"
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _WRAPPER, str(usage), *cmd], env=env,
                             stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        used = json.loads(usage.read_text()) if usage.is_file() else {"code": res.returncode}
    if res.returncode != 0 or used["code"] != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{case.name} failed (exit {used['code']}):\n{tail}")
    peer = {"median_s": wall, "min_s": wall, "max_s": wall, "cpu_s": used["cpu_s"],
            "peak_rss_mib": used["maxrss_kib"] / 1024}  # Linux reports KiB
    return {"kind": case.kind, "name": case.name, "case": case_to_dict(case),
            "flops_per_call": 0.0, "tokens_per_call": 0, "repeats": 1, "other_load": None,
            "check": f"exit status 0; command: {' '.join(cmd[1:])}", "peak_gflops": {},
            "peers": {"reproduce": peer}}
