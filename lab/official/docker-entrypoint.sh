#!/bin/sh
# What the official postgres image's docker-entrypoint.sh does, in POSIX sh, for the "official"
# flavour built from Debian's packages (no registry here to pull postgres:17 from):
#   - as root: own the data directory and the socket directory, then re-run itself as postgres;
#   - data directory empty: initdb with POSTGRES_USER / POSTGRES_PASSWORD, a password rule for
#     every host (`host all all all scram-sha-256`, which does NOT match replication
#     connections), POSTGRES_DB, then /docker-entrypoint-initdb.d/*.sh and *.sql on a server
#     that listens on no TCP port;
#   - then exec the command (`postgres` and its flags) as PID 1.
set -eu

if [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi

if [ "$1" = 'postgres' ]; then
  PGDATA=${PGDATA:-/var/lib/postgresql/data}
  if [ "$(id -u)" = '0' ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    chmod 3777 /var/run/postgresql || :
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
  fi

  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?the official image needs POSTGRES_PASSWORD}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    # shellcheck disable=SC2086
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    # The official image's sample configuration listens on every address.
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -s start
    if [ "$db" != 'postgres' ]; then
      psql -v ON_ERROR_STOP=1 -q --username "$user" --dbname postgres \
        -c "CREATE DATABASE \"$db\""
    fi
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh)
          if [ -x "$f" ]; then echo "running $f"; "$f"; else echo "sourcing $f"; . "$f"; fi ;;
        *.sql)
          echo "running $f"; psql -v ON_ERROR_STOP=1 -q --username "$user" --dbname "$db" -f "$f" ;;
        *) : ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w -s stop
    echo "PostgreSQL init process complete; ready for start up."
  fi
fi

exec "$@"
