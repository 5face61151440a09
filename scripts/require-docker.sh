#!/usr/bin/env bash
# Fails with a clear message when no Docker engine answers: nothing here passes silently
# without one.
if ! docker info >/dev/null 2>&1; then
  host=${DOCKER_HOST:-unix:///var/run/docker.sock}
  echo "error: no Docker engine answers at $host." >&2
  echo "pgrunbook's lab and its end-to-end tests need one: start dockerd (or set DOCKER_HOST)." >&2
  exit 5
fi
