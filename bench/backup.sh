#!/usr/bin/env bash
# Backups at the speed of the hardware: pgBackRest with the seed's settings (its defaults: gz at
# level 6, one process) against pgrunbook's shipped ones (zst at level 3, process-max = the
# node's CPU count plus one, delta restores), side by side in one run, on a lab of its own (containers
# benchbk-*, ports 25632/25633/26579; a user's lab is untouched), on a pgbench database of
# about 1 GB.
#
#   bench/backup.sh                 # 3 alternating rounds
#   ROUNDS=1 bench/backup.sh        # quick
#   SCALE=70 (pgbench scale, ~1 GB)  LOAD_S=30 (pgbench seconds for the archive rate)  KEEP=1
#   RESTORES=3 (restores of each backup per round, interleaved with the other settings')
#
# Each round takes a full backup with each setting (the order alternates), records its time and
# its size in the repository (pgBackRest's own `info`), then times the whole `pgrunbook run
# backup` command (full: finding the primary, the configuration and stanza checks, the archive
# check, the restore point, the backup, the record in Redis) against the seed's backup, then restores each RESTORES times,
# interleaved, into an empty volume: pgBackRest's restore with the options pgrunbook's
# restore_backup gives it (no configuration file; the shipped process count, or the seed's one
# process), in a one-off container of the node's image, timed inside that container, so the
# container's start is outside the measured time. A third variant restores the shipped backup
# with as many processes as CPUs, against which the shipped process count is chosen. Then
# LOAD_S seconds of pgbench writes measure how fast WAL is archived with the shipped settings,
# and whether pg_wal grows. The report (medians, ratios, targets) is printed, written to
# target/bench/backup.md, and replaces the "Backups" section of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/require-docker.sh
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-70}
LOAD_S=${LOAD_S:-30}
RESTORES=${RESTORES:-3}
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

declare -A backup_s size_b label_of restore_s largest_s restore_p
run_s=""
big_mb=0
# The restore as pgrunbook's restore_backup runs it: these options and no configuration file;
# the shipped process count is the one pgrunbook wrote into the node's file (the same rule).
shipped_pmax=$(as_pg "$P" sh -c "sed -n 's/^process-max=//p' /etc/pgbackrest/pgbackrest.conf")
restore_conf="--no-config --repo1-path=/var/lib/pgbackrest --stanza=$STANZA --pg1-path=/restore/data --log-level-file=off --lock-path=/tmp/pgbackrest"
image=$(docker inspect -f '{{.Config.Image}}' "$S")
# Prints the seconds pgBackRest's restore took, the seconds from its start until its largest
# file was restored (pgBackRest restores a file in one process: no process count makes that one
# faster), the size of that file in MB, then the "command begin" line. pgBackRest's console log
# at detail level (a line per file, into a file of the one-off container) gives the times.
restore_timed='install -d -o postgres -m 0700 /restore/data
t0=$(date +%s.%N)
setpriv --reuid=postgres --regid=postgres --init-groups pgbackrest "$@" --log-level-console=detail restore >/tmp/log 2>&1 || { cat /tmp/log >&2; exit 1; }
t1=$(date +%s.%N)
awk "BEGIN{printf \"%.3f\\n\", $t1 - $t0}"
big=$(find /restore/data -type f -printf "%s %p\n" | sort -n | tail -1)
secs() { awk "{split(\$2, t, \":\"); printf \"%.3f\\n\", t[1] * 3600 + t[2] * 60 + t[3]; exit}"; }
b=$(grep -m1 "command begin" /tmp/log | secs); e=$(grep -m1 "restore file ${big#* } " /tmp/log | secs)
awk "BEGIN{printf \"%.3f\\n\", $e - $b}"; echo $(( ${big%% *} / 1048576 ))
grep -m1 "command begin" /tmp/log'

backup_one() { # $1 name, $2 backup options
  local name=$1 opts=$2 t0 t1 label size
  t0=$(now)
  as_pg "$P" pgbackrest --stanza=$STANZA --type=full $opts backup >"$out/backup-last.log" 2>&1 \
    || { cat "$out/backup-last.log" >&2; exit 1; }
  t1=$(now)
  label=$(as_pg "$P" pgbackrest --stanza=$STANZA --output=json info | python3 -c 'import json,sys; b=json.load(sys.stdin)[0]["backup"][-1]; print(b["label"], b["info"]["repository"]["delta"])')
  size=${label#* }; label=${label% *}
  backup_s[$name]+="$(awk "BEGIN{print $t1 - $t0}") "
  size_b[$name]+="$size "
  label_of[$name]=$label
  printf '    %-8s backup %6.2f s  repo %5d MB  (%s)\n' "$name" "$(awk "BEGIN{print $t1 - $t0}")" $((size / 1048576)) "$label"
}

# The whole command a user types, timed from outside: what it costs beyond the backup itself.
run_one() {
  local t0 t1
  t0=$(now)
  pgrunbook run backup >"$out/run-backup-last.log" 2>&1 || { cat "$out/run-backup-last.log" >&2; exit 1; }
  t1=$(now)
  run_s+="$(awk "BEGIN{print $t1 - $t0}") "
  printf '    %-8s %6.2f s  (pgrunbook run backup, full, shipped settings)\n' "run" "$(awk "BEGIN{print $t1 - $t0}")"
}

# Into a volume of its own, as restore-check and a real restore do (a container's own
# filesystem is an overlay, slower to write than the volume a data directory lives on), from a
# one-off container of the node's image that mounts the repository read-only.
restore_one() { # $1 variant, $2 backup label, $3 process count
  local name=$1 label=$2 pmax=$3 res secs bigs procs
  docker volume rm -f benchbk-restore >/dev/null 2>&1 || true
  docker volume create benchbk-restore >/dev/null
  res=$(docker run --rm -u root -e PGBACKREST_PROCESS_MAX="$pmax" \
    -v benchbk-pgbackrest:/var/lib/pgbackrest:ro -v benchbk-restore:/restore \
    --entrypoint sh "$image" -c "$restore_timed" sh $restore_conf --set="$label") \
    || { echo "restore of $label failed" >&2; exit 1; }
  secs=$(echo "$res" | sed -n 1p)
  bigs=$(echo "$res" | sed -n 2p)
  big_mb=$(echo "$res" | sed -n 3p)
  procs=$(echo "$res" | sed -n 's/.*--process-max=\([0-9]*\).*/\1/p')
  restore_s[$name]+="$secs "
  largest_s[$name]+="$bigs "
  restore_p[$name]=${procs:-1}
  printf '    %-8s restore %6.2f s with %s process(es); its largest file (%s MB) done after %5.2f s\n' \
    "$name" "$secs" "${procs:-1}" "$big_mb" "$bigs"
}

# The machine's part: writing as many bytes as the database into a file, from memory left free
# for a few seconds (on a VM that hands such memory back to its host, as this one does, the
# first write of each page faults into the host) and again at once (memory freed a moment
# before), each then synced. A restore writes the same bytes whatever its settings.
echo "==> writing ${db_bytes} bytes into a file, after 4 s idle and at once after"
docker volume create benchbk-restore >/dev/null
write_cost=$(docker run --rm -u root -v benchbk-restore:/restore --entrypoint sh "$image" -c '
w() { t0=$(date +%s.%N); head -c '"$db_bytes"' /dev/zero > /restore/f; t1=$(date +%s.%N); sync -f /restore/f; t2=$(date +%s.%N); rm /restore/f; awk "BEGIN{printf \"%.2f %.2f \", $t1 - $t0, $t2 - $t1}"; }
sleep 4; w; w')
docker volume rm -f benchbk-restore >/dev/null
echo "    write, sync after idle; write, sync at once (s): $write_cost"

# Each round: both backups (the order alternates), then RESTORES restores of each variant, the
# variants' order rotating, so that no variant always follows a backup or another's restore:
# seed (gz backup, 1 process), shipped (zst backup, the shipped process count) and cpus (the
# shipped backup with as many processes as CPUs: what the process count's +1 is measured against).
for r in $(seq 1 "$ROUNDS"); do
  echo "==> round $r/$ROUNDS"
  if [ $((r % 2)) = 1 ]; then
    backup_one seed "$seed_opts"; backup_one shipped "$shipped_opts"
  else
    backup_one shipped "$shipped_opts"; backup_one seed "$seed_opts"
  fi
  run_one
  for i in $(seq 1 "$RESTORES"); do
    case $(( (r + i) % 3 )) in
      0) order="seed shipped cpus" ;;
      1) order="shipped cpus seed" ;;
      *) order="cpus seed shipped" ;;
    esac
    for v in $order; do
      case $v in
        seed) restore_one seed "${label_of[seed]}" 1 ;;
        shipped) restore_one shipped "${label_of[shipped]}" "$shipped_pmax" ;;
        cpus) restore_one cpus "${label_of[shipped]}" "$nproc" ;;
      esac
    done
  done
  docker volume rm -f benchbk-restore >/dev/null
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
  "$LOAD_S" "$wal_mb" "$((a1 - a0))" "$((f1 - f0))" "$w0" "$w1" "$ready" "$RESTORES" "${restore_p[shipped]}" \
  "${largest_s[seed]}" "${largest_s[shipped]}" "$big_mb" \
  "${restore_s[cpus]}" "${largest_s[cpus]}" "$write_cost" "$run_s" <<'PY' > "$out/backup.md"
import sys, statistics, datetime, platform, os
(db, nproc, rounds, shipped_desc, bs, bh, ss, sh, rs, rh, load_s, wal_mb, archived, failed, w0, w1, ready, restores, rprocs, ls_seed, ls_ship, big_mb, r_cpus, l_cpus, write_cost, run_s) = sys.argv[1:]
f = lambda s: [float(x) for x in s.split()]
med = statistics.median
b_seed, b_ship, s_seed, s_ship = f(bs), f(bh), f(ss), f(sh)
def row(name, seed, ship, unit, target="", ok=None):
    ratio = med(ship) / med(seed)
    verdict = "" if ok is None else ("met" if ok(ratio) else "NOT met")
    return f"| {name} | {med(seed):.2f} {unit} (worst {max(seed):.2f}) | {med(ship):.2f} {unit} (worst {max(ship):.2f}) | {ratio:.3f}x | {target} | {verdict} |"
mb = lambda xs: [x / 1048576 for x in xs]
half = lambda r: r <= 0.5
n = int(rounds) * int(restores)
print(f"Measured {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPUs), {rounds} alternating round(s), "
      f"pgbench database of {int(db) // 1048576} MB, PostgreSQL 17, pgBackRest 2.55 (Debian), `bench/backup.sh`.\n")
print(f"Seed: pgBackRest's defaults (`compress-type=gz compress-level=6 process-max=1`). "
      f"Shipped: `{shipped_desc.strip()}` (process-max is the node's CPU count plus one: {nproc} CPUs here). "
      f"Restores run as pgrunbook's `restore_backup` runs them (no configuration file), with {rprocs} processes "
      f"for the shipped settings and pgBackRest's default of 1 for the seed's, "
      f"timed inside their one-off container, {n} per setting, interleaved.\n")
print("| measure | seed settings | shipped settings | ratio | target | |")
print("|---|---|---|---|---|---|")
print(row("full backup time", b_seed, b_ship, "s", "≤ 0.25x", lambda r: r <= 0.25))
print(row("whole `pgrunbook run backup` (full)", b_seed, f(run_s), "s", "≤ 0.25x", lambda r: r <= 0.25))
print(row("repository size of that backup", mb(s_seed), mb(s_ship), "MB", "≤ 1x", lambda r: r <= 1.0))
print(row("restore time", f(rs), f(rh), "s", "≤ 0.5x", half))
print(row(f"of which: until its largest file ({big_mb} MB) was restored", f(ls_seed), f(ls_ship), "s"))
print(f"\nThe shipped backup restored with as many processes as CPUs ({nproc}) instead of {rprocs}: "
      f"{med(f(r_cpus)):.2f} s (worst {max(f(r_cpus)):.2f}), its largest file after {med(f(l_cpus)):.2f} s; "
      f"{med(f(r_cpus)) / med(f(rs)):.3f}x the seed's.")
wc = [float(x) for x in write_cost.split()]
print(f"\nThe machine's part: writing {int(db) // 1048576} MB of zeros into a file took {wc[0]:.2f} s (then {wc[1]:.2f} s to sync) "
      f"after 4 s idle, and {wc[2]:.2f} s (then {wc[3]:.2f} s to sync) at once after.")
grew = int(w1) - int(w0)
print(f"\nArchiving under load (shipped settings): {load_s} s of `pgbench -c 4` wrote {wal_mb} MB of WAL; "
      f"{archived} segments archived ({int(archived) * 16 / float(load_s):.1f} MB/s over the load), {failed} failures, "
      f"{ready} segment(s) still waiting to be archived 5 s after; pg_wal went from {int(w0) // 1024} MB to {int(w1) // 1024} MB"
      + (" (did not grow beyond one segment)." if grew <= 16384 else
         f" ({'recycled segments kept for max_wal_size, not a backlog: none waits' if int(ready) == 0 else 'a backlog'}).") )
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
