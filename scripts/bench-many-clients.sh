#!/usr/bin/env bash
# Benchmark: one owampd serving many concurrent clients, ours and perfSONAR's side by side in
# one run. Each client (all from one load-generator process, owamp-tokio's many_clients
# example) runs a session in each direction; the script reports, per server, how many clients
# completed with no loss, the server's CPU time (user + system, from /proc), and the peak of
# its memory (PSS, children included) and of its threads.
#
# Usage: scripts/bench-many-clients.sh [CLIENTS [PACKETS [INTERVAL_MS]]]
#   defaults: 1000 clients, 50 packets each way, 100 ms apart (10 packets/s per session).
# Loopback only; every run is bounded by timeout; servers are stopped however the script ends.
# The reference row is skipped when its binaries are absent (REFERENCE_BIN overrides where).
set -u

clients=${1:-1000}
packets=${2:-50}
interval=${3:-100}

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
cargo build --release -q -p owamp-cli --bins || exit 1
cargo build --release -q -p owamp-tokio --example many_clients || exit 1
bin="${CARGO_TARGET_DIR:-$root/target}/release"
gen="$bin/examples/many_clients"
ref="${REFERENCE_BIN:-$root/../shared/reference/perfsonar-owamp-5.2.3/bin}"

# Every client holds a TCP connection and two UDP sockets, on both sides.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d "${TMPDIR:-/tmp}/many-clients.XXXXXX")" || exit 1
chmod 755 "$work"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        sleep 0.5
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system) of a process so far, its reaped children's included (the
# reference forks a process per control connection), from /proc/PID/stat.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15 + $16 + $17) / hz }' \
        "/proc/$1/stat" 2>/dev/null
}

# "PSS_KIB THREADS" summed over a process and its children (proportional set size, so that
# pages forked children share are counted once).
tree_usage() {
    local p rss=0 thr=0 r t
    for p in "$1" $(pgrep -P "$1"); do
        r=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
        t=$(awk '/^Threads:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
        rss=$((rss + ${r:-0}))
        thr=$((thr + ${t:-0}))
    done
    echo "$rss $thr"
}

# bench NAME BIN_DIR: one server, the load, the figures.
bench() {
    local name=$1 sbin=$2 dir="$work/$1"
    mkdir -p "$dir/data"
    chmod 755 "$dir"
    chmod 777 "$dir/data"
    local port
    port=$(free_port)
    printf 'srcnode 127.0.0.1:%s\ndatadir %s/data\nvardir %s\nmaxcontrolsessions %s\n' \
        "$port" "$dir" "$dir" "$((clients * 2))" > "$dir/owamp-server.conf"
    # Every client comes from 127.0.0.1: our per-address limits off (perfSONAR has none,
    # and refuses keywords it does not know).
    if [ "$name" = ours ]; then
        printf 'maxcontrolsessionsperaddr 0\nmaxsessionsperaddr 0\n' >> "$dir/owamp-server.conf"
    fi
    printf 'limit root with disk=0, bandwidth=0, delete_on_fetch=on, allow_open_mode=on\nassign default root\n' \
        > "$dir/owamp-server.limits"
    "$sbin/owampd" -Z -f -c "$dir" > "$dir/daemon.log" 2>&1 &
    pid=$!
    local up=""
    for _ in $(seq 1 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "$name: owampd did not start"; cat "$dir/daemon.log"; return 1
    fi
    local cpu0 threads=0 peak=0 u r t
    cpu0=$(cpu_of "$pid")
    timeout 600 "$gen" --server "127.0.0.1:$port" --clients "$clients" --packets "$packets" \
        --interval-ms "$interval" > "$dir/gen.out" 2>&1 &
    local gpid=$!
    # Sample memory and threads (the server's and its children's) while the load runs.
    while kill -0 "$gpid" 2>/dev/null; do
        u=$(tree_usage "$pid")
        r=${u% *}
        t=${u#* }
        [ "$r" -gt "$peak" ] && peak=$r
        [ "$t" -gt "$threads" ] && threads=$t
        sleep 0.5
    done
    wait "$gpid"
    # Children that served a connection have exited and been reaped by now.
    sleep 1
    local cpu1
    cpu1=$(cpu_of "$pid")
    printf '%-10s %s server_cpu=%.2fs peak_pss=%.1fMiB max_threads=%s\n' "$name" \
        "$(tail -n 1 "$dir/gen.out")" "$(echo "$cpu1 - $cpu0" | bc)" \
        "$(echo "$peak / 1024" | bc -l)" "$threads"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
}

echo "== $clients clients, $packets packets each way every ${interval} ms"
bench ours "$bin"
if [ -x "$ref/owampd" ]; then
    bench reference "$ref"
else
    echo "reference: binaries not found, skipped"
fi
