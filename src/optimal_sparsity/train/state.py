"""Training checkpoints: model + optimizer + RNG + data position + configs + metrics offset.

``<run>/checkpoints/step-NNNNNNN/`` is an ordinary model checkpoint (see
``optimal_sparsity.checkpoint``) with two extra files: ``optimizer.safetensors``
(AdamW moments and RNG state) and ``train_state.json``. Only complete, verified
directories are ever resumed from; incomplete or corrupt ones are skipped with a
warning.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimal_sparsity.atomic import is_temporary
from optimal_sparsity.checkpoint import load_tensors, verify_checkpoint
from optimal_sparsity.errors import IntegrityError, UserError

STEP_DIR = re.compile(r"^step-(\d{7})$")
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "train_state.json"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}"


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v)
               for i, st in sd["state"].items() for k, v in st.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    return tensors, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                      param_groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name.startswith("state."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = t
    opt.load_state_dict({"state": state, "param_groups": param_groups})
    torch.set_rng_state(tensors["rng.torch"])


def rng_json() -> dict[str, Any]:
    py = random.getstate()
    npst = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]}


def restore_rng_json(d: dict[str, Any]) -> None:
    v, st, g = d["python"]
    random.setstate((v, tuple(st), g))
    n = d["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


@dataclass
class ResumePoint:
    path: Path
    step: int
    state: dict[str, Any]


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir() and not is_temporary(p):
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_resume_point(root: Path) -> ResumePoint | None:
    """The newest complete, verified checkpoint under ``root`` (others are skipped)."""
    for step, path in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(path)
            state = json.loads((path / STATE_FILE).read_text())
        except (IntegrityError, UserError, OSError, json.JSONDecodeError) as err:
            print(f"warning: skipping checkpoint {path}: {err}", file=sys.stderr)
            continue
        if state.get("step") != step:
            print(f"warning: skipping checkpoint {path}: step mismatch", file=sys.stderr)
            continue
        return ResumePoint(path, step, state)
    return None


def load_optimizer_file(path: Path) -> dict[str, torch.Tensor]:
    return load_tensors(path / OPTIMIZER_FILE)


def remove_checkpoint(path: Path) -> None:
    """Rename out of the checkpoint namespace first, so a crash mid-delete leaves no
    half-deleted ``step-*`` directory behind."""
    doomed = path.with_name(f".tmp-delete-{path.name}.{os.getpid()}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
