"""The CLI as a user runs it."""

import csv
import io
import subprocess
import sys

from optimal_sparsity.grid import format_size, paper_models


def run(*args):
    return subprocess.run([sys.executable, "-m", "optimal_sparsity.cli", *args],
                          capture_output=True, text=True)


def test_grid_csv_has_65_rows_matching_names():
    res = run("grid", "--csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0]) == ["name", "d", "E", "k", "total_params", "active_params",
                             "sparsity", "density", "tpp"]
    assert len(rows) == 65
    by_name = {m.name: m for m in paper_models()}
    for r in rows:
        pm = by_name[r["name"]]
        assert format_size(int(r["total_params"])) == pm.total_name
        assert format_size(int(r["active_params"])) == pm.active_name
        assert float(r["sparsity"]) == 1 - pm.k / pm.E


def test_plan_marks_one_recommendation():
    res = run("plan", "--tokens", "1e12", "--active-params", "1e9", "--goal", "reasoning",
              "--csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert sum(r["recommended"] == "*" for r in rows) == 1
    assert "recommended for reasoning" in res.stderr


def test_errors_are_one_line():
    res = run("export", "/nonexistent/ckpt", "/tmp/out-never-written")
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    res = run("plan", "--tokens", "-5", "--active-params", "1e9", "--goal", "reasoning")
    assert res.returncode == 2 and "must be a finite number > 0" in res.stderr


def test_nox_sessions_run_in_the_interpreter_that_runs_nox(tmp_path):
    """`.venv/bin/nox -s ...` must work without the venv on PATH (sessions do not create
    environments; they use the project's)."""
    import os
    import subprocess
    import sys

    from optimal_sparsity.paths import REPO

    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "nox", "-f", str(REPO / "noxfile.py"),
                          "-s", "bench", "--", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage: reproduce bench" in res.stdout
