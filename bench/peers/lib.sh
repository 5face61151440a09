# Shared by the peers' adapters (bench/peers/<tool>/peer.sh), sourced after each sets `tool`,
# `image` and its PORT1/PORT2 defaults. An adapter defines `show_cluster` (what the tool itself
# says of the pair), which `wait_for` prints before it gives up.
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
base=pgrunbook-base:trixie
net=peers-$tool-net
hash_label=pgrunbook.peer.hash
SETTINGS=${SETTINGS:-defaults}

log() { echo "peer.sh[$tool]: $*" >&2; }
die() { echo "peer.sh[$tool]: ERROR: $*" >&2; exit 1; }

ctr() { echo "peers-$tool-$1"; }
port_of() { case "$1" in n1) echo "$PORT1" ;; n2) echo "$PORT2" ;; *) die "unknown node '$1' (n1 or n2)" ;; esac; }
other_of() { case "$1" in n1) echo n2 ;; n2) echo n1 ;; *) die "unknown node '$1' (n1 or n2)" ;; esac; }

# psql through the node's published port, as the benchmark's superuser (database $DB or bench).
sql() { # node sql
  PGPASSWORD=bench PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$(port_of "$1")" -U postgres -d "${DB:-bench}" -XtAq \
    -v ON_ERROR_STOP=1 -c "$2" 2>/dev/null
}

running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null || true)" = true ]; }

# wait_for DEADLINE_S DESCRIPTION COMMAND...: polls COMMAND every 0.5 s until it succeeds.
wait_for() {
  local deadline=$1 what=$2; shift 2
  local t0=$SECONDS
  log "waiting (up to ${deadline}s) until $what"
  until "$@"; do
    if (( SECONDS - t0 >= deadline )); then
      show_cluster
      die "timed out after ${deadline}s waiting until $what"
    fi
    sleep 0.5
  done
  log "ok after $((SECONDS - t0))s: $what"
}

accepts_writes() { [ "$(sql "$1" 'select pg_is_in_recovery()')" = f ] && sql "$1" 'select pg_current_xact_id()' >/dev/null; }

# The image is rebuilt when the tool's folder changes: a hash of its files is the image's label.
folder_hash() {
  (cd "$here" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

cmd_build() {
  local want have
  want=$(folder_hash)
  have=$(docker image inspect -f "{{index .Config.Labels \"$hash_label\"}}" "$image" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then
    log "$image is up to date ($want)"
    return
  fi
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    log "base image $base is missing: running lab/build-image.sh"
    "$repo/lab/build-image.sh" >&2
  fi
  log "building $image (folder hash $want)"
  docker build -q --label "$hash_label=$want" -t "$image" "$here" >&2 || die "docker build of $image failed"
}

# remove_all CONTAINER... -- VOLUME...: removes those that exist, then the network.
remove_all() {
  local c v
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    c=$1; shift
    if docker container inspect "$c" >/dev/null 2>&1; then
      docker rm -f -v "$c" >/dev/null || die "cannot remove container $c"
      log "removed container $c"
    fi
  done
  [ "${1:-}" = -- ] && shift
  for v in "$@"; do
    if docker volume inspect "$v" >/dev/null 2>&1; then
      docker volume rm "$v" >/dev/null || die "cannot remove volume $v"
      log "removed volume $v"
    fi
  done
  if docker network inspect "$net" >/dev/null 2>&1; then
    docker network rm "$net" >/dev/null || die "cannot remove network $net"
    log "removed network $net"
  fi
}

# The adapter interface (README.md): each adapter defines cmd_build (here, or its own), cmd_up,
# cmd_switchover, cmd_rejoin NODE, cmd_procs and cmd_down, then ends with `peer_main "$@"`.
peer_main() {
  local command=${1:-}
  case "$command" in
    build) cmd_build ;;
    up) cmd_up ;;
    switchover) cmd_switchover ;;
    rejoin) shift; cmd_rejoin "$@" ;;
    procs) cmd_procs ;;
    down) cmd_down ;;
    *) die "usage: $0 build|up|switchover|rejoin NODE|procs|down" ;;
  esac
}
