"""nox sessions: `nox -l` lists them. Sessions run in the project's environment
(`./reproduce` creates .venv; run nox from it: `.venv/bin/nox -s tests`)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
# The interpreter running nox (.venv's), whatever PATH says: sessions need the project's env.
PYTHON = sys.executable
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (the README's test command, CPU, a few minutes)."""
    session.run(PYTHON, "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the package, tests and this file."""
    session.run(PYTHON, "-m", "ruff", "check", "src", "tests", "noxfile.py")


def _figure_session(fig_id: str, doc: str):
    def session_fn(session: nox.Session) -> None:
        session.run(PYTHON, "-m", "optimal_sparsity.cli", fig_id, *session.posargs)

    session_fn.__doc__ = doc
    session_fn.__name__ = fig_id
    return nox.session(name=fig_id)(session_fn)


# One session per paper figure. Default: retrain mode, smoke scale (CPU, minutes; the
# grid points are shared, so the first figure pays the training). Pass options after
# `--`, e.g. `nox -s fig7 -- --mode pull` or `nox -s fig5 -- --scale full`. Whether pull
# mode wants a GPU follows from the figure's tiers (FigureSpec.wants_gpu).
_FIGURE_DOCS = {
    "fig1": ("Fig 1: pre-training and task loss vs total params", "retrain|pull; smoke ~10 min"),
    "fig2": ("Fig 2: task loss vs pre-training loss", "retrain|pull"),
    "fig3": ("Fig 3: accuracy vs pre-training loss", "retrain|pull"),
    "fig4": ("Fig 4: error vs loss coloured by sparsity, with checkpoints", "retrain"),
    "fig5": ("Fig 5: task loss and accuracy vs density at fixed active params", "retrain|pull"),
    "fig6": ("Fig 6: self-consistency and GRPO", "retrain|pull"),
    "fig7": ("Fig 7: accuracy vs tokens per parameter", "retrain|pull"),
    "fig8": ("Fig 8: code models vs density", "pull only: needs the code grid"),
    "fig10": ("Fig 10: GRPO on two training sets", "retrain|pull"),
    "fig11": ("Fig 11: few-shot accuracy vs shots", "retrain|pull"),
}


def _figure_doc(fig_id: str) -> str:
    from optimal_sparsity.figures.registry import get_figure

    title, modes = _FIGURE_DOCS[fig_id]
    gpu = "; pull: GPU advised" if "pull" in modes and get_figure(fig_id).wants_gpu else ""
    return f"{title} [{modes}{gpu}]"


for _fig in _FIGURE_DOCS:
    globals()[_fig] = _figure_session(_fig, _figure_doc(_fig))


@nox.session(name="all")
def all_figures(session: nox.Session) -> None:
    """Every figure, the claims table and results/report.html (= `./reproduce`)."""
    session.run(PYTHON, "-m", "optimal_sparsity.cli", "all", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks vs HF Mixtral and the matmul peak: MoE layer, training step, scoring,
    generation; `-- --suite e2e` times ./reproduce (BENCHMARKS.md)."""
    session.run(PYTHON, "-m", "optimal_sparsity.cli", "bench", *session.posargs)


# The transformers 4.x environment the export compatibility test builds (tests/compat/):
# the project's torch and lm-eval with the transformers 4.57 that vLLM-era tools load.
COMPAT_TRANSFORMERS = "transformers==4.57.6"
LOCKS = ("requirements.lock", "tests/compat/transformers-4.57.txt")


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[\[=]", d, maxsplit=1)[0].lower().replace("_", "-"): d for d in deps}


def _torch_cpu_sources(session: nox.Session, index: str) -> list[str]:
    """uv arguments that offer the CPU torch wheels: PyPI has only the CUDA build. PyTorch's
    CPU index where it is reachable, else the wheel directories pip is configured with."""
    try:
        urllib.request.urlopen(index + "/torch/", timeout=10).close()
        return ["--find-links", index + "/torch/"]
    except OSError:
        pass
    listed = session.run(PYTHON, "-m", "pip", "config", "list", silent=True) or ""
    found = [*re.findall(r"find-links='([^']*)'", listed), os.environ.get("PIP_FIND_LINKS", "")]
    dirs = sorted({d for v in found for d in v.split() if Path(d).is_dir()})
    if not dirs:
        session.error(f"{index} is unreachable and pip has no local wheel directory")
    session.log(f"{index} is unreachable: torch from {', '.join(dirs)} (its hash is locked)")
    return [a for d in dirs for a in ("--find-links", d)]


@nox.session
def gpu(session: nox.Session) -> None:
    """Every GPU check, one JSON report (= ./reproduce gpu-check; <= 8 min on one H100/H200;
    exit 2 on a machine without a GPU)."""
    session.run(PYTHON, "-m", "optimal_sparsity.cli", "gpu-check", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Regenerate requirements.lock (hashed, CPU torch) and the transformers 4.57 test pins."""
    from optimal_sparsity.envlock import TORCH_CPU_INDEX, read_lock

    pins = _pyproject_pins()
    with tempfile.TemporaryDirectory() as tmp:
        cpu_torch = Path(tmp) / "cpu-torch.txt"
        cpu_torch.write_text(pins["torch"] + "+cpu\n")
        compat = Path(tmp) / "transformers-4.57.in"
        compat.write_text("\n".join([COMPAT_TRANSFORMERS, pins["torch"], pins["lm-eval"]]) + "\n")
        compile_ = [PYTHON, "-m", "uv", "pip", "compile", "--quiet", "--generate-hashes",
                    "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28",
                    "--custom-compile-command", "nox -s lock", "-c", str(cpu_torch),
                    *_torch_cpu_sources(session, TORCH_CPU_INDEX)]
        session.run(*compile_, "pyproject.toml", "--extra", "dev", "-o", LOCKS[0])
        session.run(*compile_, str(compat), "-o", LOCKS[1])
        for path in LOCKS:  # uv's "# via -c <file>" names the temporary directory
            Path(path).write_text(Path(path).read_text().replace(tmp + "/", ""))
    for path in LOCKS:
        cuda = [n for n in read_lock(path) if n.startswith(("nvidia-", "triton"))]
        if cuda:
            session.error(f"{path} pins CUDA packages: {', '.join(cuda)}")
