"""The authors' harness, lm-evaluation-harness 0.4.7, in an environment of its own.

The project pins lm-eval 0.4.13. The authors evaluated with commit 1044db9, which equals the
0.4.7 release for the gsm8k, triviaqa, hellaswag and gsm_plus tasks, ``lm_eval/api`` and
``lm_eval/filters``. 0.4.7 does not import with the project's transformers 5.x, so it lives
in a venv built on first use from ``docker/requirements-harness.txt`` (exact pins, installed
with ``--no-deps``) over the project's environment: the venv's own packages come first, the
project's (torch and the rest) after them, through a ``.pth`` file. The venv's directory
name carries a hash of the requirements, so a changed pin builds a new one.

The authors ran HumanEval and MBPP with another commit, 82a9936 (0.4.8 + 101 commits), which
0.4.7 cannot stand in for (it has no humaneval or mbpp task). The closest release, 0.4.9,
differs from it under ``tasks/{humaneval,mbpp}`` and ``lm_eval/api`` only in ``mbpp/utils.py``
(pass_at_1's signature, code-block extraction), new ``mbpp*_instruct.yaml`` files and 10 lines
of ``api/task.py``; it is a second environment of the same kind, from
``docker/requirements-harness-code.txt`` (``CODE_REQUIREMENTS``). Every function takes the
requirements file; the lm-eval version is its ``lm_eval==`` pin.
"""

from __future__ import annotations

import hashlib
import os
import site
import subprocess
import sys
from pathlib import Path

from optimal_sparsity.atomic import atomic_dir
from optimal_sparsity.errors import UserError

HARNESS_VERSION = "0.4.7"  # the authors' harness (math and general tasks)
CODE_HARNESS_VERSION = "0.4.9"  # the closest release to theirs for HumanEval and MBPP
_DOCKER = Path(__file__).resolve().parents[3] / "docker"
REQUIREMENTS = _DOCKER / "requirements-harness.txt"
CODE_REQUIREMENTS = _DOCKER / "requirements-harness-code.txt"
ENV_DIR = "OPTIMAL_SPARSITY_HARNESS_ENV"  # where the venvs go (default: the user cache)
READY = ".ready"


def envs_root() -> Path:
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else Path.home() / ".cache" / "optimal-sparsity" / "envs"


def pinned_version(requirements: Path = REQUIREMENTS) -> str:
    """The ``lm_eval==`` pin of ``requirements`` (``HARNESS_VERSION`` if it pins none, e.g.
    a wheel file)."""
    for line in requirements.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and name.strip().lower().replace("-", "_") == "lm_eval":
            return version.strip()
    return HARNESS_VERSION


def env_path(requirements: Path = REQUIREMENTS, root: Path | None = None) -> Path:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    return (root or envs_root()) / f"lm-eval-{pinned_version(requirements)}-{digest}"


def is_built(requirements: Path = REQUIREMENTS, root: Path | None = None) -> bool:
    """Whether the environment of ``requirements`` exists (no build, no network)."""
    path = env_path(requirements, root)
    return (path / READY).is_file() and (path / "bin" / "python").is_file()


def harness_python(requirements: Path = REQUIREMENTS, root: Path | None = None,
                   log=print) -> Path:
    """The Python of the harness environment, built first if it does not exist."""
    path = env_path(requirements, root)
    python = path / "bin" / "python"
    if is_built(requirements, root):
        return python
    version = pinned_version(requirements)
    log(f"harness: building {path} (lm-eval {version}, first use)")
    with atomic_dir(path, "harness-env", replace=True) as tmp:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], check=True)
        purelib = next((tmp / "lib").glob("python*/site-packages"))
        # the project's environment, after the venv's own packages
        (purelib / "zz_project_env.pth").write_text(
            "\n".join(site.getsitepackages()) + "\n")
        res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                              "--disable-pip-version-check", "--target", str(purelib),
                              "-r", str(requirements)], capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
            raise UserError(f"harness: installing {requirements.name} failed: {tail[0]}")
        (tmp / READY).write_text(f"lm-eval {version}\n")
    # the venv's bin/python links to this interpreter; its prefix is the final path now
    return python


def run_in_harness(args: list[str], *, requirements: Path = REQUIREMENTS,
                   root: Path | None = None, log=print) -> subprocess.CompletedProcess:
    """``python ARGS`` in the harness environment, with this package importable."""
    python = harness_python(requirements, root, log=log)
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([str(python), *args], env=env, capture_output=True, text=True)
