#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests, and end-to-end tests against real containers
# (PostgreSQL 17, pgBackRest, Redis), and tests/versions.rs's cycle on PostgreSQL 15, 16 and 18. Builds the lab image first when it is missing, so a fresh
# clone needs nothing but Rust, Docker and access to Debian's and crates.io's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
echo "==> building the lab images if missing (the lab's, and the official flavour's)"
cargo run --quiet -- lab build --flavour official
echo "==> PostgreSQL 15, 16 and 18 (tests/versions.rs): Debian bookworm's, PyPI's, forky's"
cargo run --quiet -- lab build --flavour official --pg 15
cargo run --quiet -- lab build --flavour official --pg 16
cargo run --quiet -- lab build --flavour official --pg 18
echo "==> cargo test"
cargo test --all-targets -- --test-threads="${PGRUNBOOK_TEST_THREADS:-4}"
