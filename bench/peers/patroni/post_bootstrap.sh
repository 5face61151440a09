#!/bin/bash
# Patroni's bootstrap.post_bootstrap: runs once, on the node that initialises the cluster, with a
# connection string for the superuser as $1. Creates the benchmark's database.
set -euo pipefail
psql -X -v ON_ERROR_STOP=1 -d "$1" -c 'CREATE DATABASE bench'
