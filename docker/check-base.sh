#!/usr/bin/env bash
# Run first in every container build: refuse a base image whose digest
# docker/base-image.lock has not pinned (unless ALLOW_UNRESOLVED_BASE=1), and on the GPU
# base check that its torch is the one MegaBlocks 0.10.0 pins.
#   check-base.sh gpu|cpu
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/base-image.lock
. "$here/base-image.lock"

case "${1:-}" in
  gpu) ref="$GPU_BASE_IMAGE:$GPU_BASE_TAG" digest="$GPU_BASE_DIGEST" ;;
  cpu) ref="$CPU_BASE_IMAGE:$CPU_BASE_TAG" digest="$CPU_BASE_DIGEST" ;;
  *) echo "usage: check-base.sh gpu|cpu" >&2; exit 2 ;;
esac

if [ "$digest" = unresolved ]; then
  if [ "${ALLOW_UNRESOLVED_BASE:-0}" = 1 ]; then
    echo "WARNING: building on $ref by tag only (no pinned digest; ALLOW_UNRESOLVED_BASE=1)" >&2
  else
    echo "error: docker/base-image.lock has no digest for $ref; run" \
         "docker/resolve-base-digest.sh on a machine with registry access, or build with" \
         "ALLOW_UNRESOLVED_BASE=1 to accept the tag as is" >&2
    exit 1
  fi
fi

if [ "$1" = gpu ]; then
  have="$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
  if [ "$have" != "$GPU_BASE_TORCH" ]; then
    echo "error: $ref has torch $have; MegaBlocks 0.10.0 needs $GPU_BASE_TORCH" >&2
    exit 1
  fi
fi
