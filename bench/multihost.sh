#!/usr/bin/env bash
# Failover time across Docker engines next to one engine (docs/multi-host.md): a pair on two
# simulated hosts (`pgrunbook lab hosts`, a network namespace and a dockerd each; root needed),
# a pair on the machine's own engine, and three nodes on three simulated hosts. Each round: kill -9 of the primary's container, then
# `pgrunbook run failover` (timed: the whole process, and the time to writes the runbook
# prints), then
# `run failback` (not timed) so the next round starts from a pair again; the roles alternate.
#
#   bench/multihost.sh            # 5 rounds each
#   ROUNDS=3 bench/multihost.sh
#
# Uses the debug build (target/debug/pgrunbook) unless PGRUNBOOK=path is given: both layouts
# run the same binary, so the comparison holds. A third layout: three nodes on three engines,
# where failover chooses between two standbys and the third follows the new primary (the time
# to writes comes before the follow; the whole process includes it); `failback --set node=`
# rejoins the old primary before the next round.
# A script, not a test: timings on a shared machine belong in a report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
ROUNDS=${ROUNDS:-5}
out=$PWD/target/bench/multihost
mkdir -p "$out"
[ -n "${PGRUNBOOK:-}" ] || cargo build --quiet
pgr=${PGRUNBOOK:-$PWD/target/debug/pgrunbook}
export LAB_SUBNET=10.213.250
name=bmh
ms() { echo $(($(date +%s%N) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

common() { # prefix redis_port
    cat <<TOML
[redis]
url = "redis://127.0.0.1:$2"
prefix = "$1"

[lab]
network = "$1-net"
repo_volume = "$1-pgbackrest"
redis_container = "$1-redis"
redis_port = $2
label = "$1"
TOML
}

cat >"$out/one.toml" <<TOML
[nodes.a]
container = "bench-mh1-a"
host = "127.0.0.1"
port = 25632
slot = "a"
init = "primary"

[nodes.b]
container = "bench-mh1-b"
host = "127.0.0.1"
port = 25633
slot = "b"
init = "standby"

$(common bench-mh1 26579)
TOML

cat >"$out/two.toml" <<TOML
[nodes.a]
container = "bench-mh2-a"
docker = "tcp://$LAB_SUBNET.2:2375"
host = "$LAB_SUBNET.2"
port = 5432
slot = "a"
init = "primary"

[nodes.b]
container = "bench-mh2-b"
docker = "tcp://$LAB_SUBNET.3:2375"
host = "$LAB_SUBNET.3"
port = 5432
slot = "b"
init = "standby"

$(common bench-mh2 26580)
TOML

{
    for n in a b c; do
        i=2
        [ $n = b ] && i=3
        [ $n = c ] && i=4
        init=standby
        [ $n = a ] && init=primary
        cat <<TOML
[nodes.$n]
container = "bench-mh3-$n"
docker = "tcp://$LAB_SUBNET.$i:2375"
host = "$LAB_SUBNET.$i"
port = 5432
slot = "$n"
init = "$init"

TOML
    done
    common bench-mh3 26581
} >"$out/three.toml"

cleanup() {
    for l in one two three; do
        PGRUNBOOK_CONFIG=$out/$l.toml PGRUNBOOK_DATA_DIR=$out/$l-data \
            "$pgr" lab down --volumes >/dev/null 2>&1 || true
    done
    "$pgr" lab hosts down "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$pgr" lab hosts up "$name" 3 >/dev/null

# layout -> rounds of "wall_ms total_ms"
run_layout() {
    local l=$1
    export PGRUNBOOK_CONFIG=$out/$l.toml PGRUNBOOK_DATA_DIR=$out/$l-data
    "$pgr" lab up >/dev/null
    "$pgr" run setup >/dev/null
    local primary=a kill_cmd prefix=bench-mh1
    [ "$l" = two ] && prefix=bench-mh2
    [ "$l" = three ] && prefix=bench-mh3
    for round in $(seq 1 "$ROUNDS"); do
        if [ "$l" = one ]; then
            kill_cmd=(docker)
        else
            local i=2
            [ "$primary" = b ] && i=3
            [ "$primary" = c ] && i=4
            kill_cmd=(docker -H "tcp://$LAB_SUBNET.$i:2375")
        fi
        "${kill_cmd[@]}" kill -s KILL "$prefix-$primary" >/dev/null
        local t0 t1
        t0=$(ms)
        "$pgr" run failover >"$out/$l-failover-$round.log" 2>&1
        t1=$(ms)
        # Each step's time, from the journal, beside the output.
        "$pgr" journal "$("$pgr" journal --last 1 --json | sed -n 's/.*"run_id": *"\([0-9]*\)".*/\1/p' | head -n 1)" >>"$out/$l-failover-$round.log" 2>&1 || true
        # "<node> is the primary and accepts writes, N ms after the start."
        local total new
        total=$(sed -n 's/.* accepts writes, \([0-9]*\) ms after the start.*/\1/p' "$out/$l-failover-$round.log" | head -n 1)
        new=$(sed -n 's/^\([a-z]*\) is the primary and accepts writes.*/\1/p' "$out/$l-failover-$round.log" | head -n 1)
        [ -n "$total" ] || total="?"
        [ -n "$new" ] || { cat "$out/$l-failover-$round.log" >&2; exit 1; }
        echo "$((t1 - t0)) $total" >>"$out/$l.rounds"
        "$pgr" run failback --set node="$primary" >/dev/null 2>&1
        primary=$new
    done
    "$pgr" lab down --volumes >/dev/null 2>&1
}

rm -f "$out"/*.rounds
run_layout one
run_layout two
run_layout three

report() {
    echo "| layout | rounds | failover, whole process (median ms) | time to writes, as the runbook prints it (median ms) |"
    echo "|---|---|---|---|"
    for l in one two three; do
        local label="two nodes, one engine"
        [ "$l" = two ] && label="two nodes, two engines (TCP)"
        [ "$l" = three ] && label="three nodes, three engines (TCP; the third follows)"
        echo "| $label | $(wc -l <"$out/$l.rounds") | $(cut -d' ' -f1 "$out/$l.rounds" | median) | $(cut -d' ' -f2 "$out/$l.rounds" | grep -v '?' | median) |"
    done
}
report | tee "$out/report.md"
