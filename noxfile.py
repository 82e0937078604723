"""nox sessions: `nox -l` lists them. Sessions run in the project's environment
(`./reproduce` creates .venv; run nox from it: `.venv/bin/nox -s tests`)."""

from __future__ import annotations

import sys

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
# `--`, e.g. `nox -s fig7 -- --mode pull` or `nox -s fig5 -- --scale full`.
_FIGURE_DOCS = {
    "fig1": "Fig 1: pre-training and task loss vs total params [retrain|pull; smoke ~10 min]",
    "fig2": "Fig 2: task loss vs pre-training loss [retrain|pull]",
    "fig3": "Fig 3: accuracy vs pre-training loss [retrain|pull]",
    "fig4": "Fig 4: error vs loss coloured by sparsity, with checkpoints [retrain]",
    "fig5": "Fig 5: task loss and accuracy vs density at fixed active params [retrain|pull]",
    "fig6": "Fig 6: self-consistency and GRPO [retrain; pull needs a GPU]",
    "fig7": "Fig 7: accuracy vs tokens per parameter [retrain|pull]",
    "fig8": "Fig 8: code models vs density [pull only: needs the code grid]",
    "fig10": "Fig 10: GRPO on two training sets [retrain; pull needs a GPU]",
    "fig11": "Fig 11: few-shot accuracy vs shots [retrain|pull]",
}
for _fig, _doc in _FIGURE_DOCS.items():
    globals()[_fig] = _figure_session(_fig, _doc)


@nox.session(name="all")
def all_figures(session: nox.Session) -> None:
    """Every figure, the claims table and results/report.html (= `./reproduce`)."""
    session.run(PYTHON, "-m", "optimal_sparsity.cli", "all", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks vs HF Mixtral and the matmul peak: MoE layer, training step, scoring,
    generation; `-- --suite e2e` times ./reproduce (BENCHMARKS.md)."""
    session.run(PYTHON, "-m", "optimal_sparsity.cli", "bench", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """Every GPU check, one JSON report (= ./reproduce gpu-check; <= 8 min on one H100/H200;
    exit 2 on a machine without a GPU)."""
    session.run(PYTHON, "-m", "optimal_sparsity.cli", "gpu-check", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Rewrite requirements.lock from the current environment (Python 3.11, CPU)."""
    out = session.run(PYTHON, "-m", "pip", "freeze", "--exclude-editable", silent=True)
    lines = [ln.replace("+cpu", "") for ln in out.splitlines() if ln and not ln.startswith("-e")]
    header = ["# Every transitive pin of the CPU environment, used as pip constraints by "
              "./reproduce.", "# Regenerate with: nox -s lock   (Python 3.11, CPU, torch "
              "from the 2.13.0 wheel)."]
    with open("requirements.lock", "w") as f:
        f.write("\n".join(header + lines) + "\n")
