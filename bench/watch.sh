#!/usr/bin/env bash
# Unattended failover by `pgrunbook watch`, timed as repmgr's was (issue 12): from the start of
# `docker kill -s KILL` of the primary to the first write a client gets accepted on the new
# primary, measured by an independent probe (psql on the published port, a write every 50 ms),
# over ROUNDS kills, at the watcher's default settings. On a lab of its own (containers
# benchw-*, ports 27432/27433/28379; a user's lab is untouched).
#
#   bench/watch.sh                 # 7 kills
#   ROUNDS=10 bench/watch.sh
#   PROFILE=debug bench/watch.sh   # the debug build (default: release)
#   KEEP=1 (leave the lab up afterwards)
#
# Each round: a healthy pair (verify passes, the watcher has seen the standby stream), then the
# kill; the probe writes to the standby until one write is accepted; the watcher's failover run
# is read from the journal for the parts: detection (kill to the failover's start entry) and
# promotion (the failover's own time_to_writes_ms). Then `pgrunbook run failback` rejoins the
# killed node as the standby, and the next round kills whichever node is primary.
#
# Prints a Markdown table and the median and worst (also in target/bench/watch.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
ROUNDS=${ROUNDS:-7}
PROFILE=${PROFILE:-release}
out=target/bench
mkdir -p "$out"
export PGRUNBOOK_CONFIG=$PWD/$out/watch.toml
export PGRUNBOOK_DATA_DIR=$PWD/$out/watch-data
cat > "$PGRUNBOOK_CONFIG" <<TOML
[nodes.pg-bases2]
container = "benchw-pg-bases2"
host = "127.0.0.1"
port = 27432
slot = "primary1"
init = "primary"

[nodes.pg-replica]
container = "benchw-pg-replica"
host = "127.0.0.1"
port = 27433
slot = "replica1"
init = "standby"

[redis]
url = "redis://127.0.0.1:28379"
prefix = "benchw"

[lab]
network = "benchw-net"
repo_volume = "benchw-pgbackrest"
redis_container = "benchw-redis"
redis_port = 28379
label = "benchw"
TOML

if [ "$PROFILE" = release ]; then
    cargo build --release --quiet
    bin=$PWD/target/release/pgrunbook
else
    cargo build --quiet
    bin=$PWD/target/debug/pgrunbook
fi
pgr() { "$bin" "$@"; }
port_of() { [ "$1" = pg-bases2 ] && echo 27432 || echo 27433; }
now_ms() { date +%s%3N; }
export PGPASSWORD=postgres_pass PGCONNECT_TIMEOUT=1

watcher=
cleanup() {
    [ -n "$watcher" ] && kill "$watcher" 2>/dev/null && wait "$watcher" 2>/dev/null || true
    [ "${KEEP:-}" = 1 ] || pgr lab down --volumes >/dev/null 2>&1 || true
}
trap cleanup EXIT

pgr lab down --volumes >/dev/null 2>&1 || true
pgr lab up >/dev/null
pgr run setup >/dev/null
# The binary itself in the background, not the `pgr` function: `$!` of a function is a subshell,
# and killing it would leave the watcher running (holding its lock for the next run).
"$bin" watch > "$out/watch.log" 2>&1 &
watcher=$!
for _ in $(seq 600); do grep -q "acting: holds the lease" "$out/watch.log" && break; sleep 0.1; done
grep -q "acting: holds the lease" "$out/watch.log" || {
    echo "the watcher did not start acting within 60 s:" >&2; cat "$out/watch.log" >&2; exit 1; }

primary() {
    for n in pg-bases2 pg-replica; do
        if [ "$(psql -h 127.0.0.1 -p "$(port_of $n)" -U postgres -d bases2_proyectos -tAc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]; then
            echo $n; return
        fi
    done
}

rows=()
totals=()
for r in $(seq 1 "$ROUNDS"); do
    p=$(primary)
    [ "$p" = pg-bases2 ] && s=pg-replica || s=pg-bases2
    sport=$(port_of $s)
    sleep 1   # the watcher has seen the standby stream since the last failback
    done_before=$(grep -c "failover done" "$out/watch.log" || true)
    t0=$(now_ms)
    docker kill -s KILL "benchw-$p" >/dev/null &
    killer=$!
    while :; do
        if psql -h 127.0.0.1 -p "$sport" -U postgres -d bases2_proyectos -tAc 'SELECT pg_current_xact_id()' >/dev/null 2>&1; then
            t1=$(now_ms); break
        fi
        [ $(( $(now_ms) - t0 )) -gt 60000 ] && { echo "round $r: no write accepted on $s in 60 s" >&2; exit 1; }
        sleep 0.05
    done
    wait "$killer"
    until [ "$(grep -c "failover done" "$out/watch.log" || true)" -gt "$done_before" ]; do sleep 0.1; done
    # The watcher's failover run: its start time and its own time to writes.
    read -r start_ts ttw < <(pgr journal --last 5 --json | jq -r '
        [.[] | .fields | select(.runbook == "failover")] as $f
        | ($f | map(select(.event == "start")) | first | .ts) + " " +
          ($f | map(select(.event == "end")) | first | .metrics.time_to_writes_ms | tostring)')
    start_ms=$(date -d "$start_ts" +%s%3N)
    total=$((t1 - t0)); detect=$((start_ms - t0))
    rows+=("| $r | $p | $total | $detect | $ttw |")
    totals+=("$total")
    echo "round $r: killed $p, write accepted on $s after $total ms (detection $detect ms, failover runbook to writes $ttw ms)" >&2
    pgr run failback >/dev/null
done

sorted=$(printf '%s\n' "${totals[@]}" | sort -n)
n=${#totals[@]}
median=$(echo "$sorted" | awk -v n="$n" 'NR == int((n + 1) / 2) { a = $1 } NR == int(n / 2) + 1 { b = $1 } END { print (n % 2 ? a : (a + b) / 2) }')
worst=$(echo "$sorted" | tail -1)
{
    echo "| round | killed | kill to first accepted write (ms) | detection: kill to failover start (ms) | failover start to writes (ms) |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "median $median ms, worst $worst ms over $n kills ($PROFILE build, default watch settings)"
} | tee "$out/watch.md"
