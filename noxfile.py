"""nox sessions: `nox -l` lists them. Sessions run in the project's environment
(`./reproduce` creates .venv; run nox from it: `.venv/bin/nox -s tests`)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (the README's test command, CPU, a few minutes)."""
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the package, tests and this file."""
    session.run("ruff", "check", "src", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: MoE layer vs HF Mixtral, training step vs matmul peak (BENCHMARKS.md)."""
    session.run("python", "-m", "optimal_sparsity.cli", "bench", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Rewrite requirements.lock from the current environment (Python 3.11, CPU)."""
    out = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True)
    lines = [ln.replace("+cpu", "") for ln in out.splitlines() if ln and not ln.startswith("-e")]
    header = ["# Every transitive pin of the CPU environment, used as pip constraints by "
              "./reproduce.", "# Regenerate with: nox -s lock   (Python 3.11, CPU, torch "
              "from the 2.13.0 wheel)."]
    with open("requirements.lock", "w") as f:
        f.write("\n".join(header + lines) + "\n")
