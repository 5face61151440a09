#!/usr/bin/env bash
# Benchmarks pgrunbook's runbooks against the seed manual's sequences, side by side, in one run,
# on one lab of its own (containers bench-*, ports 25432/25433/26379; a user's lab is untouched).
#
#   bench/run.sh                       # failover rounds, then failback on ~1 GB
#   FAILOVER_ROUNDS=10 bench/run.sh
#   FAILBACK_ROUNDS=0 bench/run.sh     # skip the 1 GB failback part (it takes ~10 min)
#   SCALE=70 (pgbench scale, ~1 GB)    LOAD_S=20 (pgbench seconds before each failback round)
#   KEEP=1 (leave the lab up afterwards)
#
# Failover: the seed's procedure 3 exactly as the manual gives it (docker stop the primary,
# docker exec ... psql pg_promote(wait => true), docker exec ... psql pg_is_in_recovery()) against
# `pgrunbook run failover` (whole process: start, role discovery, LSNs, lag guard, fencing,
# promotion, write check, journaling in Redis). Rounds alternate, each from a healthy pair.
#
# Failback: the seed's procedure 4 exactly as written (stop, wipe, create the slot, pg_basebackup
# -X stream -R -S with its default spread checkpoint, start) against `pgrunbook run failback`.
# Each failback round starts the same way: LOAD_S seconds of pgbench writes, then a failover. The
# seed's spread checkpoint paces itself over checkpoint_completion_target x checkpoint_timeout
# (0.9 x 5 min) when there are dirty buffers to write, which is what makes it slow after load.
#
# Prints a Markdown report with medians and ratios (also written to target/bench/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
FAILOVER_ROUNDS=${FAILOVER_ROUNDS:-7}
FAILBACK_ROUNDS=${FAILBACK_ROUNDS:-2}
SCALE=${SCALE:-70}
out=target/bench
mkdir -p "$out"
export PGRUNBOOK_CONFIG=$PWD/$out/pgrunbook.toml
export PGRUNBOOK_DATA_DIR=$PWD/$out/data
cat > "$PGRUNBOOK_CONFIG" <<TOML
[nodes.pg-bases2]
container = "bench-pg-bases2"
host = "127.0.0.1"
port = 25432
slot = "primary1"
init = "primary"

[nodes.pg-replica]
container = "bench-pg-replica"
host = "127.0.0.1"
port = 25433
slot = "replica1"
init = "standby"

[redis]
url = "redis://127.0.0.1:26379"
prefix = "bench"

[lab]
network = "bench-net"
repo_volume = "bench-pgbackrest"
redis_container = "bench-redis"
redis_port = 26379
label = "bench"
TOML

cargo build --release --quiet
pgr=$PWD/target/release/pgrunbook
ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
container() { [ "$1" = pg-bases2 ] && echo bench-pg-bases2 || echo bench-pg-replica; }
other() { [ "$1" = pg-bases2 ] && echo pg-replica || echo pg-bases2; }
primary() {  # the node that is primary now
  for n in pg-bases2 pg-replica; do
    if [ "$(docker exec "$(container $n)" psql -U postgres -Atc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; then echo $n; return; fi
  done
}
healthy() { $pgr run failback >/dev/null; }   # rejoin whichever node is down; a no-op when healthy

cleanup() { [ -n "${KEEP:-}" ] || $pgr lab down --volumes >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "==> bench lab up" >&2
$pgr lab down --volumes >/dev/null 2>&1 || true
$pgr lab up >/dev/null
$pgr run setup >/dev/null

: > "$out/failover-manual.txt"; : > "$out/failover-runbook.txt"; : > "$out/failover-runbook-writes.txt"
for r in $(seq 1 "$FAILOVER_ROUNDS"); do
  healthy
  p=$(primary); s=$(other "$p")
  t0=$(ms)
  docker stop "$(container "$p")" >/dev/null
  docker exec "$(container "$s")" psql -U postgres -c "SELECT pg_promote(wait => true);" >/dev/null
  [ "$(docker exec "$(container "$s")" psql -U postgres -Atc "SELECT pg_is_in_recovery();")" = f ]
  t1=$(ms); echo $((t1 - t0)) >> "$out/failover-manual.txt"
  healthy
  t0=$(ms)
  log=$($pgr run failover)
  t1=$(ms); echo $((t1 - t0)) >> "$out/failover-runbook.txt"
  echo "$log" | sed -n 's/.*accepts writes, \([0-9]*\) ms after the start.*/\1/p' >> "$out/failover-runbook-writes.txt"
  echo "    round $r: manual $(tail -1 "$out/failover-manual.txt") ms, runbook $(tail -1 "$out/failover-runbook.txt") ms" >&2
done
fm=$(median < "$out/failover-manual.txt"); fr=$(median < "$out/failover-runbook.txt"); fw=$(median < "$out/failover-runbook-writes.txt")

fb_report=""
if [ "$FAILBACK_ROUNDS" -gt 0 ]; then
  healthy
  p=$(primary)
  echo "==> loading pgbench scale $SCALE on $p" >&2
  docker exec "$(container "$p")" pgbench -U postgres -i -s "$SCALE" -q bases2_proyectos >/dev/null 2>&1
  size=$(docker exec "$(container "$p")" psql -U postgres -Atc "SELECT pg_size_pretty(pg_database_size('bases2_proyectos'))")
  $pgr run verify >/dev/null   # the standby has it all
  : > "$out/failback-manual.txt"; : > "$out/failback-runbook.txt"
  load() {  # the same write load before every failover, so that every round starts alike
    local p; p=$(primary)
    docker exec "$(container "$p")" pgbench -U postgres -n -T "${LOAD_S:-20}" -c 2 bases2_proyectos >/dev/null 2>&1
  }
  for r in $(seq 1 "$FAILBACK_ROUNDS"); do
    # The seed's procedure 4, exactly as written, after a failover.
    load
    $pgr run failover >/dev/null
    act=$(primary); old=$(other "$act")
    oldc=$(container "$old"); actc=$(container "$act"); slot=$($pgr config | awk -v n="[nodes.$old]" '$0==n{f=1} f&&/^slot/{gsub(/"/,"",$3); print $3; exit}')
    docker exec "$actc" psql -U postgres -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$slot' AND NOT active" >/dev/null
    vol=$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/var/lib/postgresql/data"}}{{.Name}}{{end}}{{end}}' "$oldc")
    net=bench-net
    echo "    seed failback of $old from $act (spread checkpoint: minutes)..." >&2
    t0=$(ms)
    docker stop "$oldc" >/dev/null
    docker run --rm -u postgres --entrypoint bash -v "$vol:/var/lib/postgresql/data" pgrunbook-lab:17 -lc "rm -rf /var/lib/postgresql/data/*" >/dev/null
    docker exec "$actc" psql -U postgres -c "SELECT pg_create_physical_replication_slot('$slot');" >/dev/null
    docker run --rm -u postgres --entrypoint bash --network "$net" -e PGPASSWORD=replica_pass -v "$vol:/var/lib/postgresql/data" pgrunbook-lab:17 \
      -lc "pg_basebackup -h $actc -U replicator -D /var/lib/postgresql/data -X stream -R -S $slot -v" > "$out/seed-basebackup.log" 2>&1 \
      || { echo "seed pg_basebackup failed:" >&2; cat "$out/seed-basebackup.log" >&2; exit 1; }
    docker start "$oldc" >/dev/null
    t1=$(ms); echo $((t1 - t0)) >> "$out/failback-manual.txt"
    # The seed stops at `docker start`; give the clone time to come up before checking it.
    for _ in $(seq 1 120); do $pgr run verify >/dev/null 2>&1 && break; sleep 1; done
    $pgr run verify >/dev/null
    # pgrunbook's failback, after a failover in the same state.
    load
    $pgr run failover >/dev/null
    t0=$(ms)
    $pgr run failback >/dev/null
    t1=$(ms); echo $((t1 - t0)) >> "$out/failback-runbook.txt"
    echo "    round $r: seed $(tail -1 "$out/failback-manual.txt") ms, runbook $(tail -1 "$out/failback-runbook.txt") ms" >&2
  done
  bm=$(median < "$out/failback-manual.txt"); br=$(median < "$out/failback-runbook.txt")
  fb_report="| failback of a $size database (pgbench -s $SCALE) | $FAILBACK_ROUNDS | $bm ms | $br ms | $(awk -v a="$br" -v b="$bm" 'BEGIN{printf "%.3f", a/b}') | 0.05 |"
fi

{
  echo "| measure | rounds | seed manual (median) | pgrunbook (median) | ratio | target |"
  echo "|---|---|---|---|---|---|"
  echo "| failover, whole process | $FAILOVER_ROUNDS | $fm ms | $fr ms | $(awk -v a="$fr" -v b="$fm" 'BEGIN{printf "%.2f", a/b}') | 0.7 |"
  echo "| failover, until the new primary accepts writes (runbook's own measure) | $FAILOVER_ROUNDS | $fm ms | $fw ms | $(awk -v a="$fw" -v b="$fm" 'BEGIN{printf "%.2f", a/b}') | |"
  [ -z "$fb_report" ] || echo "$fb_report"
  echo
  echo "raw failover (ms): manual $(paste -sd' ' "$out/failover-manual.txt"); runbook $(paste -sd' ' "$out/failover-runbook.txt")"
  [ -z "$fb_report" ] || echo "raw failback (ms): seed $(paste -sd' ' "$out/failback-manual.txt"); runbook $(paste -sd' ' "$out/failback-runbook.txt")"
} | tee "$out/report.md"
