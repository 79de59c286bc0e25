#!/usr/bin/env bash
# Benchmark: one of our powstream processes measuring to PEERS peers (--peers) against PEERS
# perfSONAR powstream processes doing the same, side by side in one run, on loopback.
#
# Each peer is one of our owampds on its own port of 127.0.0.1 (so PEERS owampds run); both
# powstreams measure from every peer at once (the default direction: the owampd sends, the
# powstream receives), at 10 packets/s, in sessions of COUNT packets, for SECONDS, then get
# SIGTERM. Reported per side, over each powstream process and its descendants (perfSONAR's
# forks a worker a peer, and its receiving endpoints fork), read just before the signal: CPU
# seconds (time on a CPU, reaped children included, from /proc), the peak of the summed RSS
# (sampled every 5 s), the sum of each process's own peak (VmHWM), processes and threads, and
# after the signal, sessions saved and packets sent and lost over their .sum files, with and
# without each peer's last session (cut short by the signal).
#
# Usage: scripts/bench-mesh.sh [PEERS [SECONDS [COUNT]]]   (defaults: 100 60 100)
# Loopback only; every process started is stopped however the script ends. The reference side
# is skipped when its binaries are absent (REFERENCE_BIN overrides where).
set -u

peers=${1:-100}
seconds=${2:-60}
count=${3:-100}
interval=0.1
loss_timeout=2

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

# The processes given and all their descendants (perfSONAR's powstream forks a worker, and
# its test endpoints fork too), from one snapshot of the process table.
tree() {
    ps -e -o pid=,ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
        { parent[$1] = $2 }
        END {
            do {
                more = 0
                for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; more = 1 }
            } while (more)
            for (p in keep) if (p in parent) print p
        }'
}

# CPU seconds of the processes given and their descendants. A process's own time is the
# larger of its clock-tick count (/proc/PID/stat utime + stime: every thread, those that have
# exited too, rounded down to 10 ms) and the nanosecond sum over its live threads
# (/proc/PID/task/TID/schedstat), which keeps a reference process's few milliseconds from
# rounding to zero; its reaped children's time (cutime + cstime) is added.
cpu_of() {
    local hz p f own sched total=0
    hz=$(getconf CLK_TCK)
    for p in $(tree "$@"); do
        { read -r -a f < "/proc/$p/stat"; } 2>/dev/null || continue
        own=$(( (f[13] + f[14]) * 1000000 / hz ))
        sched=$(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%d", t / 1000 }')
        [ "${sched:-0}" -gt "$own" ] && own=$sched
        total=$(( total + own + (f[15] + f[16]) * 1000000 / hz ))
    done
    echo "scale=2; $total / 1000000" | bc
}

# "PEAK_RSS_KIB RSS_KIB THREADS PROCESSES" summed over the processes given and their
# descendants (VmHWM: each process's peak).
mem_of() {
    local files=() p
    for p in $(tree "$@"); do files+=("/proc/$p/status"); done
    # A process may end meanwhile: cat skips it.
    cat "${files[@]}" 2>/dev/null | awk '/^VmHWM:/ { h += $2 } /^VmRSS:/ { r += $2 }
        /^Threads:/ { t += $2; n++ } END { printf "%d %d %d %d", h, r, t, n }' 
}

# "SESSIONS SENT LOST" over the .sum files under a directory's peer directories; with
# "whole", without each peer's last session (the one the signal cut short).
loss_of() {
    local d files
    for d in "$1"/*/; do
        files=$(find "$d" -maxdepth 1 -name '*.sum' | sort)
        [ "$2" = whole ] && files=$(echo "$files" | sed '$d')
        echo "$files"
    done | grep . | tr '\n' '\0' | xargs -0 -r awk -F'\t' '
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
# The sum of the RSS of a side's processes is sampled every 5 s (its peak: the processes
# that are alive together); each process's own peak (VmHWM) is read at the end.
peak_sum_ours=0
peak_sum_ref=0
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
    read -r _ r _ _ <<< "$(mem_of "$ours")"
    [ "${r:-0}" -gt "$peak_sum_ours" ] && peak_sum_ours=$r
    if [ ${#refs[@]} -gt 0 ]; then
        read -r _ r _ _ <<< "$(mem_of "${refs[@]}")"
        [ "${r:-0}" -gt "$peak_sum_ref" ] && peak_sum_ref=$r
    fi
    sleep 5
done
# Both sides' figures at the same moment, before the signal.
cpu_ours=$(cpu_of "$ours")
mem_ours=$(mem_of "$ours")
if [ ${#refs[@]} -gt 0 ]; then
    cpu_ref=$(cpu_of "${refs[@]}")
    mem_ref=$(mem_of "${refs[@]}")
fi
elapsed=$((SECONDS - end + seconds))
for p in "$ours" "${refs[@]}"; do kill -TERM "$p" 2>/dev/null; done
sleep 3

report() {
    local name=$1 dir=$2 peak_sum=$3 cpu=$4 m=$5 hwm thr procs n sent lost
    read -r hwm _ thr procs <<< "$m"
    read -r n sent lost <<< "$(loss_of "$dir" all)"
    read -r wn wsent wlost <<< "$(loss_of "$dir" whole)"
    printf '%-10s procs=%-4s cpu=%6.2fs peak_rss_sum=%7.1fMiB sum_of_peaks=%7.1fMiB threads=%-4s\n' \
        "$name" "$procs" "$cpu" "$(echo "$peak_sum / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" "$thr"
    printf '%-10s all sessions: %s, sent %s, lost %s; without the interrupted: %s, sent %s, lost %s\n' \
        "" "$n" "$sent" "$lost" "$wn" "$wsent" "$wlost"
}
echo "(measured over ${elapsed} s)"
report ours "$work/ours" "$peak_sum_ours" "$cpu_ours" "$mem_ours"
if [ ${#refs[@]} -gt 0 ]; then
    report reference "$work/ref" "$peak_sum_ref" "$cpu_ref" "$mem_ref"
else
    echo "reference: binaries not found, skipped"
fi
if [ -s "$work/ours/archive.jsonl" ]; then
    echo "archive lines: $(wc -l < "$work/ours/archive.jsonl"), complete: $(grep -c '"complete":true' "$work/ours/archive.jsonl")"
fi
echo "stderr lines: ours $(wc -l < "$work/ours.err"), reference $(wc -l < "$work/ref.err" 2>/dev/null || echo 0)"
grep -v 'NTP: Status UNSYNC' "$work/ours.err" | head -5
