#!/bin/bash
# Entrypoint of pgrunbook-peer-patroni:17. One image, two roles:
#   etcd                a single-member etcd (the DCS), in its own container
#   patroni NAME        a Patroni node named NAME (n1, n2); writes /etc/patroni.yml from the
#                       environment, then execs Patroni, which starts and stops PostgreSQL itself.
# Environment of a node: PATRONI_TTL, PATRONI_LOOP_WAIT, PATRONI_RETRY_TIMEOUT (bootstrap.dcs,
# used when the cluster is first initialised in etcd), ETCD_HOST (host:port).
set -euo pipefail

role=${1:-}
case "$role" in
  etcd)
    me=$(hostname)
    exec etcd --name etcd --data-dir /var/lib/etcd/data \
      --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls "http://$me:2379" \
      --listen-peer-urls http://0.0.0.0:2380 --initial-advertise-peer-urls "http://$me:2380" \
      --initial-cluster "etcd=http://$me:2380" --initial-cluster-state new \
      --initial-cluster-token peers-patroni
    ;;
  patroni)
    name=${2:?usage: patroni NAME}
    host=$(hostname)
    cat > /etc/patroni.yml <<YAML
scope: bench
name: $name

log:
  level: INFO

restapi:
  listen: 0.0.0.0:8008
  connect_address: $host:8008

etcd3:
  hosts: ${ETCD_HOST:?}

bootstrap:
  dcs:
    ttl: ${PATRONI_TTL:-30}
    loop_wait: ${PATRONI_LOOP_WAIT:-10}
    retry_timeout: ${PATRONI_RETRY_TIMEOUT:-10}
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        password_encryption: scram-sha-256
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - auth-local: trust
    - auth-host: scram-sha-256
  post_bootstrap: /usr/local/bin/peer-patroni-post-bootstrap

postgresql:
  listen: 0.0.0.0:5432
  connect_address: $host:5432
  data_dir: /var/lib/postgresql/vol/pgdata
  bin_dir: /usr/lib/postgresql/17/bin
  pgpass: /tmp/pgpass
  # pg_basebackup's default is a spread checkpoint on the primary, which made a new replica wait
  # ~90 s (checkpoint_completion_target of checkpoint_timeout); a benchmark wants it now.
  create_replica_methods:
    - basebackup
  basebackup:
    - checkpoint: fast
  authentication:
    superuser:
      username: postgres
      password: bench
    replication:
      username: replicator
      password: bench
    rewind:
      username: postgres
      password: bench
  # Benchmark only: password authentication from anywhere.
  pg_hba:
    - local all all trust
    - host replication replicator 0.0.0.0/0 scram-sha-256
    - host all all 0.0.0.0/0 scram-sha-256
  parameters:
    unix_socket_directories: /var/run/postgresql

tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
YAML
    exec patroni /etc/patroni.yml
    ;;
  *)
    echo "usage: $0 etcd | patroni NAME" >&2
    exit 2
    ;;
esac
