#!/usr/bin/env bash
# A lab of several Docker hosts on one machine: each simulated host is a network namespace with
# its own dockerd, reached over TCP on its own address of a private bridge. See docs/multi-host.md.
#
#   scripts/lab-hosts.sh up   NAME N [TLS_HOSTS]   # hosts NAME-h1..hN; TLS_HOSTS: "2 3" (TLS on 2376)
#   scripts/lab-hosts.sh cut  NAME I               # host I loses its link (as if unplugged)
#   scripts/lab-hosts.sh heal NAME I               # and gets it back
#   scripts/lab-hosts.sh down NAME                 # removes dockerds, namespaces, bridge, rules
#
# Environment: LAB_SUBNET (default 10.213.0: host I is LAB_SUBNET.(I+1), the bridge .1),
# LAB_DIR (default /run/pgrunbook-hosts/NAME: sockets, pid files, certificates; data goes to
# /var/lib/pgrunbook-hosts/NAME), LAB_IMAGES (default "pgrunbook-lab:17": loaded into each engine).
#
# The hosts share this machine's file system, as hosts share a network file system: their
# pgBackRest repository is one directory, /var/lib/pgrunbook-hosts/NAME/pgbackrest, which
# `pgrunbook lab up` bind-mounts in every node (it finds it through LAB_DIR's `engines` and
# `repo` files). `down` removes it with the rest.
# NAME is at most 8 characters (interface names are at most 15). Run as root.
#
# What was found to work here (/work/shared/lab-notes.md): dockerd started with `nsenter --net`
# (`ip netns exec` remounts /sys and hides the cgroups), its own empty --config-file (the
# machine's daemon.json sets data-root), and an ACCEPT rule for the bridge in FORWARD (the
# machine's Docker sets the FORWARD policy to DROP). Never a dockerd with --bridge=none in the
# machine's own namespace. Traffic goes only to the bridge's private subnet.
set -euo pipefail

cmd=${1:?usage: lab-hosts.sh up|cut|heal|down NAME ...}
name=${2:?NAME}
[ ${#name} -le 8 ] || { echo "lab-hosts: NAME must be at most 8 characters: $name" >&2; exit 2; }
subnet=${LAB_SUBNET:-10.213.0}
dir=${LAB_DIR:-/run/pgrunbook-hosts/$name}
data=/var/lib/pgrunbook-hosts/$name
bridge="${name}br"
images=${LAB_IMAGES:-pgrunbook-lab:17}

addr() { echo "$subnet.$(($1 + 1))"; }

# Certificates for a TLS engine: a CA, the server's (for its address) and a client's.
make_certs() {
    local i=$1 a
    a=$(addr "$i")
    local d="$dir/certs"
    mkdir -p "$d"
    if [ ! -f "$d/ca.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$name lab CA" \
            -keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=pgrunbook" \
            -keyout "$d/key.pem" -out "$d/client.csr" 2>/dev/null
        printf 'extendedKeyUsage = clientAuth\n' >"$d/client.ext"
        openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
            -CAcreateserial -days 2 -extfile "$d/client.ext" -out "$d/cert.pem" 2>/dev/null
    fi
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$a" \
        -keyout "$d/h$i-key.pem" -out "$d/h$i.csr" 2>/dev/null
    printf 'subjectAltName = IP:%s\nextendedKeyUsage = serverAuth\n' "$a" >"$d/h$i.ext"
    openssl x509 -req -in "$d/h$i.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$d/h$i.ext" -out "$d/h$i-cert.pem" 2>/dev/null
}

up() {
    local n=${1:?N} tls=" ${2:-} " i ns veth a sock t0
    mkdir -p "$dir" "$data"
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge
        ip addr add "$subnet.1/24" dev "$bridge"
    fi
    ip link set "$bridge" up
    iptables -C FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null ||
        iptables -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
    for i in $(seq 1 "$n"); do
        ns="$name-h$i" veth="${name}h$i" a=$(addr "$i")
        if [ ! -e "/run/netns/$ns" ]; then
            ip netns add "$ns"
            ip link add "$veth" type veth peer name "${veth}n"
            ip link set "${veth}n" netns "$ns"
            ip link set "$veth" master "$bridge" up
            nsenter --net="/run/netns/$ns" sh -c "ip link set lo up &&
                ip link set ${veth}n name eth0 && ip addr add $a/24 dev eth0 &&
                ip link set eth0 up && ip route add default via $subnet.1"
        fi
        sock="$dir/h$i/docker.sock"
        mkdir -p "$dir/h$i" "$data/h$i"
        if [ -S "$sock" ] && docker -H "unix://$sock" version >/dev/null 2>&1; then
            continue
        fi
        echo '{}' >"$dir/h$i/daemon.json"
        local hosts=(-H "unix://$sock" -H "tcp://$a:2375") tlsargs=()
        if [[ $tls == *" $i "* ]]; then
            make_certs "$i"
            hosts=(-H "unix://$sock" -H "tcp://$a:2376")
            tlsargs=(--tlsverify --tlscacert "$dir/certs/ca.pem"
                --tlscert "$dir/certs/h$i-cert.pem" --tlskey "$dir/certs/h$i-key.pem")
        fi
        # setsid: the engine outlives this script; `down` stops it by its pid file.
        setsid nsenter --net="/run/netns/$ns" dockerd --config-file "$dir/h$i/daemon.json" \
            "${hosts[@]}" "${tlsargs[@]}" --data-root "$data/h$i/data" \
            --exec-root "$dir/h$i/exec" --pidfile "$dir/h$i/docker.pid" \
            --mtu 1400 --log-driver json-file \
            >"$dir/h$i/dockerd.log" 2>&1 </dev/null &
    done
    for i in $(seq 1 "$n"); do
        sock="$dir/h$i/docker.sock"
        t0=$SECONDS
        until docker -H "unix://$sock" version >/dev/null 2>&1; do
            if [ $((SECONDS - t0)) -gt 60 ]; then
                echo "lab-hosts: the engine of host $i did not start; its log:" >&2
                tail -n 20 "$dir/h$i/dockerd.log" >&2
                exit 1
            fi
            sleep 0.2
        done
    done
    local loads=()
    for img in $images; do
        for i in $(seq 1 "$n"); do
            sock="$dir/h$i/docker.sock"
            docker -H "unix://$sock" image inspect "$img" >/dev/null 2>&1 && continue
            docker save "$img" | docker -H "unix://$sock" load -q >/dev/null &
            loads+=($!)
        done
    done
    # Only the loads: a bare `wait` would wait for the engines too.
    for p in "${loads[@]}"; do wait "$p"; done
    # The repository the hosts share, and the engines that share it (read by `lab up`).
    mkdir -p "$data/pgbackrest"
    echo "$data/pgbackrest" >"$dir/repo"
    : >"$dir/engines"
    for i in $(seq 1 "$n"); do
        if [[ $tls == *" $i "* ]]; then
            echo "tcp://$(addr "$i"):2376" >>"$dir/engines"
            echo "h$i $(addr "$i") tcp://$(addr "$i"):2376 tls $dir/certs"
        else
            echo "tcp://$(addr "$i"):2375" >>"$dir/engines"
            echo "h$i $(addr "$i") tcp://$(addr "$i"):2375"
        fi
    done
    echo "repo $data/pgbackrest"
}

down() {
    local d pid
    for d in "$dir"/h*/; do
        [ -f "$d/docker.pid" ] || continue
        pid=$(cat "$d/docker.pid")
        # Containers first, so no mount or process stays behind the engine.
        docker -H "unix://$d/docker.sock" ps -aq 2>/dev/null |
            xargs -r docker -H "unix://$d/docker.sock" rm -f >/dev/null 2>&1 || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-h[0-9]+$" || true); do
        ip netns del "$ns"
    done
    for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${name}h[0-9]+$" || true); do
        ip link del "$l" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    while iptables -C FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null; do
        iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
    done
    # The engines' data: overlay mounts first, then the files.
    grep -o " $data/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$data" "$dir"
    rmdir --ignore-fail-on-non-empty /run/pgrunbook-hosts /var/lib/pgrunbook-hosts 2>/dev/null || true
}

case $cmd in
up) up "${3:?N}" "${4:-}" ;;
cut) ip link set "${name}h${3:?I}" down ;;
heal) ip link set "${name}h${3:?I}" up ;;
down) down ;;
*)
    echo "usage: lab-hosts.sh up|cut|heal|down NAME ..." >&2
    exit 2
    ;;
esac
