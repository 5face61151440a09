#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests, and end-to-end tests against real containers
# (PostgreSQL 17, pgBackRest, Redis), and tests/versions.rs's cycle on PostgreSQL 15. Builds the
# images first when they are missing, so a fresh clone needs nothing but Rust, Docker and access
# to Debian's and crates.io's packages. 16 and 18, and the repeated chaos rounds: scripts/test-more.sh (the second command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
echo "==> building the lab images if missing (the lab's, and the official flavour's)"
cargo run --quiet -- lab build --flavour official
echo "==> PostgreSQL 15 (tests/versions.rs): Debian bookworm's"
cargo run --quiet -- lab build --flavour official --pg 15
echo "==> cargo test"
cargo test --all-targets -- --test-threads="${PGRUNBOOK_TEST_THREADS:-4}"
