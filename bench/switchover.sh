#!/usr/bin/env bash
# Benchmarks `pgrunbook run switchover` on a lab of its own (containers bench-sw-*, ports
# 25532/25533/26479; a user's lab and bench/run.sh's are untouched), under a light write load.
#
#   bench/switchover.sh                # 7 switchovers
#   ROUNDS=10 bench/switchover.sh
#   KEEP=1 (leave the lab up afterwards)
#
# Each round is one switchover (the roles alternate). Measured per round:
#   - writes unavailable, as the runbook journals it (from the fence and fast shutdown of the old
#     primary until the new primary has accepted a write);
#   - writes unavailable as a client sees it: a writer in a container of its own on the lab's
#     network inserts one row at a time with psql (a new process and connection each time, so
#     its resolution is the time of one psql run), switching nodes when one refuses, and prints
#     the time of every acknowledged commit; the longest gap between two acknowledgements during
#     the run;
#   - the whole runbook, as the runbook journals it (total_ms) and as the wall clock sees the
#     process (start-up and journaling included).
# At the end every acknowledged row must be on the primary. Prints a Markdown report (also
# written to target/bench/switchover.md). A script, not a test: timings on a shared machine
# belong in a report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
ROUNDS=${ROUNDS:-7}
out=target/bench
mkdir -p "$out"
export PGRUNBOOK_CONFIG=$PWD/$out/switchover.toml
export PGRUNBOOK_DATA_DIR=$PWD/$out/switchover-data
cat > "$PGRUNBOOK_CONFIG" <<TOML
[nodes.pg-bases2]
container = "bench-sw-pg-bases2"
host = "127.0.0.1"
port = 25532
slot = "primary1"
init = "primary"

[nodes.pg-replica]
container = "bench-sw-pg-replica"
host = "127.0.0.1"
port = 25533
slot = "replica1"
init = "standby"

[redis]
url = "redis://127.0.0.1:26479"
prefix = "bench-sw"

[lab]
network = "bench-sw-net"
repo_volume = "bench-sw-pgbackrest"
redis_container = "bench-sw-redis"
redis_port = 26479
label = "bench-sw"
TOML

cargo build --release --quiet
pgr=$PWD/target/release/pgrunbook
ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
metric() {  # metric NAME: from the newest journal entry in Redis
  docker exec bench-sw-redis redis-cli XREVRANGE bench-sw:journal + - COUNT 1 \
    | grep -o "\"$1\":\"[0-9]*\"" | grep -o '[0-9]*' | tail -1
}
writer=bench-sw-writer
cleanup() {
  docker rm -f "$writer" >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || $pgr lab down --volumes >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "==> bench lab up" >&2
$pgr lab down --volumes >/dev/null 2>&1 || true
$pgr lab up >/dev/null
$pgr run setup >/dev/null
docker exec bench-sw-pg-bases2 psql -U postgres -d bases2_proyectos -qc \
  "CREATE TABLE IF NOT EXISTS bench_sw (v bigint PRIMARY KEY)"
$pgr run verify >/dev/null

# The writer: its password reaches `docker run` through the environment (-e NAME), not argv.
export PGPASSWORD=postgres_pass
docker run -d --name "$writer" --network bench-sw-net -e PGPASSWORD --entrypoint sh pgrunbook-lab:17 -c '
  i=0; h=bench-sw-pg-bases2; o=bench-sw-pg-replica
  while :; do
    if psql -h "$h" -U postgres -d bases2_proyectos -Atqc "INSERT INTO bench_sw VALUES ($i) RETURNING 1" 2>/dev/null | grep -q 1; then
      echo "$(date +%s%3N) $i"; i=$((i + 1))
    else
      t=$h; h=$o; o=$t   # refused or read-only: try the other node next
    fi
  done' >/dev/null
sleep 2

: > "$out/sw-unavailable.txt"; : > "$out/sw-client-gap.txt"; : > "$out/sw-total.txt"; : > "$out/sw-wall.txt"
windows=()
for r in $(seq 1 "$ROUNDS"); do
  sleep 1
  t0=$(ms)
  $pgr run switchover >/dev/null
  t1=$(ms)
  windows+=("$t0 $t1")
  metric writes_unavailable_ms >> "$out/sw-unavailable.txt"
  metric total_ms >> "$out/sw-total.txt"
  echo $((t1 - t0)) >> "$out/sw-wall.txt"
  echo "    round $r: writes unavailable $(tail -1 "$out/sw-unavailable.txt") ms, total $(tail -1 "$out/sw-total.txt") ms (process $((t1 - t0)) ms)" >&2
done
sleep 1
docker stop "$writer" >/dev/null
docker logs "$writer" > "$out/sw-acks.txt" 2>/dev/null
for w in "${windows[@]}"; do
  set -- $w
  awk -v a="$1" -v b="$2" '$1 >= a - 1000 && $1 <= b + 1000 { if (p) { g = $1 - p; if (g > m) m = g } p = $1 } END { print m + 0 }' "$out/sw-acks.txt" >> "$out/sw-client-gap.txt"
done

# Every acknowledged row is on the primary.
p=pg-bases2
[ "$(docker exec bench-sw-pg-bases2 psql -U postgres -Atc 'SELECT pg_is_in_recovery()')" = t ] && p=pg-replica
docker exec "bench-sw-$p" psql -U postgres -d bases2_proyectos -Atc "SELECT v FROM bench_sw ORDER BY v" > "$out/sw-rows.txt"
acked=$(wc -l < "$out/sw-acks.txt")
missing=$(awk '{print $2}' "$out/sw-acks.txt" | sort -n | comm -23 - <(sort -n "$out/sw-rows.txt") | wc -l)

u=$(median < "$out/sw-unavailable.txt"); g=$(median < "$out/sw-client-gap.txt")
t=$(median < "$out/sw-total.txt"); w=$(median < "$out/sw-wall.txt")
{
  echo "| measure | rounds | pgrunbook (median) | target |"
  echo "|---|---|---|---|"
  echo "| writes unavailable, as journaled | $ROUNDS | $u ms | ≤ 500 ms |"
  echo "| writes unavailable, longest gap a client saw | $ROUNDS | $g ms | |"
  echo "| whole runbook, as journaled | $ROUNDS | $t ms | ≤ 2000 ms |"
  echo "| whole process (start-up, journal) | $ROUNDS | $w ms | |"
  echo
  echo "Raw (ms): unavailable $(paste -sd' ' "$out/sw-unavailable.txt"); client gap $(paste -sd' ' "$out/sw-client-gap.txt"); total $(paste -sd' ' "$out/sw-total.txt"); process $(paste -sd' ' "$out/sw-wall.txt")."
  echo "Commits acknowledged to the writer: $acked; missing on the primary ($p): $missing."
} | tee "$out/switchover.md"
[ "$missing" -eq 0 ]
