#!/bin/sh
# Entry point of every lab container.
#
#   redis-server ...       runs Redis (the journal) instead of PostgreSQL
#   (no argument)          runs PostgreSQL on $PGDATA:
#     - data directory present: start it as it is (primary, standby, or fenced: a node whose data
#       directory holds standby.signal starts read-only, whatever started the container);
#     - empty, PGRUNBOOK_INIT=primary: initdb, create the database and the replication role, start;
#     - empty, PGRUNBOOK_INIT=standby: wait for a base backup (`pgrunbook run setup` makes one).
set -eu
if [ "${1:-}" = "redis-server" ]; then
  exec "$@"
fi

PGDATA=${PGDATA:-/var/lib/postgresql/data}
DB=${PGRUNBOOK_DATABASE:-bases2_proyectos}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ "${PGRUNBOOK_INIT:-primary}" = "standby" ]; then
    echo "pgrunbook: $PGDATA is empty; this standby waits for a base backup (pgrunbook run setup)"
    while [ ! -s "$PGDATA/PG_VERSION" ]; do sleep 1; done
  else
    echo "pgrunbook: initialising $PGDATA"
    umask 077
    pwfile=$(mktemp)
    # printf is a shell builtin: the password never shows in a process list.
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}" > "$pwfile"
    initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
      --data-checksums --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "include_if_exists = '/etc/pgrunbook/postgresql.conf'" >> "$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c archive_mode=off" -w -s start
    psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres -c "CREATE DATABASE \"$DB\""
    for f in /initdb/*.sql; do
      [ -e "$f" ] && psql -v ON_ERROR_STOP=1 -q -U postgres -d "$DB" -f "$f"
    done
    if [ -n "${REPLICATION_PASSWORD:-}" ]; then
      # \getenv reads the password from the environment, so it is on no command line.
      psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres <<'SQL'
\getenv pw REPLICATION_PASSWORD
ALTER ROLE replicator WITH PASSWORD :'pw';
SQL
    fi
    pg_ctl -D "$PGDATA" -m fast -w -s stop
  fi
fi
if [ -f "$PGDATA/pgrunbook.fenced" ]; then
  # pgrunbook's failover fenced this node: it must never come back as a second primary, whoever
  # starts it (a person, or Docker's restart policy). It starts read-only, as a standby.
  touch "$PGDATA/standby.signal"
  echo "pgrunbook: this node is fenced ($(cat "$PGDATA/pgrunbook.fenced")); starting read-only. Run failback to rejoin it."
fi
exec postgres -D "$PGDATA"
