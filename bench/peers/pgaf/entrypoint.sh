#!/bin/bash
# Entrypoint of pgrunbook-peer-pgaf:17. One image, two roles:
#   monitor         the pg_auto_failover monitor (pg_autoctl create monitor, then pg_autoctl run)
#   node NAME       a Postgres node named NAME (n1, n2): pg_autoctl create postgres registered
#                   with the monitor, then pg_autoctl run, which starts, supervises, promotes,
#                   demotes and rewinds PostgreSQL itself.
# The create step runs once (a marker file in the volume remembers it); a `docker start` after a
# kill goes straight to `pg_autoctl run`, which picks up the node's state from the volume.
#
# Environment: PGAF_SETTINGS (defaults|aggressive, applied when the role is created; see peer.sh
# for the values and their source), PGAF_MONITOR (host name of the monitor, nodes only).
set -euo pipefail

vol=/var/lib/postgresql/vol
me=$(hostname)
settings=${PGAF_SETTINGS:-defaults}
log() { echo "peer-pgaf-entrypoint[$me]: $*" >&2; }

# Benchmark only. pg_autoctl is told --skip-pg-hba, and this is the whole HBA of every node
# (a standby gets it from its primary with pg_basebackup, and it is written again on each start):
# the superuser postgres with a password from anywhere (the host reaches the published port
# through docker's proxy, from the network's gateway address), and every other role pg_autoctl
# uses between the containers (autoctl_node, pgautofailover_monitor, pgautofailover_replicator
# for streaming and pg_rewind) trusted within the containers' own network.
write_hba() {
  cat > "$PGDATA/pg_hba.conf" <<'HBA'
# written by peer-pgaf-entrypoint (bench/peers/pgaf): benchmark only
local   all             all                             trust
host    all             postgres        0.0.0.0/0       scram-sha-256
host    all             all             samenet         trust
host    replication     all             samenet         trust
HBA
}

# A container started again after `docker kill` keeps its /tmp and the volume's postmaster.pid,
# whose PIDs may now belong to other processes of the new container: nothing can be running yet.
clean_stale() {
  rm -rf "${XDG_RUNTIME_DIR:?}" /tmp/pg_autoctl
  rm -f "$PGDATA/postmaster.pid"
  mkdir -p "$XDG_RUNTIME_DIR"
}

reload_if_running() {
  if pg_ctl -D "$PGDATA" status >/dev/null 2>&1; then pg_ctl -D "$PGDATA" reload >/dev/null; fi
}

role=${1:-}
case "$settings" in defaults|aggressive) ;; *) log "PGAF_SETTINGS must be defaults or aggressive"; exit 2 ;; esac
case "$role" in
  monitor)
    clean_stale
    if [ ! -e "$vol/created" ]; then
      log "creating the monitor (SETTINGS=$settings)"
      pg_autoctl create monitor --pgdata "$PGDATA" --pgport 5432 --hostname "$me" \
        --skip-pg-hba --no-ssl
      write_hba
      if [ "$settings" = aggressive ]; then
        # The monitor's failure detection (pgautofailover.* GUCs, reloadable): see peer.sh.
        cat > "$PGDATA/pgaf-bench.conf" <<'CONF'
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500
pgautofailover.node_considered_unhealthy_timeout = 2000
pgautofailover.primary_demote_timeout = 2000
CONF
        echo "include 'pgaf-bench.conf'" >> "$PGDATA/postgresql.conf"
      fi
      reload_if_running
      touch "$vol/created"
    fi
    write_hba
    exec pg_autoctl run --pgdata "$PGDATA"
    ;;
  node)
    name=${2:?usage: node NAME}
    monitor_uri="postgres://autoctl_node@${PGAF_MONITOR:?}:5432/pg_auto_failover?sslmode=disable"
    clean_stale
    if [ ! -e "$vol/created" ]; then
      log "creating node $name (SETTINGS=$settings)"
      # --replication-quorum false: this node never counts towards synchronous replication, so
      # the primary's synchronous_standby_names stays '' and the pair streams asynchronously
      # (pg_auto_failover's default, replication-quorum true, is synchronous with one standby).
      # It stays a failover candidate (--candidate-priority 50, the default).
      pg_autoctl create postgres --pgdata "$PGDATA" --pgport 5432 --listen '*' \
        --hostname "$me" --name "$name" --monitor "$monitor_uri" \
        --skip-pg-hba --no-ssl --dbname bench --username postgres \
        --replication-quorum false --candidate-priority 50
      write_hba
      if [ "$settings" = aggressive ]; then
        # The keeper's own timeout (seconds): see peer.sh.
        pg_autoctl config set --pgdata "$PGDATA" timeout.network_partition_timeout 1 >/dev/null
      fi
      reload_if_running
      touch "$vol/created"
    fi
    write_hba
    exec pg_autoctl run --pgdata "$PGDATA"
    ;;
  *)
    echo "usage: $0 monitor | node NAME" >&2
    exit 2
    ;;
esac
