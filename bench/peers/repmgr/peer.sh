#!/usr/bin/env bash
# bench/peers adapter for repmgr (see ../README.md for the interface).
#
#   PORT1=29452 PORT2=29453 SETTINGS=defaults bench/peers/repmgr/peer.sh build|up|switchover|rejoin NODE|procs|down
#
# Topology: peers-repmgr-n1 and peers-repmgr-n2 on network peers-repmgr-net, one image
# pgrunbook-peer-repmgr:17 (Debian trixie's postgresql-17-repmgr: repmgr and repmgrd 5.5.0, plus
# openssh for switchover). Each container runs sshd, PostgreSQL and repmgrd (failover=automatic,
# promote_command = repmgr standby promote, follow_command = repmgr standby follow
# --upstream-node-id=%n); its PGDATA is in the named volume peers-repmgr-<node>-data, its
# /etc/repmgr.conf is written on every container start (node.sh, write_repmgr_conf). The
# `repmgr` superuser and database as in repmgr's quickstart, database `bench`, superuser
# postgres with password `bench`; pg_hba allows scram from anywhere, replication included;
# ~postgres/.pgpass (in the image) has the password for every role.
#
# up: n1 initdb + `repmgr primary register`; n2 `repmgr standby clone` + start +
# `repmgr standby register`; repmgrd on both. Asynchronous streaming replication, no slots.
#
# Container main process and split brain: see node.sh. In short, the entrypoint never starts a
# data directory that went down as a primary; after `docker kill` of the primary, `rejoin`
# starts the container (PostgreSQL stays down), then runs `repmgr node rejoin --force-rewind`
# in it (pg_rewind does the crash recovery, then rewinds), then starts repmgrd.
#
# switchover: `repmgr standby switchover` on the standby. repmgr 5.5 needs passwordless SSH from
# the promotion candidate to the current primary for it (it runs `repmgr node status`,
# `repmgr node service --action=stop --checkpoint` and `repmgr node rejoin` there); no option
# avoids it, so the image has openssh and a key pair for postgres made at build time. It returns
# when the new primary takes writes, the old one streams from it, AND repmgrd monitors both in
# their new roles (repmgrd needs up to reconnect_interval to notice: so ~4 s of switchover plus
# ~10 s with the defaults, ~1 s aggressive); see settle() for a repmgrd problem this works around.
#
# SETTINGS (repmgr.conf, applied when the containers are created):
#   defaults    nothing set: repmgr 5.5's defaults (docs: repmgrd-configuration.xml in the
#               package's /usr/share/doc/repmgr-common; code: configdata.c, repmgr.h):
#                 monitor_interval_secs 2, reconnect_attempts 6, reconnect_interval 10 (s),
#                 connection_check_type ping.
#               So a dead primary is noticed within 2 s and given 6 x 10 s to come back: about
#               51 s from the kill to the promotion.
#   aggressive  monitor_interval_secs 1, reconnect_attempts 1, reconnect_interval 1,
#               connection_check_type ping.
#               Source: the docs list the settings and defaults but no lower limits; the code
#               (repmgr 5.5 configdata.c, intminval) rejects anything below 1 for all three
#               numbers, so 1/1/1 is the most aggressive configuration repmgr allows. With
#               reconnect_attempts=1 repmgrd makes one reconnection attempt and no sleep
#               (repmgrd.c, try_reconnect: it sleeps reconnect_interval only between attempts).
#               connection_check_type stays `ping` (PQping on a new connection each
#               monitor_interval_secs): `connection` does a full connect instead, `query` runs
#               SELECT 1 on the open connection, which against a vanished container can block
#               until TCP gives up (bounded by async_query_timeout, 60 s); none is faster than
#               ping, whose connect fails at once when the killed container's name no longer
#               resolves on the docker network.
#               Both profiles: conninfo has connect_timeout=2 (repmgr's quickstart; the
#               docs call 2 its effective minimum; repmgrd adds it to reconnection attempts
#               anyway). Everything else is repmgr's default.
#
# stdout carries only what the README names (rejoin's method, procs' lines); progress goes to stderr.
set -euo pipefail

tool=repmgr
image=pgrunbook-peer-repmgr:17
PORT1=${PORT1:-29452}
PORT2=${PORT2:-29453}
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"

id_of() { case "$1" in n1) echo 1 ;; n2) echo 2 ;; *) die "unknown node '$1' (n1 or n2)" ;; esac; }

# A command as postgres inside a node's container.
in_node() { # node timeout command...
  local n=$1 t=$2; shift 2
  timeout "$t" docker exec -u postgres "$(ctr "$n")" "$@"
}
repmgr_on() { local n=$1; shift; in_node "$n" 30 repmgr -f /etc/repmgr.conf "$@"; }

show_cluster() {
  local n
  for n in n1 n2; do
    running "$(ctr "$n")" || continue
    log "repmgr cluster show / service status on $n:"
    repmgr_on "$n" cluster show >&2 2>&1 || true
    repmgr_on "$n" service status >&2 2>&1 || true
    return
  done
  log "(no node runs)"
}

# $2 streams from $1: $1's walsender for $2 (repmgr sets application_name to the node name) is
# streaming, and $2 is in recovery.
streams_from() {
  [ "$(sql "$1" "select count(*) from pg_stat_replication where application_name = '$2' and state = 'streaming'")" = 1 ] \
    && [ "$(sql "$2" 'select pg_is_in_recovery()')" = t ]
}
# repmgr's own view, from node $3: $1 is the running primary, $2 a running standby attached to
# it (`repmgr cluster show --csv`: id,connection (0 up),recovery type (0 primary, 1 standby); it
# exits 0 only when no node has a problem).
repmgr_roles() { # primary standby asking-node
  local show
  show=$(repmgr_on "$3" cluster show --csv 2>/dev/null) || return 1
  grep -qx "$(id_of "$1"),0,0" <<<"$show" && grep -qx "$(id_of "$2"),0,1" <<<"$show"
}
# repmgrd runs, unpaused, on both nodes and monitors each in its current role: the repmgr
# extension's shared state (what `repmgr service status` reads) has the upstream node id that
# repmgrd sets when it enters a monitoring mode (repmgrd-physical.c: -1 when it monitors a
# primary, the upstream's id when it monitors a standby). After a role change repmgrd needs up to
# reconnect_interval to notice (it is then in its reconnection attempts), and it can get stuck
# (see settle): so waits check this, not just "running".
repmgrd_settled() { # primary standby
  [ "$(DB=repmgr sql "$1" 'select repmgr.repmgrd_is_running() and not repmgr.repmgrd_is_paused() and repmgr.get_upstream_node_id() = -1')" = t ] \
    && [ "$(DB=repmgr sql "$2" "select repmgr.repmgrd_is_running() and not repmgr.repmgrd_is_paused() and repmgr.get_upstream_node_id() = $(id_of "$1")")" = t ]
}
# The pair as the README wants it after a switchover: writes, streaming, repmgr's roles.
streaming_pair() { # primary standby
  accepts_writes "$1" && streams_from "$1" "$2" && repmgr_roles "$1" "$2" "$1"
}
# ... and repmgrd running, unpaused, on both nodes (after up and rejoin).
healthy_pair() { # primary standby
  streaming_pair "$1" "$2" && repmgrd_settled "$1" "$2"
}

# $1 accepts writes and its repmgr.nodes has it as the active primary.
primary_in_metadata() {
  accepts_writes "$1" \
    && [ "$(DB=repmgr sql "$1" "select count(*) from repmgr.nodes where node_id = $(id_of "$1") and type = 'primary' and active")" = 1 ]
}

primary_node() {
  local n
  for n in n1 n2; do
    [ "$(sql "$n" 'select pg_is_in_recovery()' || true)" = f ] && { echo "$n"; return; }
  done
  return 0
}

cmd_down() {
  remove_all "$(ctr n1)" "$(ctr n2)" -- "$(ctr n1)-data" "$(ctr n2)-data"
}

start_node() { # node
  local n=$1
  docker run -d --init --name "$(ctr "$n")" --hostname "$(ctr "$n")" --network "$net" \
    --label pgrunbook.peer=$tool \
    -p "127.0.0.1:$(port_of "$n"):5432" \
    -v "$(ctr "$n")-data:/var/lib/postgresql/vol" \
    -e PEER_NODE_ID="$(id_of "$n")" -e PEER_NODE_NAME="$n" -e PEER_SETTINGS="$SETTINGS" \
    "$image" >/dev/null || die "cannot start container $(ctr "$n")"
  log "started $(ctr "$n") (SETTINGS=$SETTINGS)"
}

sshd_up() { docker exec "$(ctr "$1")" pgrep -x sshd >/dev/null 2>&1; }

cmd_up() {
  case "$SETTINGS" in defaults|aggressive) ;; *) die "SETTINGS must be 'defaults' or 'aggressive', not '$SETTINGS'" ;; esac
  docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing: run '$0 build' first"
  cmd_down
  docker network create "$net" >/dev/null || die "cannot create network $net"
  local n
  for n in n1 n2; do
    docker volume create "$(ctr "$n")-data" >/dev/null || die "cannot create volume $(ctr "$n")-data"
    start_node "$n"
  done
  wait_for 30 "the containers run sshd" eval "sshd_up n1 && sshd_up n2"
  log "n1: initdb, repmgr primary register, repmgrd"
  in_node n1 120 peer-repmgr-node init-primary >&2 || die "init-primary on n1 failed"
  wait_for 30 "n1 accepts writes on 127.0.0.1:$PORT1" accepts_writes n1
  log "n2: repmgr standby clone, start, repmgr standby register, repmgrd"
  in_node n2 120 peer-repmgr-node clone-standby "$(ctr n1)" >&2 || die "clone-standby on n2 failed"
  wait_for 120 "n2 streams from n1, repmgr shows both, repmgrd monitors both" healthy_pair n1 n2
  log "n1 is primary, n2 streams from it"
}

# settle PRIMARY STANDBY: waits (up to 90 s) until STANDBY streams from PRIMARY and repmgrd
# monitors both in these roles (healthy_pair). Known repmgr 5.5 problem, seen in about one of
# three switchovers that follow an earlier one within seconds (defaults): the demoted node's
# repmgrd, once it has reconnected to its restarted PostgreSQL, logs "node is now a standby,
# switching to standby monitoring" / "unable to determine a new primary node" every monitor
# interval for good, though the primary is up, and would never fail over (compare repmgr issues
# #430, #455). A repmgrd that has not taken up its role well after it normally would (up to
# reconnect_interval + monitor_interval_secs: 12 s with the defaults, 2 s aggressive) is
# restarted here, once, and the restart is logged.
settle() {
  local p=$1 sb=$2 t0=$SECONDS restarted=0 n want repair_after
  case "$SETTINGS" in aggressive) repair_after=8 ;; *) repair_after=25 ;; esac
  log "waiting (up to 90s) until $sb streams from $p and repmgrd monitors both in these roles"
  until healthy_pair "$p" "$sb"; do
    if (( SECONDS - t0 >= 90 )); then
      show_cluster
      die "timed out after 90s waiting until $sb streams from $p and repmgrd monitors both in these roles"
    fi
    if (( SECONDS - t0 >= repair_after && ! restarted )) && streaming_pair "$p" "$sb"; then
      for n in "$p" "$sb"; do
        if [ "$n" = "$p" ]; then want=-1; else want=$(id_of "$p"); fi
        if [ "$(DB=repmgr sql "$n" "select repmgr.get_upstream_node_id() = $want")" != t ]; then
          log "WARNING: repmgrd on $n has not taken up its role after ${repair_after}s: restarting it (repmgr issue, see settle)"
          in_node "$n" 20 sh -c 'p=$(cat /tmp/repmgrd.pid) && kill "$p" && for i in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done' >&2 || true
          in_node "$n" 20 peer-repmgr-node start-repmgrd >&2 || die "cannot restart repmgrd on $n"
        fi
      done
      restarted=1
    fi
    sleep 0.5
  done
  log "ok after $((SECONDS - t0))s: $sb streams from $p and repmgrd monitors both"
}

cmd_switchover() {
  local old new
  old=$(primary_node)
  [ -n "$old" ] || { show_cluster; die "switchover: no node accepts writes"; }
  new=$(other_of "$old")
  # repmgr standby switchover pauses repmgrd on both nodes and wants it running there.
  settle "$old" "$new"
  log "switchover from $old to $new (repmgr standby switchover on $new)"
  # standby_reconnect_timeout (60 s, default) bounds its wait for the old primary to reattach.
  in_node "$new" 115 repmgr -f /etc/repmgr.conf standby switchover --verbose >&2 \
    || { show_cluster; die "repmgr standby switchover on $new failed"; }
  wait_for 120 "$new accepts writes, $old streams from it, repmgr shows $new primary and $old standby" \
    streaming_pair "$new" "$old"
  # Beyond the README's "new primary takes writes, old one streams": also until repmgrd monitors
  # both nodes in their new roles, else a kill right after the switchover finds no repmgrd to
  # fail over (it needs up to reconnect_interval to notice a role change: ~10 s with the
  # defaults, ~1 s aggressive, counted in this command's time).
  settle "$new" "$old"
}

cmd_rejoin() {
  local n=${1:-} c other method
  [ -n "$n" ] || die "usage: $0 rejoin n1|n2"
  other=$(other_of "$n"); c=$(ctr "$n")
  docker container inspect "$c" >/dev/null 2>&1 || die "rejoin: container $c does not exist"
  # repmgr standby promote updates the metadata just after pg_promote(): until then
  # `repmgr node rejoin` still finds the killed node registered as the primary and gives up.
  wait_for 120 "$other is the primary after repmgrd's failover, accepts writes, and repmgr's metadata says so" \
    primary_in_metadata "$other"
  if running "$c"; then
    # Only a container whose PostgreSQL the entrypoint left stopped (e.g. an earlier rejoin failed).
    in_node "$n" 10 pg_ctl -D /var/lib/postgresql/vol/pgdata status >/dev/null 2>&1 \
      && die "rejoin: container $c runs, with PostgreSQL (expected it killed)"
    log "$c runs already, its PostgreSQL stopped"
  else
    docker start "$c" >/dev/null || die "rejoin: docker start $c failed"
    log "started $c again (its entrypoint leaves a former primary's PostgreSQL stopped)"
  fi
  wait_for 30 "$c runs sshd" sshd_up "$n"
  if in_node "$n" 10 pg_ctl -D /var/lib/postgresql/vol/pgdata status >/dev/null 2>&1; then
    # It was a standby when it went down: the entrypoint started it as a standby, and repmgrd
    # (follow_command) or its primary_conninfo does the rest.
    method=restart
  else
    log "repmgr node rejoin --force-rewind on $n, to $other"
    method=$(in_node "$n" 115 peer-repmgr-node rejoin "$(ctr "$other")") || die "rejoin: repmgr node rejoin on $n failed"
  fi
  wait_for 120 "$n streams from $other, repmgr shows both, repmgrd monitors both" healthy_pair "$other" "$n"
  echo "$method"
}

cmd_procs() {
  local n c found=0
  for n in n1 n2; do
    c=$(ctr "$n")
    if ! running "$c"; then log "procs: $c is not running"; continue; fi
    found=1
    docker top "$c" -eo pid,args | awk -v n="$n" 'NR > 1 && $2 ~ /(^|\/)repmgrd$/ { print $1 "\trepmgrd-" n }'
  done
  (( found )) || die "procs: none of the containers runs"
}

peer_main "$@"
