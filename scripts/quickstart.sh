#!/usr/bin/env bash
# The main job on a fresh machine: build pgrunbook, build the lab image if it is missing, bring
# the lab up (pg-bases2, pg-replica, Redis), set up replication and verify it. Ends with verify's
# table. Safe to run again: every step reuses what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
echo "==> building pgrunbook (release)"
cargo build --release --quiet
bin=target/release/pgrunbook
echo "==> bringing the lab up (builds the image the first time)"
"$bin" lab up
echo "==> pgrunbook run setup"
"$bin" run setup
echo "==> pgrunbook run verify"
"$bin" run verify
