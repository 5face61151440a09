#!/usr/bin/env bash
# Clients follow the primary (issue 21): from the start of `docker kill -s KILL` of the primary,
# under `pgrunbook watch`, to the first write an application gets accepted, two ways at once:
#   * alias: an application container on the [clients] network writes through `pg-primary`
#     (psql, a new connection per write, connect_timeout=2, reconnecting on error);
#   * haproxy: psql on the host writes through contrib/haproxy.cfg's primary port (a real HAProxy
#     from Debian's package, checks every 500 ms on the watcher's health endpoints).
# Only writes started after the kill count. Over ROUNDS kills; each round ends with a failback.
# On a lab of its own (containers benchc-*, ports 29432/29433/29379, health 29008/29009,
# HAProxy 29500/29501; a user's lab is untouched).
#
#   bench/clients.sh                 # 5 kills, release build
#   ROUNDS=7 PROFILE=debug bench/clients.sh
#   KEEP=1 (leave the lab up afterwards)
#
# Prints a Markdown table, the medians and worsts (also in target/bench/clients.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
scripts/build-haproxy-image.sh
ROUNDS=${ROUNDS:-5}
PROFILE=${PROFILE:-release}
out=$PWD/target/bench
mkdir -p "$out"
export PGRUNBOOK_CONFIG=$out/clients.toml
export PGRUNBOOK_DATA_DIR=$out/clients-data
cat > "$PGRUNBOOK_CONFIG" <<TOML
[nodes.pg-bases2]
container = "benchc-pg-bases2"
host = "127.0.0.1"
port = 29432
slot = "primary1"
init = "primary"
health = "127.0.0.1:29008"

[nodes.pg-replica]
container = "benchc-pg-replica"
host = "127.0.0.1"
port = 29433
slot = "replica1"
init = "standby"
health = "127.0.0.1:29009"

[redis]
url = "redis://127.0.0.1:29379"
prefix = "benchc"

[lab]
network = "benchc-net"
repo_volume = "benchc-pgbackrest"
redis_container = "benchc-redis"
redis_port = 29379
label = "benchc"

[clients]
network = "${APPNET:-benchc-app}"
TOML

if [ "$PROFILE" = release ]; then
    cargo build --release --quiet
    bin=$PWD/target/release/pgrunbook
else
    cargo build --quiet
    bin=$PWD/target/debug/pgrunbook
fi
pgr() { "$bin" "$@"; }
now_ms() { date +%s%3N; }
export PGPASSWORD=postgres_pass

sed -e 's/bind \*:5000/bind 127.0.0.1:29500/' -e 's/bind \*:5001/bind 127.0.0.1:29501/' \
    -e 's/127.0.0.1:5432 check port 8008/127.0.0.1:29432 check port 29008/' \
    -e 's/127.0.0.1:5433 check port 8009/127.0.0.1:29433 check port 29009/' \
    ${HA_CONNECT:+-e "s/timeout connect 2s/timeout connect $HA_CONNECT/"} \
    ${HA_LOG:+-e "s/^    maxconn 1000/    maxconn 1000\n    log stdout format raw local0/" -e "s/^    log global/    log global\n    option tcplog/"} \
    contrib/haproxy.cfg > "$out/haproxy.cfg"

watcher=
cleanup() {
    [ -n "$watcher" ] && kill "$watcher" 2>/dev/null && wait "$watcher" 2>/dev/null || true
    docker logs benchc-haproxy >"$out/haproxy.log" 2>&1 || true
    docker rm -f benchc-app benchc-haproxy >/dev/null 2>&1 || true
    if [ "${KEEP:-}" != 1 ]; then
        pgr lab down --volumes >/dev/null 2>&1 || true
        docker network rm "${APPNET:-benchc-app}" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

cleanup
pgr lab up >/dev/null
pgr run setup >/dev/null
psql -h 127.0.0.1 -p 29432 -U postgres -d bases2_proyectos -qc 'CREATE TABLE IF NOT EXISTS bench_app (n bigint)'
"$bin" watch > "$out/clients-watch.log" 2>&1 &
watcher=$!
for _ in $(seq 600); do grep -q "acting: holds the lease" "$out/clients-watch.log" && break; sleep 0.1; done
docker run -d --name benchc-haproxy --network host \
    -v "$out/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" pgrunbook-haproxy:trixie >/dev/null
# The application: one write per connection through pg-primary, "ok START END TIMELINE" when
# accepted (the timeline of the server that accepted it).
docker run -d --name benchc-app --network "${APPNET:-benchc-app}" --entrypoint bash pgrunbook-lab:17 -c \
  "while true; do t0=\$(date +%s%3N); if psql 'host=pg-primary port=5432 user=postgres password=postgres_pass dbname=bases2_proyectos connect_timeout=2 target_session_attrs=read-write' -qtA -c 'INSERT INTO bench_app VALUES (1)' -c 'SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)' >/tmp/a 2>/dev/null; then echo \"ok \$t0 \$(date +%s%3N) \$(cat /tmp/a)\"; else sleep 0.02; fi; done" >/dev/null

primary() {
    for p in 29432 29433; do
        [ "$(psql -h 127.0.0.1 -p $p -U postgres -d bases2_proyectos -tAc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ] && { [ $p = 29432 ] && echo pg-bases2 || echo pg-replica; return; }
    done
}
# The first write through HAProxy started after $1 and accepted: its end time.
haproxy_write_after() {
    local t0 a
    while :; do
        a=$(now_ms)
        if PGCONNECT_TIMEOUT=${HA_CLIENT_TIMEOUT:-2} psql -h 127.0.0.1 -p 29500 -U postgres -d bases2_proyectos -qtAc 'INSERT INTO bench_app VALUES (2)' >/dev/null 2>>"$out/haproxy-attempts.log"; then
            [ "$a" -gt "$1" ] && { now_ms; return; }
        else
            echo "attempt at +$((a - $1)) ms failed after $(( $(now_ms) - a )) ms" >>"$out/haproxy-attempts.log"
            sleep 0.02
        fi
        [ $(( $(now_ms) - $1 )) -gt 60000 ] && { echo 0; return; }
    done
}

rows=(); alias_t=(); ha_t=()
for r in $(seq 1 "$ROUNDS"); do
    p=$(primary)
    sleep 2   # the watcher has seen the standby stream; HAProxy's checks are settled
    done_before=$(grep -c "failover done" "$out/clients-watch.log" || true)
    t0=$(now_ms)
    if [ -n "${POLL:-}" ]; then
        # Every 50 ms for 4 s: each node's /primary and whether its published port takes a query.
        ( for _ in $(seq 80); do
            for hp in 29008:29432 29009:29433; do
                c=$(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:${hp%%:*}/primary" || true)
                q=$(PGCONNECT_TIMEOUT=2 psql -h 127.0.0.1 -p "${hp##*:}" -U postgres -d bases2_proyectos -tAc 'SELECT NOT pg_is_in_recovery()' 2>&1 | head -c 40 | tr '\n' ' ' || true)
                echo "+$(( $(now_ms) - t0 )) ${hp##*:} /primary=$c pg=$q"
            done
            sleep 0.05
        done ) >"$out/poll-$r.log" 2>&1 &
    fi
    docker kill -s KILL "benchc-$p" >/dev/null &
    killer=$!
    ha_end=$(haproxy_write_after "$t0")
    wait "$killer"
    until [ "$(grep -c "failover done" "$out/clients-watch.log" || true)" -gt "$done_before" ]; do sleep 0.1; done
    # The first write accepted by the new primary (its address on the applications' network):
    # a write started just after the kill can still reach the old primary before it dies.
    # (Its timeline tells it from the old primary, whose address the new one may have taken.)
    np=$(primary)
    np_port=29432; [ "$np" = pg-replica ] && np_port=29433
    np_addr=$(psql -h 127.0.0.1 -p $np_port -U postgres -d bases2_proyectos -tAc 'SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)')
    alias_end=$(docker logs benchc-app 2>/dev/null | awk -v t="$t0" -v a="$np_addr" '$1 == "ok" && $2 > t && $4 == a { print $3; exit }')
    late=$(docker logs benchc-app 2>/dev/null | awk -v t="$alias_end" -v a="$np_addr" '$1 == "ok" && $2 > t && $4 != a' | wc -l)
    [ "$late" = 0 ] || echo "round $r: $late write(s) accepted elsewhere than $np after its first" >&2
    a=$((alias_end - t0)); h=$((ha_end - t0))
    rows+=("| $r | $p | $a | $h |"); alias_t+=("$a"); ha_t+=("$h")
    echo "round $r: killed $p; alias $a ms, haproxy $h ms" >&2
    pgr run failback >/dev/null
done

stats() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); print "median " m " ms, worst " v[NR] " ms" }'; }
{
    echo "| round | killed | alias pg-primary: kill to first accepted write (ms) | HAProxy: kill to first accepted write (ms) |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "alias: $(stats "${alias_t[@]}"); HAProxy (checks every 500 ms): $(stats "${ha_t[@]}"); ${#alias_t[@]} kills, $PROFILE build"
} | tee "$out/clients.md"
