"""Task-loss inputs: the proxy tasks' JSONL and the authors' own files (gzipped, hash-checked).

Every source yields ``(prompt, answer)`` pairs; ``task_loss.task_loss`` scores them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from optimal_sparsity.atomic import sha256_bytes
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.errors import IntegrityError, UserError
from optimal_sparsity.hub.taskloss_inputs import (
    BUILDS,
    CARRIED_DIR,
    carried_hashes,
    carried_registry,
    find_build,
)

TASKLOSS_DIR = CARRIED_DIR


@dataclass(frozen=True)
class AuthorsInput:
    """One of the authors' task-loss files and the results-table task it measures."""

    task: str  # results-table task name (eval/__init__.py)
    file: str  # name of the JSON inside resources/taskloss/ (stored as FILE.gz)


# The three files of the authors' repository we carry (PROVENANCE.md there).
AUTHORS_INPUTS: dict[str, AuthorsInput] = {
    "gsm8k": AuthorsInput("gsm8k", "gsm8k_4shot.json"),
    "humaneval": AuthorsInput("humaneval", "humanevalplus_test.json"),
    "mbpp": AuthorsInput("mbpp", "mbppplus_test.json"),
}


def _registry() -> dict[str, dict]:
    return carried_registry(TASKLOSS_DIR)


def load_authors_inputs(task: str) -> list[tuple[str, str]]:
    """The authors' ``(prompt, answer)`` pairs for ``task``, after checking the sha256 of
    the decompressed bytes against ``SHA256.json``."""
    if task not in AUTHORS_INPUTS:
        raise UserError(f"no authors' task-loss input for {task!r}: one of "
                        f"{', '.join(AUTHORS_INPUTS)}")
    name = AUTHORS_INPUTS[task].file
    want = _registry()[name]
    path = TASKLOSS_DIR / (name + ".gz")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as err:
        raise IntegrityError(f"cannot read {path}: {err}") from err
    got = sha256_bytes(raw)
    if got != want["sha256"]:
        raise IntegrityError(f"{path}: decompressed sha256 {got} does not match "
                             f"SHA256.json {want['sha256']}")
    items = json.loads(raw)
    return [(it["prompt"], it["answer"]) for it in items]


@dataclass(frozen=True)
class PaperInput:
    task: str  # results-table task
    file: str
    sha256: str
    pairs: list[tuple[str, str]]


def paper_inputs(built: Sequence[str] = (), built_dir: str | Path | None = None,
                 log: Callable[[str], None] = print) -> list[PaperInput]:
    """The authors' task-loss inputs this run scores: the carried files, then the inputs
    built from lm-eval tasks (``taskloss_build``) named in ``built`` as ``FILE:SHA256``
    (read from ``built_dir``, their hash checked again); the others are logged as not
    scored."""
    hashes = carried_hashes()
    out = [PaperInput(spec.task, spec.file, hashes[spec.file][0], load_authors_inputs(task))
           for task, spec in AUTHORS_INPUTS.items()]
    for item in built:
        file, sha = item.rsplit(":", 1)
        if built_dir is None:
            raise UserError("built task-loss inputs need their directory (paper_inputs_dir)")
        path = Path(built_dir) / file
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise UserError(f"cannot read the built input {path}: {err}") from None
        if sha256_bytes(raw) != sha:
            raise IntegrityError(f"{path}: sha256 {sha256_bytes(raw)}, expected {sha}")
        pairs = [(it["prompt"], it["answer"]) for it in json.loads(raw)]
        out.append(PaperInput(find_build(file).results_task, file, sha, pairs))
    scored = {p.file for p in out}
    left = [b.file for b in BUILDS.values() if b.file not in scored]
    if left:
        log(f"paper_task_loss: not scored (not built and hashed here: `./reproduce "
            f"taskloss-build`): {', '.join(left)}")
    return out


def load_proxy_items(corpus: str | Path, task: str) -> list[dict]:
    """All evaluation items of a proxy task, in file order."""
    path = CorpusFiles.at(corpus).eval_items(task)
    if not path.is_file():
        raise UserError(f"corpus {corpus} has no evaluation file {path.name} "
                        "(build the corpus with `./reproduce data`)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
