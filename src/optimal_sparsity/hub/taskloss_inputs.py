"""The task-loss inputs ``checkpoints.lock`` pins (its ``taskloss_inputs``).

Four of the authors' task-loss inputs are lm-evaluation-harness prompts, rebuilt here from a
locked data set (``eval/taskloss_build.py`` builds them); each is declared once below, with
the lm-eval task, shot count and seed that make it. The authors' files this artifact carries
(``resources/taskloss``) are recorded with their sha256 in ``SHA256.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from optimal_sparsity.errors import UserError
from optimal_sparsity.resources import RESOURCES
from optimal_sparsity.tiers import LM_EVAL_SEED

CARRIED_DIR = RESOURCES / "taskloss"

SEED = LM_EVAL_SEED  # fewshot_random_seed: it reproduces the authors' files


@dataclass(frozen=True)
class TaskLossBuild:
    """One task-loss input: an lm-eval task at a shot count, on a locked data set."""

    file: str  # the authors' file name
    task: str  # lm-eval task name
    yaml: str  # its stock YAML, relative to lm_eval/tasks/
    dataset: str  # checkpoints.lock data set name
    num_fewshot: int
    results_task: str  # results-table task the file measures


BUILDS: dict[str, TaskLossBuild] = {b.file: b for b in (
    TaskLossBuild("gsm8k_4shot.json", "gsm8k", "gsm8k/gsm8k.yaml", "gsm8k", 4, "gsm8k"),
    TaskLossBuild("triviaqa_4shot.json", "triviaqa", "triviaqa/default.yaml", "triviaqa", 4,
                  "triviaqa"),
    TaskLossBuild("hellaswag_4shot.json", "hellaswag", "hellaswag/hellaswag.yaml", "hellaswag",
                  4, "hellaswag"),
    TaskLossBuild("gsm_plus_5shot_cot.json", "gsm_plus", "gsm_plus/gsm_plus.yaml", "gsm_plus",
                  5, "gsm_plus"),
)}


def find_build(name: str) -> TaskLossBuild:
    for b in BUILDS.values():
        if name in (b.file, b.file.removesuffix(".json"), b.task):
            return b
    raise UserError(f"no task-loss input {name!r}: one of {', '.join(BUILDS)}")


def harness_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def carried_registry(directory: Path = CARRIED_DIR) -> dict[str, dict]:
    """``SHA256.json`` of the carried files: {file: {sha256, bytes, gz_sha256, ...}}."""
    return json.loads((directory / "SHA256.json").read_text())


def carried_hashes() -> dict[str, tuple[str, int]]:
    """{file: (sha256, bytes)} of the authors' files carried here (decompressed)."""
    return {name: (v["sha256"], v["bytes"]) for name, v in carried_registry().items()}
