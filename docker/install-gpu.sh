#!/usr/bin/env bash
# The GPU environment, on top of the base image's Python and torch. The Dockerfile and
# apptainer.def both run it.
#   install-gpu.sh deps      MegaBlocks stack, the project's pinned dependencies, vLLM env
#   install-gpu.sh project   the project itself (editable), ./reproduce's install stamp and
#                            the authors' lm-eval harness environments
# torch is never installed or replaced: every pip call is constrained to the base's torch,
# and its version is checked after each step.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=docker/base-image.lock
. "$src/docker/base-image.lock"
py="${PYTHON:-python}"
vllm_env="${OPTIMAL_SPARSITY_VLLM_ENV:-/opt/vllm}"
pip_install=(-m pip install --no-cache-dir --disable-pip-version-check)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

check_torch() {
  local have
  have="$("$1" -c 'import torch; print(torch.__version__.split("+")[0])')"
  if [ "$have" != "$GPU_BASE_TORCH" ]; then
    echo "install-gpu: $1 has torch $have, expected $GPU_BASE_TORCH" >&2
    exit 1
  fi
}

deps() {
  check_torch "$py"
  # The project's transitive pins (requirements.lock, CPU) with torch held at the base's and
  # the build tools left to requirements-build.txt.
  { echo "torch==$GPU_BASE_TORCH"
    "$py" -P "$src/src/optimal_sparsity/envlock.py" pins "$src/requirements.lock" \
      --drop torch pip setuptools; } > "$tmp/constraints.txt"
  "$py" "${pip_install[@]}" -c "$tmp/constraints.txt" -r "$src/docker/requirements-build.txt"
  # MegaBlocks, grouped_gemm, stanford-stk: compiled against the base's torch, no resolver.
  TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}" \
    "$py" "${pip_install[@]}" --no-deps --no-build-isolation --require-hashes \
    -r "$src/docker/requirements-megablocks.txt"
  "$py" "${pip_install[@]}" -c "$tmp/constraints.txt" -r "$src/docker/requirements-gpu.txt"
  check_torch "$py"

  # vLLM: its own venv over the base's site-packages (same torch), see requirements-vllm.txt.
  "$py" -m venv --system-site-packages "$vllm_env"
  { echo "torch==$GPU_BASE_TORCH"; grep -v '^#' "$src/docker/constraints-vllm.txt"; } \
    > "$tmp/constraints-vllm.txt"
  "$vllm_env/bin/python" "${pip_install[@]}" -c "$tmp/constraints-vllm.txt" \
    -r "$src/docker/requirements-vllm.txt"
  check_torch "$vllm_env/bin/python"
}

project() {
  "$py" "${pip_install[@]}" --no-deps -e "$src"
  # ./reproduce runs this environment as it is (OPTIMAL_SPARSITY_VENV = its prefix) once
  # it finds the stamp it would write after its own install.
  local prefix stamp
  prefix="$("$py" -c 'import sys; print(sys.prefix)')"
  stamp="$(cat "$src/pyproject.toml" "$src/requirements.lock" | sha256sum | cut -c1-16)"
  touch "$prefix/.installed-$stamp"
  # The authors' harnesses (lm-eval 0.4.7 and 0.4.9, docker/requirements-harness*.txt), each
  # in its own environment over this one, where eval/harness_env.py looks for them
  # (OPTIMAL_SPARSITY_HARNESS_ENV); built here so pull mode needs no PyPI at run time.
  "$py" -c 'from optimal_sparsity.eval.harness_env import CODE_REQUIREMENTS, REQUIREMENTS, harness_python
for req in (REQUIREMENTS, CODE_REQUIREMENTS):
    print(harness_python(req))'
}

case "${1:-}" in
  deps) deps ;;
  project) project ;;
  *) echo "usage: install-gpu.sh deps|project" >&2; exit 2 ;;
esac
