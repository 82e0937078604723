#!/usr/bin/env bash
# Resolve the base images' digests and write them where the pins live:
# docker/base-image.lock, the Dockerfile's ARG defaults and apptainer.def's From: line.
#   docker/resolve-base-digest.sh [gpu|cpu|all]        ask the registry (default: all)
#   docker/resolve-base-digest.sh gpu|cpu sha256:HEX    record a digest found elsewhere
# Asks the registry with the first available of: docker buildx imagetools inspect,
# crane digest, skopeo inspect --raw. The digest is the one the registry serves for the tag
# (the multi-platform index when there is one), which docker and apptainer both pull by.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lockfile="$root/docker/base-image.lock"
# shellcheck source=docker/base-image.lock
. "$lockfile"

die() { echo "resolve-base-digest: $*" >&2; exit 1; }

registry_digest() {
  local ref="docker.io/$1" digest
  if command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
    digest="$(docker buildx imagetools inspect "$ref" --format '{{json .Manifest}}' |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])')"
  elif command -v crane >/dev/null 2>&1; then
    digest="$(crane digest "$ref")"
  elif command -v skopeo >/dev/null 2>&1; then
    digest="sha256:$(skopeo inspect --raw "docker://$ref" | sha256sum | cut -d' ' -f1)"
  else
    die "needs docker buildx, crane or skopeo (and registry access) to resolve $ref"
  fi
  echo "$digest"
}

ref_of() {
  if [ "$1" = gpu ]; then echo "$GPU_BASE_IMAGE:$GPU_BASE_TAG"
  else echo "$CPU_BASE_IMAGE:$CPU_BASE_TAG"; fi
}

write_pin() {  # write_pin gpu|cpu DIGEST
  local which="$1" digest="$2" ref upper
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "not a sha256 digest: $digest"
  ref="$(ref_of "$which")"
  upper="${which^^}"
  sed -i "s|^${upper}_BASE_DIGEST=.*|${upper}_BASE_DIGEST=$digest|" "$lockfile"
  sed -i "s|^ARG ${upper}_BASE=.*|ARG ${upper}_BASE=$ref@$digest|;
          s|^ARG ${upper}_BASE_DIGEST=.*|ARG ${upper}_BASE_DIGEST=$digest|" "$root/Dockerfile"
  if [ "$which" = gpu ]; then
    sed -i "s|^From: .*|From: $ref@$digest|" "$root/apptainer.def"
  fi
  echo "$which base: $ref@$digest"
}

which="${1:-all}"
case "$which" in
  gpu|cpu) write_pin "$which" "${2:-$(registry_digest "$(ref_of "$which")")}" ;;
  all)
    write_pin gpu "$(registry_digest "$(ref_of gpu)")"
    write_pin cpu "$(registry_digest "$(ref_of cpu)")" ;;
  *) die "usage: resolve-base-digest.sh [gpu|cpu|all] [sha256:DIGEST]" ;;
esac
echo "commit docker/base-image.lock, Dockerfile and apptainer.def together"
