#!/usr/bin/env bash
# Benchmark: one of our powstream processes measuring to PEERS peers (--peers) against PEERS
# perfSONAR powstream processes doing the same, side by side in one run, on loopback.
#
# Each peer is one of our owampds on its own port of 127.0.0.1 (so PEERS owampds run); both
# powstreams measure from every peer at once (the default direction: the owampd sends, the
# powstream receives), at 10 packets/s, in sessions of COUNT packets, for SECONDS, then get
# SIGTERM. Reported per side: CPU seconds (user + system, reaped children included, from
# /proc), peak RSS (VmHWM; summed over the reference's processes) and PSS at the end (summed),
# threads, sessions saved, and the loss over the saved sessions' .sum files.
#
# Usage: scripts/bench-mesh.sh [PEERS [SECONDS [COUNT]]]   (defaults: 100 60 100)
# Loopback only; every process started is stopped however the script ends. The reference side
# is skipped when its binaries are absent (REFERENCE_BIN overrides where).
set -u

peers=${1:-100}
seconds=${2:-60}
count=${3:-100}
interval=0.1
loss_timeout=5

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
cargo build --release -q -p owamp-cli --bins || exit 1
bin="${CARGO_TARGET_DIR:-$root/target}/release"
ref="${REFERENCE_BIN:-$root/../shared/reference/perfsonar-owamp-5.2.3/bin}"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-mesh.XXXXXX")" || exit 1
chmod 755 "$work"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PEERS free TCP ports of 127.0.0.1.
ports=$(python3 -c "
import socket
ss = [socket.socket() for _ in range($peers)]
for s in ss: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in ss))
")

# The owampds: one a peer, our per-address limits off (both powstreams come from 127.0.0.1).
i=0
for port in $ports; do
    d="$work/owampd/$i"
    mkdir -p "$d/data"
    printf 'srcnode 127.0.0.1:%s\ndatadir %s/data\nvardir %s\nmaxcontrolsessionsperaddr 0\nmaxsessionsperaddr 0\n' \
        "$port" "$d" "$d" > "$d/owamp-server.conf"
    printf 'limit root with disk=0, bandwidth=0, delete_on_fetch=on, allow_open_mode=on\nassign default root\n' \
        > "$d/owamp-server.limits"
    "$bin/owampd" -Z -f -c "$d" > "$d/daemon.log" 2>&1 &
    pids+=($!)
    i=$((i + 1))
done
for port in $ports; do
    up=""
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    [ -n "$up" ] || { echo "owampd on port $port did not start"; exit 1; }
done

# CPU seconds (user + system, children reaped included) of the processes given.
cpu_of() {
    local hz total=0 p c
    hz=$(getconf CLK_TCK)
    for p in "$@"; do
        c=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null)
        total=$((total + ${c:-0}))
    done
    echo "scale=2; $total / $hz" | bc
}

# "PEAK_RSS_KIB PSS_KIB THREADS" summed over the processes given.
mem_of() {
    local p hwm=0 pss=0 thr=0 a b c
    for p in "$@"; do
        a=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
        b=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
        c=$(awk '/^Threads:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
        hwm=$((hwm + ${a:-0}))
        pss=$((pss + ${b:-0}))
        thr=$((thr + ${c:-0}))
    done
    echo "$hwm $pss $thr"
}

# "SESSIONS SENT LOST" over the .sum files under a directory (sub-session summaries aside).
loss_of() {
    find "$1" -name '*.sum' -print0 | xargs -0 -r awk -F'\t' '
        $1 == "SENT" { sent += $2; n++ } $1 == "LOST" { lost += $2 }
        END { printf "%d %d %d", n, sent, lost }'
}

opts=(-c "$count" -i "$interval" -L "$loss_timeout" -I 5)

# Ours: one process, every peer.
mkdir -p "$work/ours"
: > "$work/peers"
for port in $ports; do echo "127.0.0.1:$port" >> "$work/peers"; done
"$bin/powstream" "${opts[@]}" -d "$work/ours" --peers "$work/peers" \
    --archive "$work/ours/archive.jsonl" > "$work/ours.out" 2> "$work/ours.err" &
ours=$!
pids+=("$ours")

# The reference: a process a peer.
refs=()
if [ -x "$ref/powstream" ]; then
    i=0
    for port in $ports; do
        mkdir -p "$work/ref/$i"
        "$ref/powstream" "${opts[@]}" -d "$work/ref/$i" "127.0.0.1:$port" \
            > /dev/null 2>> "$work/ref.err" &
        refs+=($!)
        pids+=($!)
        i=$((i + 1))
    done
fi

echo "== $peers peers, $interval s mean interval, $count-packet sessions, $seconds s"
# Peaks are read just before the signal (VmHWM keeps the peak); PSS is sampled.
peak_pss_ours=0
peak_pss_ref=0
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
    m=$(mem_of "$ours"); p=$(echo "$m" | cut -d' ' -f2)
    [ "$p" -gt "$peak_pss_ours" ] && peak_pss_ours=$p
    if [ ${#refs[@]} -gt 0 ]; then
        m=$(mem_of "${refs[@]}"); p=$(echo "$m" | cut -d' ' -f2)
        [ "$p" -gt "$peak_pss_ref" ] && peak_pss_ref=$p
    fi
    sleep 2
done

report() {
    local name=$1 dir=$2 peak_pss=$3
    shift 3
    local cpu m loss
    cpu=$(cpu_of "$@")
    m=$(mem_of "$@")
    read -r hwm _ thr <<< "$m"
    loss=$(loss_of "$dir")
    read -r n sent lost <<< "$loss"
    printf '%-10s procs=%-4s cpu=%6.2fs peak_rss=%7.1fMiB peak_pss=%7.1fMiB threads=%-4s sessions=%-5s sent=%-7s lost=%s\n' \
        "$name" "$#" "$cpu" "$(echo "$hwm / 1024" | bc -l)" "$(echo "$peak_pss / 1024" | bc -l)" \
        "$thr" "$n" "$sent" "$lost"
}
report ours "$work/ours" "$peak_pss_ours" "$ours"
if [ ${#refs[@]} -gt 0 ]; then
    report reference "$work/ref" "$peak_pss_ref" "${refs[@]}"
else
    echo "reference: binaries not found, skipped"
fi
if [ -s "$work/ours/archive.jsonl" ]; then
    echo "archive lines: $(wc -l < "$work/ours/archive.jsonl"), complete: $(grep -c '"complete":true' "$work/ours/archive.jsonl")"
fi
echo "stderr lines: ours $(wc -l < "$work/ours.err"), reference $(wc -l < "$work/ref.err" 2>/dev/null || echo 0)"
grep -v 'NTP: Status UNSYNC' "$work/ours.err" | head -5
