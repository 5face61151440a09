#!/usr/bin/env bash
# bench/peers adapter for pg_auto_failover (see ../README.md for the interface).
#
#   PORT1=29462 PORT2=29463 SETTINGS=defaults bench/peers/pgaf/peer.sh build|up|switchover|rejoin NODE|procs|down
#
# Topology: peers-pgaf-monitor (the pg_auto_failover monitor: `pg_autoctl create monitor`, then
# `pg_autoctl run`, which supervises the monitor's own PostgreSQL with the pgautofailover
# extension), peers-pgaf-n1 and peers-pgaf-n2 (`pg_autoctl create postgres`, then `pg_autoctl run`
# as the main process, under docker-init; pg_autoctl starts, promotes, demotes and pg_rewinds
# PostgreSQL itself), all on network peers-pgaf-net. One image, pgrunbook-peer-pgaf:17, built from
# Debian trixie's packages (postgresql-17-auto-failover and pg-auto-failover-cli 2.2). Each
# container's PGDATA and pg_autoctl's configuration and state (XDG_CONFIG_HOME, XDG_DATA_HOME) are
# in its named volume peers-pgaf-<name>-data; see entrypoint.sh.
#
# Replication mode: ASYNCHRONOUS. pg_auto_failover's default is synchronous replication: a node's
# replication-quorum defaults to true, and then the primary's synchronous_standby_names is
# 'ANY 1 (pgautofailover_standby_N)' even with the formation's number_sync_standbys at its default
# of 0 (the monitor switches the primary to wait_primary, which clears synchronous_standby_names,
# once it has found the standby unhealthy). Both nodes here are created with
# --replication-quorum false (still failover candidates, candidate-priority 50), so no standby is
# ever in the quorum: synchronous_standby_names stays '' and writes never wait for the standby;
# number_sync_standbys stays 0 (the default). `up` checks that synchronous_standby_names is empty.
#
# SETTINGS (applied when the containers are created):
#   defaults    nothing set: pg_auto_failover 2.2's defaults. Monitor (src/monitor/pg_auto_failover.c,
#               v2.2, and docs/ref/configuration.rst): health_check_period 5000 ms,
#               health_check_timeout 5000 ms, health_check_max_retries 2, health_check_retry_delay
#               2000 ms, node_considered_unhealthy_timeout 20000 ms, primary_demote_timeout
#               30000 ms, startup_grace_period 10000 ms. Keeper (src/bin/pg_autoctl/defaults.h):
#               timeout.network_partition_timeout 20 s.
#   aggressive  Monitor GUCs (pgautofailover.*, in an included pgaf-bench.conf) and keeper config:
#                 health_check_period              1000 ms  (default 5000)
#                 health_check_timeout             1000 ms  (default 5000)
#                 health_check_max_retries         1        (default 2; the GUC's minimum)
#                 health_check_retry_delay          500 ms  (default 2000)
#                 node_considered_unhealthy_timeout 2000 ms (default 20000)
#                 primary_demote_timeout           2000 ms  (default 30000)
#                 timeout.network_partition_timeout 1 s     (keeper, default 20)
#               Source: the docs (docs/ref/configuration.rst, "Configuring pg_auto_failover", also
#               `man 5 pg_autoctl` in the package) list these settings and their defaults but
#               give no lower limit; the code (v2.2 src/monitor/pg_auto_failover.c) accepts any
#               value >= 1 (ms) for the monitor's GUCs (>= 1 for max_retries). So the values are
#               the smallest that keep pg_auto_failover's own invariants:
#               - the monitor declares a primary failed only when its health checks fail AND its
#                 keeper has not reported for node_considered_unhealthy_timeout
#                 (node_metadata.c, IsUnhealthy); keepers report once a second
#                 (defaults.h, PG_AUTOCTL_KEEPER_SLEEP_TIME 1), so 2000 ms is two missed reports;
#                 health checks once a second, 1 s connect timeout, one retry after 500 ms;
#               - after a failure the promoted standby stays read-only (stop_replication sets
#                 default_transaction_read_only) until primary_demote_timeout has passed
#                 (group_state_machine.c, IsDrainTimeExpired), the time the old primary is given
#                 to demote itself when it is cut off from the monitor and the standby for
#                 network_partition_timeout (service_keeper.c, in_network_partition): 1 s is the
#                 smallest whole number of seconds, and the demote timeout stays above it (2 s)
#                 so that the no-split-brain guarantee the docs describe still holds.
#               Left at their defaults: startup_grace_period (only after the monitor starts),
#               timeout.postgresql_restart_failure_* (a crashed Postgres under a live keeper, not
#               a killed container), timeout.prepare_promotion_* (no-ops in 2.2: fsm_transition.c,
#               fsm_prepare_standby_for_promotion).
#
# Writes with the standby gone: with replication-quorum false the primary never waits for a
# standby, so killing the standby does not block writes on the primary (pg_auto_failover's
# synchronous default blocks them until the monitor moves the primary to wait_primary, about
# node_considered_unhealthy_timeout later).
#
# stdout carries only what the README names (rejoin's method, procs' lines); progress goes to stderr.
set -euo pipefail

tool=pgaf
image=pgrunbook-peer-pgaf:17
monitor=peers-$tool-monitor
PORT1=${PORT1:-29462}
PORT2=${PORT2:-29463}
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"

# pg_autoctl on the monitor (its PGDATA and XDG directories come from the image's ENV).
autoctl() { timeout 20 docker exec "$monitor" pg_autoctl "$@"; }

# "name reported assigned health" lines from the monitor, e.g. "n1 primary primary 1".
states() {
  autoctl show state --json 2>/dev/null \
    | jq -r '.[] | "\(.nodename) \(.current_group_state) \(.assigned_group_state) \(.health)"' 2>/dev/null
}
show_cluster() { log "pg_autoctl show state:"; autoctl show state >&2 2>/dev/null || log "(the monitor does not answer)"; }
# node STATE: the monitor reports NODE in STATE, reached (reported = assigned).
in_state() { states | grep -qx "$1 $2 $2 1"; }
primary_node() { states | awk '$2 == "primary" && $3 == "primary" {print $1}'; }

# $2 streams from $1: a walsender on $1 in state streaming, and $2 in recovery. pg_auto_failover
# names each standby's application_name pgautofailover_standby_<node id>; with two nodes, the
# one walsender is $2's.
streams_from() {
  [ "$(sql "$1" "select count(*) from pg_stat_replication where application_name like 'pgautofailover_standby_%' and state = 'streaming'")" = 1 ] \
    && [ "$(sql "$2" 'select pg_is_in_recovery()')" = t ]
}
healthy_pair() { # primary standby
  in_state "$1" primary && in_state "$2" secondary && accepts_writes "$1" && streams_from "$1" "$2"
}

cmd_down() {
  remove_all "$(ctr n1)" "$(ctr n2)" "$monitor" -- "$(ctr n1)-data" "$(ctr n2)-data" "$monitor-data"
}

start_node() { # node
  local n=$1
  docker run -d --init --name "$(ctr "$n")" --hostname "$(ctr "$n")" --network "$net" \
    --label pgrunbook.peer=$tool \
    -p "127.0.0.1:$(port_of "$n"):5432" \
    -v "$(ctr "$n")-data:/var/lib/postgresql/vol" \
    -e PGAF_SETTINGS="$SETTINGS" -e PGAF_MONITOR="$monitor" \
    "$image" node "$n" >/dev/null || die "cannot start container $(ctr "$n")"
  log "started $(ctr "$n") (SETTINGS=$SETTINGS)"
}

monitor_ready() { autoctl show state >/dev/null 2>&1; }

cmd_up() {
  case "$SETTINGS" in defaults|aggressive) ;; *) die "SETTINGS must be 'defaults' or 'aggressive', not '$SETTINGS'" ;; esac
  docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing: run '$0 build' first"
  cmd_down
  docker network create "$net" >/dev/null || die "cannot create network $net"
  local v
  for v in "$monitor-data" "$(ctr n1)-data" "$(ctr n2)-data"; do
    docker volume create "$v" >/dev/null || die "cannot create volume $v"
  done
  docker run -d --init --name "$monitor" --hostname "$monitor" --network "$net" --label pgrunbook.peer=$tool \
    -v "$monitor-data:/var/lib/postgresql/vol" -e PGAF_SETTINGS="$SETTINGS" \
    "$image" monitor >/dev/null || die "cannot start container $monitor"
  wait_for 60 "the monitor ($monitor) answers pg_autoctl show state" monitor_ready
  start_node n1
  # Alone in its group, n1 is "single": pg_auto_failover's primary-without-standby state.
  wait_for 120 "the monitor reports n1 single (primary, alone)" in_state n1 single
  docker exec "$(ctr n1)" psql -XqAt -d postgres -c "alter role postgres password 'bench'" >/dev/null \
    || die "cannot set the password of postgres on n1"
  wait_for 30 "n1 accepts writes on 127.0.0.1:$PORT1" accepts_writes n1
  start_node n2
  wait_for 120 "n2 is secondary and streams from n1, n1 is primary" healthy_pair n1 n2
  local ssn
  ssn=$(sql n1 'show synchronous_standby_names') || die "cannot read synchronous_standby_names on n1"
  [ -z "$ssn" ] || die "n1 replicates synchronously (synchronous_standby_names = '$ssn'), expected async"
  log "n1 is primary, n2 streams from it asynchronously (synchronous_standby_names = '')"
}

cmd_switchover() {
  local old new
  old=$(primary_node)
  [ -n "$old" ] || { show_cluster; die "switchover: the monitor reports no node in state primary"; }
  new=$(other_of "$old")
  in_state "$new" secondary || { show_cluster; die "switchover: $new is not secondary"; }
  log "switchover from $old to $new (pg_autoctl perform switchover on the monitor)"
  # perform switchover waits until the monitor knows the switchover complete, or 60 s (hard-coded).
  # pg_autoctl 2.2 logs "ERROR Monitor ERROR: invalid input syntax for type integer" (its
  # get_nodes call with an empty group) and goes on: cosmetic, the exit status is 0.
  timeout 90 docker exec "$monitor" pg_autoctl perform switchover --formation default --group 0 >&2 \
    || { show_cluster; die "pg_autoctl perform switchover failed"; }
  wait_for 120 "$new is primary and accepts writes, $old is secondary and streams from it" healthy_pair "$new" "$old"
}

cmd_rejoin() {
  local n=${1:-} c other lines0 newlog method
  [ -n "$n" ] || die "usage: $0 rejoin n1|n2"
  other=$(other_of "$n"); c=$(ctr "$n")
  docker container inspect "$c" >/dev/null 2>&1 || die "rejoin: container $c does not exist"
  running "$c" && die "rejoin: container $c is running (expected it killed)"
  # After a failover the survivor is wait_primary (a primary without a healthy standby).
  wait_for 120 "$other is the primary after the failover and accepts writes" \
    eval "{ in_state $other wait_primary || in_state $other primary; } && accepts_writes $other"
  lines0=$(docker logs "$c" 2>&1 | wc -l)
  docker start "$c" >/dev/null || die "rejoin: docker start $c failed"
  log "started $c again; pg_autoctl rejoins it on its own (demoted, catchingup: pg_rewind, or pg_basebackup when that fails)"
  wait_for 120 "$n is secondary and streams from $other, $other is primary" healthy_pair "$other" "$n"
  newlog=$(docker logs "$c" 2>&1 | tail -n +"$((lines0 + 1))")
  # pg_autoctl logs the commands it runs (src/bin/pg_autoctl/pgctl.c): a pg_basebackup after a
  # pg_rewind means the rewind failed and it made a new copy.
  if grep -q 'bin/pg_basebackup ' <<<"$newlog"; then
    log "pg_autoctl made a new copy of $other (pg_basebackup)"
  elif grep -q 'bin/pg_rewind ' <<<"$newlog"; then
    log "pg_autoctl rewound $n to follow $other ($(grep -o 'pg_rewind: [a-z ]*required\|pg_rewind: Done!' <<<"$newlog" | tail -1))"
  fi
  echo automatic
}

cmd_procs() {
  local n c found=0
  for n in n1 n2 monitor; do
    c=$(ctr "$n")
    if ! running "$c"; then log "procs: $c is not running"; continue; fi
    found=1
    # pg_autoctl's supervisor ("pg_autoctl run") and its services ("pg_autoctl: node active",
    # "pg_autoctl: start/stop postgres", "pg_autoctl: monitor listener" ...); on the monitor also
    # the postmaster of the monitor's PostgreSQL (its children are PostgreSQL's own processes).
    docker top "$c" -eo pid,args | awk -v n="$n" 'NR > 1 {
        pid = $1; $1 = ""; sub(/^ /, "")
        if ($0 ~ /^(\/usr\/bin\/)?pg_autoctl/) {
          l = $0; sub(/^(\/usr\/bin\/)?pg_autoctl:? */, "", l); sub(/ --.*/, "", l); gsub(/[^A-Za-z0-9]+/, "-", l); sub(/-$/, "", l)
          print pid "\tpg_autoctl-" n "-" l
        } else if (n == "monitor" && $1 ~ /\/bin\/postgres$/) {
          print pid "\tmonitor-postgres"
        }
      }'
  done
  (( found )) || die "procs: none of the containers runs"
}

peer_main "$@"
