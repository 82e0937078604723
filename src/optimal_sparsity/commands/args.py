"""Argument types the subcommands share: each parses one command-line string or raises
``argparse.ArgumentTypeError`` (which the parser prints as one line)."""

from __future__ import annotations

import argparse
import os


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text})")
    return v


INT_MAX = 2**63 - 1  # no count, step or seed the project takes is larger


def bounded_int(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high] (``high`` at most ``INT_MAX``)."""
    high = INT_MAX if high is None else min(high, INT_MAX)

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < low or v > high:
            bound = f"in [{low}, {high}]" if high < INT_MAX else f">= {low} and < 2^63"
            raise argparse.ArgumentTypeError(f"must be {bound} (got {text})")
        return v
    return parse


positive_int = bounded_int(1)
# numpy's seeds are 32-bit; torch, Python and the corpus generator take any of these
seed_int = bounded_int(0, 2**32 - 1)


def thread_count(text: str) -> int:
    """Torch threads: 0 (all cores) up to the number of cores."""
    return bounded_int(0, os.cpu_count() or 1)(text)


def device_arg(text: str) -> str:
    """A torch device string that exists on this machine (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a device: {text!r} (cpu or cuda)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: this machine has no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: this machine has no MPS device")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r} (cpu or cuda)")
    return text


def grpo_override(text: str):
    """``--grpo FIELD=VALUE``: one change to the authors' GRPO settings."""
    from optimal_sparsity.errors import UserError
    from optimal_sparsity.eval.grpo import parse_override

    try:
        return parse_override(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
