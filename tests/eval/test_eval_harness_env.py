"""The harness environment: built on first use from a requirements file, its own packages
ahead of the project's, this package importable in it; rebuilt when a pin changes."""

from __future__ import annotations

import subprocess
import sys

from optimal_sparsity.eval.harness_env import (
    HARNESS_VERSION,
    REQUIREMENTS,
    env_path,
    harness_python,
    run_in_harness,
)


def _fake_lm_eval_wheel(tmp_path, version: str):
    """A wheel named lm_eval at ``version`` (built offline: no build isolation)."""
    src = tmp_path / "pkg"
    (src / "lm_eval").mkdir(parents=True)
    (src / "lm_eval" / "__init__.py").write_text("FAKE = True\n")
    (src / "pyproject.toml").write_text(
        f'[project]\nname = "lm_eval"\nversion = "{version}"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)], check=True)
    return next((tmp_path / "dist").glob("lm_eval-*.whl"))


def test_the_environment_is_built_once_and_its_pins_win(tmp_path):
    reqs = tmp_path / "requirements-harness.txt"
    reqs.write_text(f"# test pins\n{_fake_lm_eval_wheel(tmp_path, '0.4.7')}\n")
    logs: list[str] = []
    python = harness_python(reqs, tmp_path / "envs", log=logs.append)
    assert python.is_file() and len(logs) == 1 and "first use" in logs[0]
    assert harness_python(reqs, tmp_path / "envs", log=logs.append) == python  # built once
    assert len(logs) == 1
    res = run_in_harness(["-c", "import lm_eval, yaml; "
                          "from optimal_sparsity.hub.taskloss_inputs import harness_version; "
                          "print(lm_eval.FAKE, harness_version())"],
                         requirements=reqs, root=tmp_path / "envs", log=logs.append)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "0.4.7"]  # its own lm_eval; the project's yaml
    reqs.write_text(reqs.read_text() + "# a changed pin\n")
    assert env_path(reqs, tmp_path / "envs") != python.parents[1]


def test_the_shipped_pins_are_the_authors_harness():
    pins = dict(line.split("==") for line in REQUIREMENTS.read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["lm_eval"] == HARNESS_VERSION == "0.4.7"
    assert pins["transformers"].startswith("4.")  # 0.4.7 does not import with 5.x
