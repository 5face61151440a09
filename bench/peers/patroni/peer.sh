#!/usr/bin/env bash
# bench/peers adapter for Patroni (see ../README.md for the interface).
#
#   PORT1=29442 PORT2=29443 SETTINGS=defaults bench/peers/patroni/peer.sh build|up|switchover|rejoin NODE|procs|down
#
# Topology: peers-patroni-etcd (a single etcd member, in its own container so that killing a node
# does not kill the DCS), peers-patroni-n1 and peers-patroni-n2 (Patroni as the main process, run
# under docker-init; Patroni starts and stops PostgreSQL 17), all on network peers-patroni-net.
# One image, pgrunbook-peer-patroni:17, built from Debian trixie's packages (Dockerfile here).
#
# SETTINGS (Patroni's bootstrap.dcs, written into etcd when n1 initialises the cluster):
#   defaults    ttl=30 loop_wait=10 retry_timeout=10: Patroni's own defaults
#               (patroni/config.py, Config.__DEFAULT_CONFIG).
#   aggressive  ttl=20 loop_wait=1 retry_timeout=3: the smallest values Patroni accepts.
#               Source: Patroni 4.0.7 as packaged by Debian (/usr/lib/python3/dist-packages/patroni/):
#               validator.py validates bootstrap.dcs with IntValidator(min=20) for ttl, min=1 for
#               loop_wait and min=3 for retry_timeout; config.py (Config._validate_and_adjust_timeouts)
#               raises anything smaller to those minimums and enforces the rule
#               "loop_wait + 2*retry_timeout <= ttl" (here 1 + 2*3 = 7 <= 20). The documentation
#               (docs/dynamic_configuration.rst, "ttl ... can't be smaller than 20", "retry_timeout
#               ... can't be smaller than 3", "loop_wait ... can't be smaller than 1") says the same.
#               Failure detection is bounded by ttl (the leader key's etcd lease), so ttl=20 is what
#               matters; loop_wait=1 makes each node act on it within a second.
#
# stdout carries only what the README names (rejoin's method, procs' lines); progress goes to stderr.
set -euo pipefail

tool=patroni
image=pgrunbook-peer-patroni:17
etcd=peers-$tool-etcd
scope=bench
PORT1=${PORT1:-29442}
PORT2=${PORT2:-29443}
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"

# patronictl from whichever node container is running.
patronictl() {
  local n
  for n in n1 n2; do
    if running "$(ctr $n)"; then
      docker exec "$(ctr $n)" patronictl -c /etc/patroni.yml "$@"
      return
    fi
  done
  echo "no node container is running" >&2
  return 1
}

# "member role state" lines, e.g. "n1 Leader running", "n2 Replica streaming".
members() {
  patronictl list -f json "$scope" 2>/dev/null | jq -r '.[] | "\(.Member) \(.Role) \(.State)"' 2>/dev/null
}
show_cluster() { log "cluster as Patroni sees it:"; patronictl list "$scope" >&2 2>/dev/null || true; }
leader() { members | awk '$2 == "Leader" && $3 == "running" {print $1}'; }

is_leader() { members | grep -qx "$1 Leader running"; }
is_streaming_member() { members | grep -qx "$1 Replica streaming"; }
# $2 streams from $1: pg_stat_replication on $1 (Patroni's application_name is the member name).
streams_from() {
  [ "$(sql "$1" "select count(*) from pg_stat_replication where application_name = '$2' and state = 'streaming'")" = 1 ] \
    && [ "$(sql "$2" 'select pg_is_in_recovery()')" = t ]
}
healthy_pair() { # primary standby
  is_leader "$1" && is_streaming_member "$2" && accepts_writes "$1" && streams_from "$1" "$2"
}

cmd_down() {
  remove_all "$(ctr n1)" "$(ctr n2)" "$etcd" -- "$(ctr n1)-data" "$(ctr n2)-data"
}

start_node() { # node
  local n=$1 ttl lw rt
  case "$SETTINGS" in
    defaults)   ttl=30 lw=10 rt=10 ;;
    aggressive) ttl=20 lw=1 rt=3 ;;
    *) die "SETTINGS must be 'defaults' or 'aggressive', not '$SETTINGS'" ;;
  esac
  docker run -d --init --name "$(ctr "$n")" --hostname "$(ctr "$n")" --network "$net" \
    --label pgrunbook.peer=$tool \
    -p "127.0.0.1:$(port_of "$n"):5432" \
    -v "$(ctr "$n")-data:/var/lib/postgresql/vol" \
    -e ETCD_HOST="$etcd:2379" -e PATRONI_TTL=$ttl -e PATRONI_LOOP_WAIT=$lw -e PATRONI_RETRY_TIMEOUT=$rt \
    "$image" patroni "$n" >/dev/null || die "cannot start container $(ctr "$n")"
  log "started $(ctr "$n") (SETTINGS=$SETTINGS: ttl=$ttl loop_wait=$lw retry_timeout=$rt)"
}

etcd_healthy() { docker exec "$etcd" etcdctl --endpoints=http://127.0.0.1:2379 endpoint health >/dev/null 2>&1; }

cmd_up() {
  case "$SETTINGS" in defaults|aggressive) ;; *) die "SETTINGS must be 'defaults' or 'aggressive', not '$SETTINGS'" ;; esac
  docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing: run '$0 build' first"
  cmd_down
  docker network create "$net" >/dev/null || die "cannot create network $net"
  docker volume create "$(ctr n1)-data" >/dev/null && docker volume create "$(ctr n2)-data" >/dev/null \
    || die "cannot create the volumes"
  docker run -d --init --name "$etcd" --hostname "$etcd" --network "$net" --label pgrunbook.peer=$tool \
    "$image" etcd >/dev/null || die "cannot start container $etcd"
  wait_for 60 "etcd ($etcd) is healthy" etcd_healthy
  start_node n1
  wait_for 120 "n1 is Patroni's leader and accepts writes on 127.0.0.1:$PORT1" \
    eval 'is_leader n1 && accepts_writes n1'
  start_node n2
  wait_for 120 "n2 streams from n1 and Patroni reports the cluster healthy" healthy_pair n1 n2
}

cmd_switchover() {
  local old new
  old=$(leader)
  [ -n "$old" ] || die "switchover: Patroni reports no running leader"
  new=$(other_of "$old")
  is_streaming_member "$new" || die "switchover: $new is not a streaming replica (patronictl list: $(members | tr '\n' ';'))"
  log "switchover from $old to $new"
  patronictl switchover --leader "$old" --candidate "$new" --force "$scope" >&2 \
    || die "patronictl switchover --leader $old --candidate $new failed"
  wait_for 120 "$new is the leader and accepts writes, $old streams from it" healthy_pair "$new" "$old"
}

cmd_rejoin() {
  local n=${1:-} c other lines0 method newlog
  [ -n "$n" ] || die "usage: $0 rejoin n1|n2"
  other=$(other_of "$n"); c=$(ctr "$n")
  docker container inspect "$c" >/dev/null 2>&1 || die "rejoin: container $c does not exist"
  running "$c" && die "rejoin: container $c is running (expected it killed)"
  wait_for 120 "$other is the leader after the failover and accepts writes" eval "is_leader $other && accepts_writes $other"
  lines0=$(docker logs "$c" 2>&1 | wc -l)
  docker start "$c" >/dev/null || die "rejoin: docker start $c failed"
  log "started $c again; Patroni rejoins it on its own (use_pg_rewind: true)"
  local t0=$SECONDS
  until streams_from "$other" "$n" && is_streaming_member "$n"; do
    if (( SECONDS - t0 >= 60 )); then break; fi
    sleep 0.5
  done
  if streams_from "$other" "$n" && is_streaming_member "$n"; then
    log "ok after $((SECONDS - t0))s: $n streams from $other"
    newlog=$(docker logs "$c" 2>&1 | tail -n +"$((lines0 + 1))")
    # Patroni's own log lines (patroni/postgresql/rewind.py, patroni/ha.py): a new copy of the
    # data directory wins over a rewind attempt that came before it.
    if grep -qE 'replica has been created using|bootstrapped from leader' <<<"$newlog"; then
      method=clone
    elif grep -q 'pg_rewind exit code=0' <<<"$newlog"; then
      method=rewind
    else
      method=automatic
    fi
  else
    log "$n did not rejoin within 60s: running patronictl reinit"
    # --wait: patronictl returns when Patroni reports the reinit finished (bounded by timeout);
    # retried because Patroni refuses a reinit while the member is still busy starting.
    local try ok=0 out
    for try in 1 2 3; do
      if out=$(timeout 120 docker exec "$(ctr "$other")" patronictl -c /etc/patroni.yml reinit --force --wait "$scope" "$n" 2>&1); then
        echo "$out" >&2; ok=1; break
      fi
      log "patronictl reinit $n failed (attempt $try of 3): $(tail -n 1 <<<"$out")"; sleep 5
    done
    (( ok )) || die "rejoin: patronictl reinit $n failed 3 times"
    wait_for 120 "$n (reinitialised) streams from $other" eval "streams_from $other $n && is_streaming_member $n"
    method=reinit
  fi
  log "rejoin method: $method"
  echo "$method"
}

cmd_procs() {
  local n c found=0
  for n in n1 n2; do
    c=$(ctr "$n")
    if ! running "$c"; then log "procs: $c is not running"; continue; fi
    docker top "$c" -eo pid,args | awk -v l="patroni-$n" 'NR > 1 && $0 ~ /\/usr\/bin\/patroni / {print $1 "\t" l}'
    found=1
  done
  if running "$etcd"; then
    docker top "$etcd" -eo pid,args | awk 'NR > 1 && $2 ~ /(^|\/)etcd$/ {print $1 "\tetcd"}'
    found=1
  else
    log "procs: $etcd is not running"
  fi
  (( found )) || die "procs: none of the containers runs"
}

peer_main "$@"
