#!/usr/bin/env bash
# Builds the lab image (PostgreSQL 17 + pgBackRest + Redis) when it is missing.
#
# Two ways to get a base image:
#   * no container registry (the default here): a Debian "trixie" root file system is made from
#     Debian's packages with mmdebstrap and imported as $PGRUNBOOK_BASE_IMAGE;
#   * a registry is reachable: set PGRUNBOOK_BASE_IMAGE=postgres:17 and the Dockerfile installs
#     pgBackRest and Redis on top of the official image.
# Then `docker build` makes $PGRUNBOOK_IMAGE from lab/Dockerfile. Both steps are skipped when their
# image already exists, so the script is cheap to call before every command that needs the lab.
#
#   lab/build-image.sh            build what is missing
#   lab/build-image.sh --force    rebuild the lab image (not the base)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=${PGRUNBOOK_BASE_IMAGE:-pgrunbook-base:trixie}
image=${PGRUNBOOK_IMAGE:-pgrunbook-lab:17}
force=${1:-}

log() { echo "lab/build-image.sh: $*" >&2; }

if ! docker info >/dev/null 2>&1; then
  log "the Docker engine is not reachable (is dockerd running, and is DOCKER_HOST right?)"
  exit 3
fi

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$base"; then
  case "$base" in
    pgrunbook-base:*)
      log "base image $base is missing: building it from Debian's packages (mmdebstrap)"
      if ! command -v mmdebstrap >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq mmdebstrap >/dev/null
      fi
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      mmdebstrap --quiet --variant=minbase \
        --include=postgresql-17,postgresql-contrib-17,pgbackrest,redis-server,ca-certificates,procps \
        --format=tar trixie "$tmp/rootfs.tar"
      docker import "$tmp/rootfs.tar" "$base" >/dev/null
      ;;
    *)
      log "base image $base is missing; trying to pull it"
      docker pull "$base"
      ;;
  esac
fi

# The hash of the lab's files, as a label: pgrunbook rebuilds the image when they change.
hash=${PGRUNBOOK_LAB_HASH:-}
current=$(docker image inspect -f '{{ index .Config.Labels "org.pgrunbook.lab-hash" }}' "$image" 2>/dev/null || true)
if [ "$force" = "--force" ] || ! have "$image" || { [ -n "$hash" ] && [ "$hash" != "$current" ]; }; then
  log "building $image from $base"
  docker build -q --build-arg "BASE_IMAGE=$base" --label "org.pgrunbook.lab-hash=$hash" -t "$image" "$here" >/dev/null
fi
log "ready: $image"
