#!/usr/bin/env bash
# Builds pgrunbook-haproxy (Debian's haproxy package on the lab's base image) when it is missing.
# The base image is built first by lab/build-image.sh when it is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
base=${PGRUNBOOK_BASE_IMAGE:-pgrunbook-base:trixie}
image=${PGRUNBOOK_HAPROXY_IMAGE:-pgrunbook-haproxy:trixie}
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
if ! docker image inspect "$base" >/dev/null 2>&1; then
  "$root/lab/build-image.sh"
fi
echo "scripts/build-haproxy-image.sh: building $image from $base" >&2
docker build -q --build-arg "BASE_IMAGE=$base" -t "$image" "$root/contrib/haproxy" >/dev/null
echo "scripts/build-haproxy-image.sh: ready: $image" >&2
