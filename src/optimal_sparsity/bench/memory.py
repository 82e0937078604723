"""Peak memory of one peer, measured in a fresh process (torch's CPU allocator has no
peak counter, and freed memory stays in a process, so peers must not share one).

The worker builds the case with only that peer, runs one warm-up call (AdamW allocates
its state on the first step), resets the kernel's high-water mark (Linux
``/proc/self/clear_refs``), runs one more call and reports how far the resident set
rose above where it stood before that call: the activations, gradients and temporaries
of a call, on top of the resident weights, optimizer state and inputs
(``resident_mib``, measured from the bare interpreter after imports). On CUDA it reads
``torch.cuda.max_memory_allocated`` instead.

The worker runs with glibc's mmap threshold pinned at 64 KiB (``MALLOC_MMAP_THRESHOLD_``):
freed tensors then go back to the kernel at once, so the resident set follows the live
tensors. (With glibc's default adaptive threshold the warm-up call's freed memory is
reused without showing in the high-water mark, and peaks read near zero.)

    python -m optimal_sparsity.bench.memory '<case json>' PEER [DEVICE]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

_STATUS = "/proc/self/status"


def _status_kib(key: str) -> int:
    with open(_STATUS) as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    if m is None:
        raise OSError(f"{key} not in {_STATUS}")
    return int(m.group(1))


def measure(case_json: str, peer: str, device: str = "cpu") -> dict[str, float]:
    import torch
    import transformers.models.mixtral.modeling_mixtral  # noqa: F401  (imports out of the way)

    import optimal_sparsity.model  # noqa: F401
    from optimal_sparsity.bench.builders import build
    from optimal_sparsity.bench.cases import case_from_dict

    dev = torch.device(device)
    start = _status_kib("VmRSS")
    built = build(case_from_dict(json.loads(case_json)), dev, only=peer)
    call = built.peers[peer]
    call()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        call()
        torch.cuda.synchronize(dev)
        return {"peak_mib": (torch.cuda.max_memory_allocated(dev) - base) / 2**20,
                "resident_mib": base / 2**20}
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    call()
    return {"peak_mib": (_status_kib("VmHWM") - before) / 1024,
            "resident_mib": (before - start) / 1024}


def measure_in_subprocess(case_json: str, peer: str, device: str = "cpu",
                          threads: int | None = None) -> dict[str, float] | None:
    """``measure`` in a fresh interpreter; None (with a note on stderr) if it fails."""
    cmd = [sys.executable, "-m", "optimal_sparsity.bench.memory", case_json, peer, device]
    if threads:
        cmd.append(str(threads))
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"bench: memory of {peer} not measured: {tail}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    case_json, peer = argv[0], argv[1]
    device = argv[2] if len(argv) > 2 else "cpu"
    if len(argv) > 3:
        import torch

        torch.set_num_threads(int(argv[3]))
    print(json.dumps(measure(case_json, peer, device)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
