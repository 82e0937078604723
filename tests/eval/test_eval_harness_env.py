"""The harness environment: built on first use from a requirements file, its own packages
ahead of the project's, this package importable in it; rebuilt when a pin changes."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def test_the_code_pins_are_the_closest_release_to_the_authors_commit():
    from optimal_sparsity.eval.harness_env import (
        CODE_HARNESS_VERSION,
        CODE_REQUIREMENTS,
        pinned_version,
    )

    def pins(path):
        return dict(line.split("==") for line in path.read_text().splitlines()
                    if line and not line.startswith("#"))

    assert pinned_version(CODE_REQUIREMENTS) == CODE_HARNESS_VERSION == "0.4.9"
    assert pinned_version(REQUIREMENTS) == HARNESS_VERSION
    # the same packages beyond the project's environment, lm-eval's version aside
    assert {**pins(CODE_REQUIREMENTS), "lm_eval": "-"} == {**pins(REQUIREMENTS), "lm_eval": "-"}
    assert env_path(CODE_REQUIREMENTS).name.startswith("lm-eval-0.4.9-")


_TASK_KEYS = """
import inspect, json, sys, yaml, lm_eval
from pathlib import Path
from lm_eval import simple_evaluate
from optimal_sparsity.eval.paper_tasks import PAPER_TASKS
from optimal_sparsity.hub.taskloss_inputs import harness_version
class L(yaml.SafeLoader): pass
L.add_multi_constructor("!", lambda loader, suffix, node: "!" + loader.construct_scalar(node))
out = {}
for name in sys.argv[1:]:
    cfg = yaml.load((Path(lm_eval.__file__).parent / "tasks" / PAPER_TASKS[name].stock_yaml)
                    .read_text(), Loader=L)
    out[name] = {"task": cfg["task"], "filters": [f["name"] for f in cfg.get("filter_list", [])],
                 "metrics": [m["metric"] for m in cfg["metric_list"]]}
params = inspect.signature(simple_evaluate).parameters
print(json.dumps({"version": harness_version(), "tasks": out,
                  "unsafe": "confirm_run_unsafe_code" in params}))
"""


@pytest.mark.parametrize("code", [False, True], ids=["lm-eval-0.4.7", "lm-eval-0.4.9"])
def test_each_paper_task_and_its_metric_keys_are_in_its_harness(code, harness_env):
    """Each task of ``paper_tasks`` has its stock YAML, its name and the metric and filter of
    every results key in the harness that runs it (0.4.7 has no code tasks and no
    ``confirm_run_unsafe_code``: 0.4.9 runs those)."""
    import json

    from optimal_sparsity.eval.harness_env import CODE_REQUIREMENTS
    from optimal_sparsity.eval.paper_tasks import PAPER_TASKS

    req = CODE_REQUIREMENTS if code else REQUIREMENTS
    harness_env(req)  # built on first use (skipped only without PyPI)
    tasks = [t for t, spec in PAPER_TASKS.items() if spec.harness == req]
    assert {spec.runs_code for t, spec in PAPER_TASKS.items() if t in tasks} == {code}
    res = run_in_harness(["-c", _TASK_KEYS, *tasks], requirements=req)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["version"] == ("0.4.9" if code else "0.4.7") and got["unsafe"] is code
    for task in tasks:
        cfg = got["tasks"][task]
        assert cfg["task"] == task
        for key in PAPER_TASKS[task].metrics.values():
            metric, filt = key.split(",")
            assert filt in (cfg["filters"] or ["none"]), (task, key)
            assert metric in cfg["metrics"] or f"!utils.{metric}" in cfg["metrics"] or (
                metric == "pass@1" and "!utils.pass_at_k" in cfg["metrics"]), (task, key, cfg)
