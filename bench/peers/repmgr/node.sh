#!/bin/bash
# Entrypoint and node-side steps of pgrunbook-peer-repmgr:17 (bench/peers/repmgr).
#
#   peer-repmgr-node run                      the container's main process (as root, under docker-init)
#   peer-repmgr-node init-primary             (as postgres) initdb, start, users/databases, repmgr primary register, repmgrd
#   peer-repmgr-node clone-standby HOST       (as postgres) repmgr standby clone from HOST, start, standby register, repmgrd
#   peer-repmgr-node rejoin HOST              (as postgres) repmgr node rejoin --force-rewind to the primary HOST, repmgrd;
#                                             prints the method on stdout
#   peer-repmgr-node start-repmgrd            (as postgres) starts repmgrd unless it runs
#
# Environment (docker run -e): PEER_NODE_ID (1, 2), PEER_NODE_NAME (n1, n2), PEER_SETTINGS
# (defaults|aggressive: see peer.sh for the values and their source).
#
# The container's main process, and why PostgreSQL is not it: repmgr stops and starts PostgreSQL
# itself (switchover: `repmgr node service --action=stop` then `repmgr node rejoin` on the old
# primary, over SSH; failover: `repmgr standby follow`/`promote` from repmgrd), so the postmaster
# must be able to stop without ending the container. `run` therefore starts sshd, then
# PostgreSQL and repmgrd as daemons (pg_ctl, repmgrd's own daemon mode), and stays in the
# foreground showing their log files (docker logs); PostgreSQL and repmgrd are reparented to
# docker-init.
#
# Split brain: `run` starts PostgreSQL only on a node whose data directory has standby.signal
# (it was a standby when it went down, so it comes back as a standby). A node that went down as
# a primary (no standby.signal: e.g. after `docker kill`) is left STOPPED: repmgrd may have
# promoted the other node meanwhile, and a `docker start` must not make a second primary. Such a
# node comes back only through `repmgr node rejoin --force-rewind` (peer.sh rejoin), which with
# PostgreSQL >= 13 lets pg_rewind run the crash recovery of the killed instance itself
# (repmgr-action-node.c, do_node_rejoin: "--force-rewind provided, pg_rewind will automatically
# perform recovery"), rewinds it to the new primary's timeline, writes standby.signal and
# primary_conninfo and starts it. The very first start (empty volume) starts nothing either:
# peer.sh runs init-primary / clone-standby.
set -euo pipefail

conf=/etc/repmgr.conf
pglog=/var/log/postgresql/postgresql.log
rmlog=/var/log/repmgr/repmgr.log
pidfile=/tmp/repmgrd.pid
me=$(hostname)
log() { echo "peer-repmgr-node[$me]: $*" >&2; }
die() { echo "peer-repmgr-node[$me]: ERROR: $*" >&2; exit 1; }

conninfo_of() { echo "host=$1 user=repmgr dbname=repmgr connect_timeout=2"; }

# repmgr.conf, written on every container start (not in the volume: repmgr's docs say it must
# not live in the data directory). Same path on both nodes: repmgr's remote calls over SSH pass
# the local -f path on.
write_repmgr_conf() {
  local id=${PEER_NODE_ID:?} name=${PEER_NODE_NAME:?} settings=${PEER_SETTINGS:-defaults}
  {
    cat <<CONF
# written by peer-repmgr-node (bench/peers/repmgr) on container start
node_id=$id
node_name='$name'
conninfo='$(conninfo_of "$me")'
data_directory='$PGDATA'
pg_bindir='/usr/lib/postgresql/17/bin'
repmgr_bindir='/usr/lib/postgresql/17/bin'
use_replication_slots=false
log_level='INFO'
log_file='$rmlog'
repmgrd_pid_file='$pidfile'
# PostgreSQL's output to a file: pg_ctl started over SSH (switchover) must not hold the session.
pg_ctl_options='-l $pglog'
ssh_options='-q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5'
failover='automatic'
promote_command='/usr/lib/postgresql/17/bin/repmgr standby promote -f $conf --log-to-file'
follow_command='/usr/lib/postgresql/17/bin/repmgr standby follow -f $conf --log-to-file --upstream-node-id=%n'
CONF
    case "$settings" in
      defaults) echo "# SETTINGS=defaults: repmgr's own defaults for failure detection" ;;
      aggressive)
        cat <<'CONF'
# SETTINGS=aggressive (see peer.sh): the smallest values repmgr accepts
monitor_interval_secs=1
reconnect_attempts=1
reconnect_interval=1
connection_check_type='ping'
CONF
        ;;
      *) die "PEER_SETTINGS must be defaults or aggressive, not '$settings'" ;;
    esac
  } > "$conf"
  chmod 0644 "$conf"
}

pg_running() { pg_ctl -D "$PGDATA" status >/dev/null 2>&1; }
pg_start() { pg_ctl -D "$PGDATA" -l "$pglog" -w -t 90 start >&2; }

start_repmgrd() {
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "repmgrd already runs (pid $(cat "$pidfile"))"
    return
  fi
  rm -f "$pidfile"
  # Daemonizes itself; its log goes to log_file. No std stream of ours stays open in it.
  repmgrd -f "$conf" </dev/null >>"$rmlog" 2>&1 || die "repmgrd did not start (see $rmlog)"
  log "repmgrd started"
}

write_hba() {
  cat > "$PGDATA/pg_hba.conf" <<'HBA'
# written by peer-repmgr-node (bench/peers/repmgr): benchmark only
local   all             all                             trust
host    all             all             0.0.0.0/0       scram-sha-256
host    all             all             ::/0            scram-sha-256
host    replication     all             0.0.0.0/0       scram-sha-256
host    replication     all             ::/0            scram-sha-256
HBA
}

cmd_run() {
  [ "$(id -u)" = 0 ] || die "run must be the container's main process, as root"
  write_repmgr_conf
  # A container started again after `docker kill` keeps its /tmp, /var/run and the volume's
  # postmaster.pid, whose PIDs may now belong to other processes: nothing of ours runs yet.
  rm -f "$pidfile" /var/run/postgresql/.s.PGSQL.* "$PGDATA/postmaster.pid"
  touch "$pglog" "$rmlog"; chown postgres:postgres "$pglog" "$rmlog"
  mkdir -p /run/sshd
  /usr/sbin/sshd -e || die "sshd did not start"

  if [ -s "$PGDATA/PG_VERSION" ]; then
    if [ -e "$PGDATA/standby.signal" ]; then
      log "data directory of a standby: starting PostgreSQL (as a standby) and repmgrd"
      runuser -u postgres -- pg_ctl -D "$PGDATA" -l "$pglog" -w -t 90 start >&2 || log "PostgreSQL did not start"
      runuser -u postgres -- "$0" start-repmgrd || true
    else
      log "data directory of a node that went down as PRIMARY: PostgreSQL and repmgrd stay stopped" \
          "(no split brain); rejoin it with 'repmgr node rejoin --force-rewind' (peer.sh rejoin)"
    fi
  else
    log "empty volume: waiting for init-primary or clone-standby"
  fi

  stop() {
    log "stopping"
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >&2 2>/dev/null || true
    kill "$tail_pid" 2>/dev/null || true
    exit 0
  }
  trap stop TERM INT
  tail -n 0 -F "$pglog" "$rmlog" &
  tail_pid=$!
  wait "$tail_pid"
}

cmd_init_primary() {
  [ ! -s "$PGDATA/PG_VERSION" ] || die "init-primary: $PGDATA already holds a cluster"
  initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 >&2
  cat >> "$PGDATA/postgresql.conf" <<'CONF'

# bench/peers/repmgr (repmgr's quickstart: replication settings, shared_preload_libraries)
listen_addresses = '*'
port = 5432
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
# pg_rewind (repmgr node rejoin --force-rewind) needs wal_log_hints or data checksums
wal_log_hints = on
wal_keep_size = '1GB'
shared_preload_libraries = 'repmgr'
CONF
  write_hba
  pg_start
  psql -XqAt -v ON_ERROR_STOP=1 -d postgres >&2 <<'SQL'
alter role postgres password 'bench';
create role repmgr superuser login password 'bench';
create database repmgr owner repmgr;
create database bench;
SQL
  repmgr -f "$conf" primary register >&2
  start_repmgrd
}

cmd_clone_standby() {
  local primary=${1:?usage: clone-standby PRIMARY_HOST}
  [ ! -s "$PGDATA/PG_VERSION" ] || die "clone-standby: $PGDATA already holds a cluster"
  repmgr -h "$primary" -U repmgr -d repmgr -f "$conf" standby clone --fast-checkpoint >&2
  pg_start
  repmgr -f "$conf" standby register >&2
  start_repmgrd
}

cmd_rejoin() {
  local primary=${1:?usage: rejoin PRIMARY_HOST} out rc
  pg_running && die "rejoin: PostgreSQL runs already"
  out=$(mktemp)
  set +e
  repmgr -f "$conf" node rejoin -d "$(conninfo_of "$primary")" --force-rewind --verbose 2>&1 | tee "$out" >&2
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then
    die "repmgr node rejoin failed (exit $rc)"
  fi
  start_repmgrd
  # repmgr runs pg_rewind whenever --force-rewind is given (after the crash recovery it needs);
  # pg_rewind may find nothing to rewind when the killed primary wrote no WAL past the fork.
  if grep -q 'executing pg_rewind' "$out"; then
    if grep -q 'no rewind required' "$out"; then log "pg_rewind ran: crash recovery only, no rewind required"; fi
    echo rewind
  else
    echo rejoin
  fi
  rm -f "$out"
}

case "${1:-}" in
  run) cmd_run ;;
  init-primary) cmd_init_primary ;;
  clone-standby) shift; cmd_clone_standby "$@" ;;
  rejoin) shift; cmd_rejoin "$@" ;;
  start-repmgrd) start_repmgrd ;;
  *) die "usage: $0 run | init-primary | clone-standby HOST | rejoin HOST | start-repmgrd" ;;
esac
