"""Provenance recorded with every result: versions, commit, hardware, time."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from importlib import metadata

from optimal_sparsity.paths import REPO

PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "huggingface-hub",
            "lm_eval", "trl", "datasets", "numpy", "megablocks", "vllm")


@functools.cache
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


@functools.cache
def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        return (sha + ("-dirty" if dirty.strip() else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def provenance() -> dict[str, object]:
    return {"versions": versions(), "commit": git_commit(), "hardware": hardware(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
