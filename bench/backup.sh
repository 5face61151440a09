#!/usr/bin/env bash
# Backups at the speed of the hardware: pgBackRest with the seed's settings (its defaults: gz at
# level 6, one process) against pgrunbook's shipped ones (zst at level 3, process-max = the
# node's CPU count, delta restores), side by side in one run, on a lab of its own (containers
# benchbk-*, ports 25632/25633/26579; a user's lab is untouched), on a pgbench database of
# about 1 GB.
#
#   bench/backup.sh                 # 3 alternating rounds
#   ROUNDS=1 bench/backup.sh        # quick
#   SCALE=70 (pgbench scale, ~1 GB)  LOAD_S=30 (pgbench seconds for the archive rate)  KEEP=1
#
# Each round takes a full backup with each setting (the order alternates), records its time and
# its size in the repository (pgBackRest's own `info`), and restores it into an empty volume
# (pgBackRest restore in a one-off container of the node's image, with the same setting's
# process count; the one-off's start is outside the measured time). Then
# LOAD_S seconds of pgbench writes measure how fast WAL is archived with the shipped settings,
# and whether pg_wal grows. The report (medians, ratios, targets) is printed, written to
# target/bench/backup.md, and replaces the "Backups" section of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-70}
LOAD_S=${LOAD_S:-30}
PROFILE=${PROFILE:-debug}
out=target/bench
mkdir -p "$out"
export PGRUNBOOK_CONFIG=$PWD/$out/backup.toml
export PGRUNBOOK_DATA_DIR=$PWD/$out/backup-data
cat > "$PGRUNBOOK_CONFIG" <<TOML
[nodes.pg-bases2]
container = "benchbk-pg-bases2"
host = "127.0.0.1"
port = 25632
slot = "primary1"
init = "primary"

[nodes.pg-replica]
container = "benchbk-pg-replica"
host = "127.0.0.1"
port = 25633
slot = "replica1"
init = "standby"

[pgbackrest]
retention_full = 50

[redis]
url = "redis://127.0.0.1:26579"
prefix = "benchbk"

[lab]
network = "benchbk-net"
repo_volume = "benchbk-pgbackrest"
redis_container = "benchbk-redis"
redis_port = 26579
label = "benchbk"
TOML

if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
pgrunbook() { "target/$PROFILE/pgrunbook" "$@"; }
cleanup() { [ "${KEEP:-0}" = 1 ] || pgrunbook lab down --volumes >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "==> lab up, setup"
pgrunbook lab up >/dev/null
pgrunbook run setup >/dev/null
P=benchbk-pg-bases2
S=benchbk-pg-replica
STANZA=bases2-db
as_pg() { docker exec -u postgres "$@"; }
now() { date +%s.%N; }

echo "==> pgbench -i -s $SCALE"
as_pg "$P" pgbench -i -q -s "$SCALE" bases2_proyectos >/dev/null 2>&1
db_bytes=$(as_pg "$P" psql -Atc "select pg_database_size('bases2_proyectos')" bases2_proyectos)
nproc=$(docker exec "$P" nproc)
echo "    database: $((db_bytes / 1048576)) MB; node CPUs: $nproc"

# Settings under test: the seed's are pgBackRest's defaults, given explicitly so that our
# configuration file does not apply to them.
seed_opts="--compress-type=gz --compress-level=6 --process-max=1"
shipped_opts=""  # the configuration file pgrunbook wrote (pgbackrest_configure)
shipped_desc=$(as_pg "$P" sh -c "grep -E '^(compress-type|compress-level|process-max|delta)=' /etc/pgbackrest/pgbackrest.conf | tr '\n' ' '")

declare -A backup_s size_b restore_s
run_one() { # $1 name, $2 backup options, $3 restore options
  local name=$1 opts=$2 ropts=$3 t0 t1 label size r0 r1
  t0=$(now)
  as_pg "$P" pgbackrest --stanza=$STANZA --type=full $opts backup >"$out/backup-last.log" 2>&1 \
    || { cat "$out/backup-last.log" >&2; exit 1; }
  t1=$(now)
  label=$(as_pg "$P" pgbackrest --stanza=$STANZA --output=json info | python3 -c 'import json,sys; b=json.load(sys.stdin)[0]["backup"][-1]; print(b["label"], b["info"]["repository"]["delta"])')
  size=${label#* }; label=${label% *}
  # Into a volume of its own, as restore-check and a real restore do (a container's own
  # filesystem is an overlay, slower to write than the volume a data directory lives on), from
  # a one-off container of the node's image that mounts the repository; the options the node's
  # configuration file would give are on the command line (the one-off has no such file).
  docker volume rm -f benchbk-restore >/dev/null 2>&1 || true
  docker volume create benchbk-restore >/dev/null
  local image conf
  image=$(docker inspect -f '{{.Config.Image}}' "$S")
  conf="--repo1-path=/var/lib/pgbackrest --stanza=$STANZA --pg1-path=/restore/data --log-level-console=warn"
  [ -n "$ropts" ] || ropts="--process-max=$nproc --delta"
  docker run --rm -u root -v benchbk-restore:/restore --entrypoint sh "$image" -c 'install -d -o postgres -m 0700 /restore/data' >/dev/null
  r0=$(now)
  docker run --rm -u postgres -v benchbk-pgbackrest:/var/lib/pgbackrest:ro -v benchbk-restore:/restore \
    --entrypoint pgbackrest "$image" $conf --set="$label" $ropts restore >"$out/backup-last.log" 2>&1 \
    || { cat "$out/backup-last.log" >&2; exit 1; }
  r1=$(now)
  docker volume rm -f benchbk-restore >/dev/null
  backup_s[$name]+="$(awk "BEGIN{print $t1 - $t0}") "
  restore_s[$name]+="$(awk "BEGIN{print $r1 - $r0}") "
  size_b[$name]+="$size "
  printf '    %-8s backup %6.2f s  repo %5d MB  restore %6.2f s  (%s)\n' "$name" "$(awk "BEGIN{print $t1 - $t0}")" $((size / 1048576)) "$(awk "BEGIN{print $r1 - $r0}")" "$label"
}

for r in $(seq 1 "$ROUNDS"); do
  echo "==> round $r/$ROUNDS"
  if [ $((r % 2)) = 1 ]; then
    run_one seed "$seed_opts" "--process-max=1"; run_one shipped "$shipped_opts" ""
  else
    run_one shipped "$shipped_opts" ""; run_one seed "$seed_opts" "--process-max=1"
  fi
done

echo "==> archive rate: pgbench for $LOAD_S s (shipped settings)"
q() { as_pg "$P" psql -Atc "$1" bases2_proyectos; }
a0=$(q "select archived_count from pg_stat_archiver")
f0=$(q "select failed_count from pg_stat_archiver")
w0=$(as_pg "$P" sh -c 'du -sk "$PGDATA/pg_wal" | cut -f1')
l0=$(q "select pg_current_wal_lsn()")
as_pg "$P" pgbench -c 4 -j 2 -T "$LOAD_S" bases2_proyectos >/dev/null 2>&1
l1=$(q "select pg_current_wal_lsn()")
sleep 5
a1=$(q "select archived_count from pg_stat_archiver")
f1=$(q "select failed_count from pg_stat_archiver")
w1=$(as_pg "$P" sh -c 'du -sk "$PGDATA/pg_wal" | cut -f1')
ready=$(as_pg "$P" sh -c 'ls "$PGDATA/pg_wal/archive_status" | grep -c ready || true')
wal_mb=$(q "select round(pg_wal_lsn_diff('$l1', '$l0') / 1048576.0)")

python3 - "$db_bytes" "$nproc" "$ROUNDS" "$shipped_desc" "${backup_s[seed]}" "${backup_s[shipped]}" \
  "${size_b[seed]}" "${size_b[shipped]}" "${restore_s[seed]}" "${restore_s[shipped]}" \
  "$LOAD_S" "$wal_mb" "$((a1 - a0))" "$((f1 - f0))" "$w0" "$w1" "$ready" <<'PY' > "$out/backup.md"
import sys, statistics, datetime, platform, os
(db, nproc, rounds, shipped_desc, bs, bh, ss, sh, rs, rh, load_s, wal_mb, archived, failed, w0, w1, ready) = sys.argv[1:]
f = lambda s: [float(x) for x in s.split()]
med = statistics.median
b_seed, b_ship, s_seed, s_ship, r_seed, r_ship = f(bs), f(bh), f(ss), f(sh), f(rs), f(rh)
def row(name, seed, ship, unit, target, ok):
    ratio = med(ship) / med(seed)
    return f"| {name} | {med(seed):.2f} {unit} (worst {max(seed):.2f}) | {med(ship):.2f} {unit} (worst {max(ship):.2f}) | {ratio:.2f}x | {target} | {'met' if ok(ratio) else 'NOT met'} |"
mb = lambda xs: [x / 1048576 for x in xs]
print(f"Measured {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPUs), {rounds} alternating round(s), "
      f"pgbench database of {int(db) // 1048576} MB, PostgreSQL 17, pgBackRest 2.55 (Debian), `bench/backup.sh`.\n")
print(f"Seed: pgBackRest's defaults (`compress-type=gz compress-level=6 process-max=1`). "
      f"Shipped: `{shipped_desc.strip()}` (process-max is the node's CPU count, {nproc} here).\n")
print("| measure | seed settings | shipped settings | ratio | target | |")
print("|---|---|---|---|---|---|")
print(row("full backup time", b_seed, b_ship, "s", "≤ 0.25x", lambda r: r <= 0.25))
print(row("repository size of that backup", mb(s_seed), mb(s_ship), "MB", "≤ 1x", lambda r: r <= 1.0))
print(row("restore time", r_seed, r_ship, "s", "≤ 0.5x", lambda r: r <= 0.5))
grew = int(w1) - int(w0)
print(f"\nArchiving under load (shipped settings): {load_s} s of `pgbench -c 4` wrote {wal_mb} MB of WAL; "
      f"{archived} segments archived ({int(archived) * 16 / float(load_s):.1f} MB/s over the load), {failed} failures, "
      f"{ready} segment(s) still waiting 5 s after; pg_wal went from {int(w0) // 1024} MB to {int(w1) // 1024} MB"
      f" ({'grew' if grew > 16384 else 'did not grow beyond one segment'}).")
PY
cat "$out/backup.md"
python3 - "$out/backup.md" docs/benchmarks.md <<'PY'
import sys, re
report, doc = open(sys.argv[1]).read().strip(), sys.argv[2]
text = open(doc).read()
section = f"<!-- backup:begin (bench/backup.sh writes this section) -->\n{report}\n<!-- backup:end -->"
if "<!-- backup:begin" in text:
    text = re.sub(r"<!-- backup:begin.*?<!-- backup:end -->", lambda m: section, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n## Backups: the seed's pgBackRest settings against the shipped ones\n\n" + section + "\n"
open(doc, "w").write(text)
PY
echo "==> docs/benchmarks.md updated"
