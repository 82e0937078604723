# syntax=docker/dockerfile:1
# Containers of the artifact (README: "Released checkpoints and containers").
#   GPU (default target):  docker build --build-arg VCS_REF="$(git rev-parse HEAD)" -t optimal-sparsity:gpu .
#   CPU, scaled-down path: docker build --target cpu -t optimal-sparsity:cpu .
# Base pins: docker/base-image.lock. The ARG defaults below equal it (tests/test_containers.py)
# and docker/resolve-base-digest.sh rewrites both. A build refuses a base whose digest is
# still "unresolved" unless given --build-arg ALLOW_UNRESOLVED_BASE=1.

ARG CPU_BASE=python:3.11-slim-bookworm
ARG CPU_BASE_DIGEST=unresolved
ARG GPU_BASE=pytorch/pytorch:2.7.0-cuda12.8-cudnn9-devel
ARG GPU_BASE_DIGEST=unresolved

# ---------------------------------------------------------------------------------------
# CPU: python 3.11 and the project exactly as ./reproduce installs it (requirements.lock with
# --require-hashes, torch 2.13.0+cpu from PyTorch's CPU wheel index, in /opt/venv).
FROM ${CPU_BASE} AS cpu
ARG CPU_BASE
ARG CPU_BASE_DIGEST
ARG ALLOW_UNRESOLVED_BASE=0
ARG VCS_REF=unknown
ARG HF_HUB_OFFLINE=0
LABEL org.opencontainers.image.title="optimal-sparsity (CPU)" \
      org.opencontainers.image.description="Reproduction of arXiv 2508.18672, scaled-down CPU path" \
      org.opencontainers.image.source="https://github.com/rioyokotalab/optimal-sparsity" \
      org.opencontainers.image.base.name="docker.io/${CPU_BASE}" \
      org.opencontainers.image.base.digest="${CPU_BASE_DIGEST}" \
      org.opencontainers.image.revision="${VCS_REF}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPTIMAL_SPARSITY_VENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    HF_HUB_OFFLINE=${HF_HUB_OFFLINE} \
    HF_HUB_DISABLE_TELEMETRY=1
WORKDIR /opt/optimal-sparsity
COPY docker/ docker/
RUN ALLOW_UNRESOLVED_BASE="${ALLOW_UNRESOLVED_BASE}" docker/check-base.sh cpu
COPY . .
# bubblewrap: the code sandbox's mode for a non-root user (docs/sandbox.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap=0.8.0-2+deb12u1 \
 && rm -rf /var/lib/apt/lists/*
# ./reproduce's own first-run install (src/optimal_sparsity/envlock.py): every file
# hash-checked against requirements.lock, torch's CPU wheel from PyTorch's CPU index.
RUN ./reproduce --help > /dev/null \
 && useradd --create-home --uid 1000 --shell /bin/bash repro \
 && chown -R repro:repro /opt/optimal-sparsity
# Run as the non-root user repro (uid 1000).
USER 1000:1000
RUN python -c "import torch, optimal_sparsity; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__" \
 && ./reproduce grid --csv > /dev/null \
 && command -v bwrap > /dev/null
ENTRYPOINT ["/opt/optimal-sparsity/reproduce"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------
# GPU: the base image's torch (2.7.0, MegaBlocks 0.10.0's exact pin), never replaced:
# MegaBlocks + grouped_gemm + stanford-stk compiled against it, the project's pins in the
# base environment, vLLM 0.9.2 in /opt/vllm over the same torch (docker/requirements-*.txt).
FROM ${GPU_BASE} AS gpu
ARG GPU_BASE
ARG GPU_BASE_DIGEST
ARG ALLOW_UNRESOLVED_BASE=0
ARG VCS_REF=unknown
ARG HF_HUB_OFFLINE=0
# A100 (8.0) and H100/H200 (9.0); no GPU is needed at build time.
ARG TORCH_CUDA_ARCH_LIST="8.0;9.0"
LABEL org.opencontainers.image.title="optimal-sparsity (GPU)" \
      org.opencontainers.image.description="Reproduction of arXiv 2508.18672: MegaBlocks training, vLLM evaluation" \
      org.opencontainers.image.source="https://github.com/rioyokotalab/optimal-sparsity" \
      org.opencontainers.image.base.name="docker.io/${GPU_BASE}" \
      org.opencontainers.image.base.digest="${GPU_BASE_DIGEST}" \
      org.opencontainers.image.revision="${VCS_REF}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPTIMAL_SPARSITY_VENV=/opt/conda \
    OPTIMAL_SPARSITY_VLLM_PYTHON=/opt/vllm/bin/python \
    OPTIMAL_SPARSITY_HARNESS_ENV=/opt/harness \
    HF_HUB_OFFLINE=${HF_HUB_OFFLINE} \
    HF_HUB_DISABLE_TELEMETRY=1
WORKDIR /opt/optimal-sparsity
COPY docker/ docker/
COPY requirements.lock pyproject.toml ./
RUN ALLOW_UNRESOLVED_BASE="${ALLOW_UNRESOLVED_BASE}" docker/check-base.sh gpu \
 && TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" docker/install-gpu.sh deps
# bubblewrap: the code sandbox's mode for a non-root user (docs/sandbox.md). Not pinned: the
# base's Ubuntu release is not verified here; the sandbox checks the installed bwrap's
# options (--size, 0.7.0 or newer) when it starts and refuses generated code without them.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# uid 1000 becomes "repro" (a base on Ubuntu 24.04 would already have "ubuntu" there).
RUN docker/install-gpu.sh project \
 && chmod -R a+rX /opt/harness \
 && if getent passwd 1000 > /dev/null; then userdel --remove "$(getent passwd 1000 | cut -d: -f1)"; fi \
 && useradd --create-home --uid 1000 --shell /bin/bash repro \
 && chown -R repro:repro /opt/optimal-sparsity
# Run as the non-root user repro (uid 1000).
USER 1000:1000
# Import smoke: every pinned component loads (no GPU needed), torch is still the base's.
RUN python -c "import torch, megablocks, grouped_gemm, stk, transformers, lm_eval, trl, optimal_sparsity; assert torch.__version__.split('+')[0] == '2.7.0', torch.__version__" \
 && /opt/vllm/bin/python -c "import vllm, transformers, lm_eval.models.vllm_causallms; assert transformers.__version__ == '4.53.3'" \
 && for py in /opt/harness/lm-eval-*/bin/python; do "$py" -c "import lm_eval"; done \
 && ./reproduce grid --csv > /dev/null \
 && command -v bwrap > /dev/null
ENTRYPOINT ["/opt/optimal-sparsity/reproduce"]
CMD ["--help"]
