#!/usr/bin/env bash
# bench/peers adapter for pgrunbook itself (see bench/peers/README.md): the lab's image, a config
# file of its own (nodes n1 and n2, containers peers-pgrunbook-*, database bench, password
# bench), `pgrunbook watch` at its default settings for unattended failover, `run switchover`
# for the planned switchover and `run failback` (pg_rewind) for the rejoin.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
state=$root/target/bench/peers/pgrunbook
mkdir -p "$state"
export PGRUNBOOK_CONFIG=$state/pgrunbook.toml
export PGRUNBOOK_DATA_DIR=$state/data
bin=$root/target/release/pgrunbook
PORT1=${PORT1:-29432}
PORT2=${PORT2:-29433}
REDIS_PORT=${REDIS_PORT:-29439}
log() { echo "pgrunbook/peer.sh: $*" >&2; }

cat > "$PGRUNBOOK_CONFIG" <<TOML
[cluster]
database = "bench"
password = "bench"

[nodes.n1]
container = "peers-pgrunbook-n1"
host = "127.0.0.1"
port = $PORT1
slot = "n1"
init = "primary"

[nodes.n2]
container = "peers-pgrunbook-n2"
host = "127.0.0.1"
port = $PORT2
slot = "n2"
init = "standby"

[redis]
url = "redis://127.0.0.1:$REDIS_PORT"
prefix = "peers-pgrunbook"

[lab]
network = "peers-pgrunbook-net"
repo_volume = "peers-pgrunbook-pgbackrest"
redis_container = "peers-pgrunbook-redis"
redis_port = $REDIS_PORT
label = "peers-pgrunbook"
TOML

pgr() { "$bin" "$@"; }

stop_watcher() {
    if [ -f "$state/watch.pid" ]; then
        kill "$(cat "$state/watch.pid")" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$(cat "$state/watch.pid")" 2>/dev/null || break; sleep 0.1; done
        rm -f "$state/watch.pid"
    fi
}

start_watcher() {
    stop_watcher
    : > "$state/watch.log"
    # The binary itself, not a function: its pid is the watcher's (the resources are its own).
    nohup "$bin" watch >> "$state/watch.log" 2>&1 &
    echo $! > "$state/watch.pid"
    for _ in $(seq 600); do grep -q "acting: holds the lease" "$state/watch.log" && return; sleep 0.1; done
    log "the watcher did not start acting within 60 s:"; cat "$state/watch.log" >&2; exit 1
}

case "${1:-}" in
    build)
        [ -x "$bin" ] || { log "$bin is missing: run cargo build --release"; exit 1; }
        pgr lab build >/dev/null ;;
    up)
        stop_watcher
        pgr lab down --volumes >/dev/null 2>&1 || true
        pgr lab up >/dev/null
        pgr run setup >/dev/null
        start_watcher
        sleep 1 ;;   # a probe of the watcher has seen the standby stream
    switchover)
        pgr run switchover >/dev/null ;;
    rejoin)
        # failback finds the fenced old primary itself, rewinds it, and starts it as a standby.
        pgr run failback >/dev/null
        pgr journal --last 20 --json | jq -r '[.[] | .fields | select(.runbook == "failback" and .event == "end")] | first | .metrics.method // "unknown"' ;;
    procs)
        [ -f "$state/watch.pid" ] && printf '%s\tpgrunbook watch\n' "$(cat "$state/watch.pid")" ;;
    down)
        stop_watcher
        pgr lab down --volumes >/dev/null 2>&1 || true ;;
    *)
        echo "usage: peer.sh build|up|switchover|rejoin NODE|procs|down" >&2; exit 2 ;;
esac
