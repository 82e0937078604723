"""requirements.lock: every distribution pinned with hashes, the CPU torch and no CUDA
package; the running environment is exactly what it pins; `nox -s lock` reproduces it."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from optimal_sparsity.envlock import INSTALLER, canonical, install, parse_lock, read_lock

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
PROJECT = "optimal-sparsity"


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonical(re.split(r"[\[=]", d, maxsplit=1)[0]): d.split("==", 1)[1] for d in deps}


def test_lock_is_hashed_cpu_only_and_agrees_with_pyproject():
    lock = read_lock(LOCK)
    assert all(p.hashes for p in lock.values())
    assert not [n for n in lock if n.startswith(("nvidia-", "triton", "cuda-"))]
    for name, version in _pyproject_pins().items():
        want = version + "+cpu" if name == "torch" else version
        assert lock[name].version == want, name
    assert set(INSTALLER) <= set(lock)


def test_every_installed_distribution_is_locked_at_its_version():
    """What this environment holds is what the lock pins (the project itself aside)."""
    lock = read_lock(LOCK)
    installed = {canonical(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions()}
    installed.pop(PROJECT, None)
    unlocked = sorted(n for n in installed if n not in lock)
    assert not unlocked, f"installed but not in requirements.lock: {unlocked}"
    off = {n: (v, lock[n].version) for n, v in installed.items() if lock[n].version != v}
    assert not off, f"installed version != locked version: {off}"


def test_lock_parser_reads_uv_output_and_refuses_loose_pins(tmp_path):
    text = ("# header\nsix==1.17.0 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:"
            + "b" * 64 + "\n    # via x\nTyping_Extensions==4.16.0 \\\n    --hash=sha256:"
            + "c" * 64 + "\n")
    pins = parse_lock(text)
    assert pins["six"].hashes == ("sha256:" + "a" * 64, "sha256:" + "b" * 64)
    assert pins["typing-extensions"].version == "4.16.0"
    for bad in ("six>=1.0\n", "--index-url https://example.invalid/simple\n"):
        with pytest.raises(ValueError, match="not an exact pin"):
            parse_lock(bad)
    (tmp_path / "loose.lock").write_text("six==1.17.0\n")
    with pytest.raises(ValueError, match="without hashes: six"):
        install(sys.executable, tmp_path / "loose.lock")


def test_nox_lock_reproduces_the_lock(tmp_path):
    """`nox -s lock` (uv pip compile --generate-hashes) on a copy of the checkout gives the
    committed files back: the lock is current with pyproject.toml."""
    if shutil.which("uv", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("uv is not installed in this environment (./reproduce installs it)")
    for name in ("pyproject.toml", "noxfile.py", "requirements.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "tests" / "compat").mkdir(parents=True)
    compat = REPO / "tests" / "compat" / "transformers-4.57.txt"
    shutil.copy(compat, tmp_path / "tests" / "compat" / compat.name)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run([sys.executable, "-m", "nox", "-f", "noxfile.py", "-s", "lock"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    if res.returncode and re.search(r"dns error|Failed to fetch|Could not connect", out):
        pytest.skip("uv cannot reach a package index: " + out.strip().splitlines()[-1][:200])
    assert res.returncode == 0, out[-3000:]
    assert (tmp_path / "requirements.lock").read_text() == LOCK.read_text()
    assert (tmp_path / "tests" / "compat" / compat.name).read_text() == compat.read_text()
