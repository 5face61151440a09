#!/usr/bin/env bash
# pgrunbook against Patroni, repmgr and pg_auto_failover on this machine, in one run (issue 10).
# See bench/peers/README.md for the adapters; this is the driver.
#
#   bench/peers/run.sh                   # quick mode: one round of each measure (< 15 min)
#   MODE=full bench/peers/run.sh         # ROUNDS rounds (default 5), 60 s idle windows
#   TOOLS="pgrunbook repmgr" bench/peers/run.sh
#   NO_DOCS=1 bench/peers/run.sh         # leave docs/benchmarks.md alone
#
# A round, for each tool in turn (the tools alternate, round after round, so that a slow moment
# of the machine falls on all of them rather than on one):
#   1. `up` with its default settings; its own processes sampled for IDLE_S seconds, idle;
#   2. unattended failover: the probe writes every 50 ms to both nodes' published ports; the
#      primary's container is killed with SIGKILL; measured from the kill to the first write
#      the other node acknowledges; the processes are sampled meanwhile; acknowledged commits
#      missing on the new primary are counted;
#   3. rejoin: `rejoin` of the killed node, timed until it streams, with the method it used;
#   4. planned switchover under the probe: the longest time with no acknowledged write, the
#      command's whole time, acknowledged commits missing afterwards;
#   5. for the peers, `up` again with the most aggressive settings their docs allow, and the
#      failover of 2. again (pgrunbook's watch runs at its defaults only).
# Results go to target/bench/peers/results.jsonl; report.py turns them into the tables of
# docs/benchmarks.md (between its peers markers) and target/bench/peers/report.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
scripts/require-docker.sh
MODE=${MODE:-quick}
if [ "$MODE" = full ]; then ROUNDS=${ROUNDS:-5}; IDLE_S=${IDLE_S:-60}; else ROUNDS=${ROUNDS:-1}; IDLE_S=${IDLE_S:-30}; fi
TOOLS=${TOOLS:-pgrunbook patroni repmgr pgaf}
out=$root/target/bench/peers
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
started=$(date +%s)

log() { echo "$(date +%T) peers: $*" >&2; }
now_ms() { date +%s%3N; }
export PGPASSWORD=bench PGCONNECT_TIMEOUT=2 PGOPTIONS='-c client_min_messages=warning'

ports() {   # PORT1 PORT2 of a tool
    case "$1" in
        pgrunbook) echo "29432 29433" ;;
        patroni) echo "29442 29443" ;;
        repmgr) echo "29452 29453" ;;
        pgaf) echo "29462 29463" ;;
    esac
}

log "building pgrunbook (release), the probe, the base image and the peers' images"
cargo build --release --quiet --bin pgrunbook --example peers-probe
probe=$root/target/release/examples/peers-probe
lab/build-image.sh >/dev/null 2>&1
for t in $TOOLS; do
    read -r PORT1 PORT2 <<< "$(ports "$t")"; export PORT1 PORT2
    SETTINGS=defaults bench/peers/$t/peer.sh build
done

current_tool=
cleanup() {
    [ -n "${probe_pid:-}" ] && kill "$probe_pid" 2>/dev/null || true
    [ -n "${sampler_pid:-}" ] && kill "$sampler_pid" 2>/dev/null || true
    [ -n "$current_tool" ] && [ "${KEEP:-}" != 1 ] && bench/peers/$current_tool/peer.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

q() {   # q PORT SQL: one value, or nothing when the node does not answer
    psql -h 127.0.0.1 -p "$1" -U postgres -d bench -tAqc "$2" 2>/dev/null || true
}
primary_of() {   # n1 or n2: the node that is not in recovery
    [ "$(q "$PORT1" 'SELECT pg_is_in_recovery()')" = f ] && { echo n1; return; }
    [ "$(q "$PORT2" 'SELECT pg_is_in_recovery()')" = f ] && { echo n2; return; }
    echo none
}
port_of() { [ "$1" = n1 ] && echo "$PORT1" || echo "$PORT2"; }
other() { [ "$1" = n1 ] && echo n2 || echo n1; }

record() { echo "$1" >> "$results"; }

start_probe() {   # start_probe FILE
    : > "$1"
    "$probe" write "$1" "n1=127.0.0.1:$PORT1" "n2=127.0.0.1:$PORT2" &
    probe_pid=$!
}
stop_probe() { kill "$probe_pid" 2>/dev/null || true; wait "$probe_pid" 2>/dev/null || true; probe_pid=; }
start_sampler() {   # start_sampler TOOL OUT
    python3 bench/peers/sample.py "bench/peers/$1/peer.sh" "$2" &
    sampler_pid=$!
}
stop_sampler() { kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=; }

# The probe's table, made on the primary (it reaches the standby by replication).
make_table() {
    local p; p=$(port_of "$(primary_of)")
    psql -h 127.0.0.1 -p "$p" -U postgres -d bench -qc \
        'CREATE TABLE IF NOT EXISTS bench_probe (id bigint PRIMARY KEY, at timestamptz NOT NULL)' >/dev/null
}

# Waits for the first acknowledged write by node $2 after time $3 in probe file $1; prints its time.
first_ack_after() {
    local file=$1 node=$2 since=$3 deadline=$(( $(now_ms) + 180000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        local t
        t=$(awk -v n="$node" -v s="$since" '$1 == "ack" && $4 == n && $3 > s { print $3; exit }' "$file")
        [ -n "$t" ] && { echo "$t"; return; }
        sleep 0.05
    done
    return 1
}

# The longest time between two acknowledged writes that ends after $2 and starts before $3.
longest_gap() {
    awk -v a="$2" -v b="$3" '$1 == "ack" { if (prev != "" && $3 > a && prev < b && $3 - prev > g) g = $3 - prev; prev = $3 } END { print g + 0 }' "$1"
}

failover() {   # failover TOOL SETTINGS ROUND
    local tool=$1 settings=$2 round=$3 f=$out/$1-$2-$3-failover.probe
    make_table
    local p; p=$(primary_of)
    [ "$p" = none ] && { log "$tool: no primary before the failover"; return 1; }
    local s; s=$(other "$p")
    start_probe "$f"
    sleep 2
    [ "$settings" = defaults ] && start_sampler "$tool" "$out/$tool-failover-$round.res"
    local t0; t0=$(now_ms)
    docker kill -s KILL "peers-$tool-$p" >/dev/null
    local t1
    if ! t1=$(first_ack_after "$f" "$s" "$t0"); then
        stop_probe; [ -n "${sampler_pid:-}" ] && stop_sampler
        log "$tool ($settings): no write accepted on $s within 180 s of the kill"
        record "{\"measure\":\"failover\",\"tool\":\"$tool\",\"settings\":\"$settings\",\"round\":$round,\"ms\":null,\"error\":\"no write accepted within 180 s\"}"
        return 0
    fi
    sleep 2
    stop_probe
    [ -n "${sampler_pid:-}" ] && stop_sampler
    local lost; read -r lost acked _ <<< "$("$probe" lost "$f" "127.0.0.1:$(port_of "$s")")"
    log "$tool ($settings): killed $p, $s accepted a write after $((t1 - t0)) ms; $lost of $acked acknowledged writes missing"
    record "{\"measure\":\"failover\",\"tool\":\"$tool\",\"settings\":\"$settings\",\"round\":$round,\"ms\":$((t1 - t0)),\"lost\":$lost,\"acked\":$acked,\"killed\":\"$p\"}"
    echo "$p"
}

rejoin() {   # rejoin TOOL NODE ROUND
    local tool=$1 node=$2 round=$3
    local t0; t0=$(now_ms)
    local method; method=$(bench/peers/$tool/peer.sh rejoin "$node" | tail -1)
    local ms=$(( $(now_ms) - t0 ))
    log "$tool: $node rejoined as a standby in $ms ms ($method)"
    record "{\"measure\":\"rejoin\",\"tool\":\"$tool\",\"round\":$round,\"ms\":$ms,\"method\":\"$method\"}"
}

switchover() {   # switchover TOOL ROUND
    local tool=$1 round=$2 f=$out/$1-$2-switchover.probe
    make_table
    local before; before=$(primary_of)
    start_probe "$f"
    sleep 2
    local t0; t0=$(now_ms)
    bench/peers/$tool/peer.sh switchover
    local t1; t1=$(now_ms)
    sleep 2
    stop_probe
    local after; after=$(primary_of)
    local gap; gap=$(longest_gap "$f" "$t0" "$t1")
    local lost; read -r lost acked _ <<< "$("$probe" lost "$f" "127.0.0.1:$(port_of "$after")")"
    log "$tool: switchover $before -> $after: writes unavailable $gap ms, command $((t1 - t0)) ms; $lost of $acked acknowledged writes missing"
    record "{\"measure\":\"switchover\",\"tool\":\"$tool\",\"round\":$round,\"unavailable_ms\":$gap,\"total_ms\":$((t1 - t0)),\"lost\":$lost,\"acked\":$acked,\"from\":\"$before\",\"to\":\"$after\"}"
}

idle() {   # idle TOOL ROUND
    local tool=$1 round=$2 res=$out/$1-idle-$2.res
    start_sampler "$tool" "$res"
    sleep "$IDLE_S"
    stop_sampler
    record "{\"measure\":\"idle\",\"tool\":\"$tool\",\"round\":$round,\"seconds\":$IDLE_S,\"res\":$(cat "$res")}"
}

for round in $(seq 1 "$ROUNDS"); do
    for tool in $TOOLS; do
        read -r PORT1 PORT2 <<< "$(ports "$tool")"; export PORT1 PORT2
        current_tool=$tool
        peer=bench/peers/$tool/peer.sh
        log "round $round: $tool, default settings"
        SETTINGS=defaults $peer up
        idle "$tool" "$round"
        killed=$(failover "$tool" defaults "$round" | tail -1)
        res=$out/$tool-failover-$round.res
        [ -s "$res" ] && record "{\"measure\":\"failover_resources\",\"tool\":\"$tool\",\"round\":$round,\"res\":$(cat "$res")}"
        if [ -n "$killed" ]; then
            rejoin "$tool" "$killed" "$round"
            switchover "$tool" "$round"
        fi
        if [ "$tool" != pgrunbook ]; then
            log "round $round: $tool, aggressive settings"
            SETTINGS=aggressive $peer up
            failover "$tool" aggressive "$round" >/dev/null
        fi
        $peer down
        current_tool=
    done
done

log "done in $(( $(date +%s) - started )) s"
python3 bench/peers/report.py "$results" "$MODE" "$(( $(date +%s) - started ))" > "$out/report.md"
cat "$out/report.md"
[ "${NO_DOCS:-}" = 1 ] || python3 bench/peers/report.py --docs docs/benchmarks.md "$results" "$MODE" "$(( $(date +%s) - started ))"
