#!/usr/bin/env bash
# CPU cost of the tools on loopback, side by side with perfSONAR owamp 5.2.3 in one run:
#
#   owping: user+sys seconds of one measurement of PACKETS packets each way at RATE packets/s
#           (owping -c PACKETS -i 1/RATE, both directions), for our owping, the reference
#           owping and, if BASE_BIN names a directory holding an earlier build, that one; all
#           against the same server (the reference owampd when there is one, else ours).
#   owampd: user+sys seconds (children included) the server spends serving one such
#           measurement of SERVER_PACKETS packets each way, ours, the reference's and, with
#           BASE_BIN, that build's; the client is our owping.
#
# Prints a table with each figure's ratio to the reference's, then how late the packets of the
# last run of each left (send timestamp minus scheduled time, from the sessions saved with
# owping -T/-F, by owamp-std's send_lateness example): the owping rows' "to" sessions were sent
# by that owping, the owampd rows' "from" sessions by that owampd. Rows of the reference are skipped,
# with a message, if its binaries are absent (../shared/reference/perfsonar-owamp-5.2.3/bin
# beside the checkout, or REFERENCE_BIN). Loopback only; every run is bounded (timeout, packet
# counts capped at 100,000, REPEAT at most 5); the daemons are stopped however the script ends.
#
# Usage: scripts/bench-cpu.sh            (PACKETS=5000 SERVER_PACKETS=10000 RATE=1000 REPEAT=1)
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
ref="${REFERENCE_BIN:-$root/../shared/reference/perfsonar-owamp-5.2.3/bin}"
base="${BASE_BIN:-}"
packets="${PACKETS:-5000}"
server_packets="${SERVER_PACKETS:-10000}"
rate="${RATE:-1000}"
repeat="${REPEAT:-1}"
for v in "$packets" "$server_packets" "$rate" "$repeat"; do
    case "$v" in '' | *[!0-9]*) echo "bench-cpu: counts must be positive integers"; exit 2 ;; esac
done
[ "$packets" -ge 1 ] && [ "$packets" -le 100000 ] || { echo "bench-cpu: PACKETS 1..100000"; exit 2; }
[ "$server_packets" -ge 1 ] && [ "$server_packets" -le 100000 ] || { echo "bench-cpu: SERVER_PACKETS 1..100000"; exit 2; }
[ "$rate" -ge 1 ] && [ "$rate" -le 100000 ] || { echo "bench-cpu: RATE 1..100000"; exit 2; }
[ "$repeat" -ge 1 ] && [ "$repeat" -le 5 ] || { echo "bench-cpu: REPEAT 1..5"; exit 2; }
interval=$(awk -v r="$rate" 'BEGIN { printf "%.6f", 1 / r }')

ours="${OURS_BIN:-}"
if [ -z "$ours" ]; then
    (cd "$root" && cargo build --release -q -p owamp-cli --bins) || exit 1
    ours="${CARGO_TARGET_DIR:-$root/target}/release"
fi
have_ref=1
if [ ! -x "$ref/owampd" ] || [ ! -x "$ref/owping" ]; then
    echo "bench-cpu: no reference binaries at $ref; reference rows skipped"
    have_ref=0
fi
if [ -n "$base" ] && { [ ! -x "$base/owping" ] || [ ! -x "$base/owampd" ]; }; then
    echo "bench-cpu: no owping and owampd in BASE_BIN=$base; base rows skipped"
    base=""
fi

# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
bench_workdir cpu

# owping_cpu BIN PORT COUNT LABEL: prints "user+sys" seconds of one owping run, or "fail";
# the sessions are kept as $work/LABEL-to.owp and $work/LABEL-from.owp.
owping_cpu() {
    local bin=$1 port=$2 count=$3 label=$4 out="$work/owping.out" t="$work/time.out"
    local limit=$((count / rate * 3 + 60))
    rm -f "$work/$label-to.owp" "$work/$label-from.owp"
    /usr/bin/time -f '%U %S' -o "$t" timeout "$limit" "$bin/owping" -c "$count" -i "$interval" \
        -T "$work/$label-to.owp" -F "$work/$label-from.owp" "127.0.0.1:$port" > "$out" 2>&1
    if [ "$(grep -c "$count sent, 0 lost" "$out")" -ne 2 ]; then
        echo fail
        sed 's/^/    /' "$out" >&2
        return
    fi
    awk '{ printf "%.3f", $1 + $2 }' "$t"
}

# server_cpu PID PORT LABEL: the server's CPU seconds for one measurement by our owping.
server_cpu() {
    local pid=$1 port=$2 label=$3 before after r
    before=$(proc_cpu "$pid")
    r=$(owping_cpu "$ours" "$port" "$server_packets" "$label")
    # Let the server reap the connection's process (the reference forks one per connection).
    sleep 1
    after=$(proc_cpu "$pid")
    if [ "$r" = fail ]; then echo fail; return; fi
    awk -v a="$after" -v b="$before" 'BEGIN { printf "%.3f", a - b }'
}

start_owampd ours "$ours" 9500-9700 "$work" || exit 1
our_port=$port
our_pid=$server_pid
if [ -n "$base" ]; then
    start_owampd base "$base" 9300-9499 "$work" || exit 1
    base_port=$port
    base_pid=$server_pid
fi
client_port=$our_port
client_server=ours
if [ "$have_ref" = 1 ]; then
    start_owampd reference "$ref" 9800-9999 "$work" || exit 1
    ref_port=$port
    ref_pid=$server_pid
    client_port=$ref_port
    client_server=reference
fi

# Mean of the numbers on stdin (or "fail" if any failed).
mean() { awk '/fail/ { f = 1 } { s += $1; n++ } END { if (f || !n) print "fail"; else printf "%.3f", s / n }'; }

declare -A cpu
rows=()
for i in $(seq 1 "$repeat"); do
    [ -n "$base" ] && echo "$(owping_cpu "$base" "$client_port" "$packets" owping-base)" >> "$work/owping-base"
    echo "$(owping_cpu "$ours" "$client_port" "$packets" owping-ours)" >> "$work/owping-ours"
    [ "$have_ref" = 1 ] && echo "$(owping_cpu "$ref" "$client_port" "$packets" owping-ref)" >> "$work/owping-ref"
    [ -n "$base" ] && echo "$(server_cpu "$base_pid" "$base_port" owampd-base)" >> "$work/owampd-base"
    echo "$(server_cpu "$our_pid" "$our_port" owampd-ours)" >> "$work/owampd-ours"
    [ "$have_ref" = 1 ] && echo "$(server_cpu "$ref_pid" "$ref_port" owampd-ref)" >> "$work/owampd-ref"
done
for f in owping-base owping-ours owping-ref owampd-base owampd-ours owampd-ref; do
    [ -f "$work/$f" ] && cpu[$f]=$(mean < "$work/$f")
done

ratio() {
    local v=$1 r=${2:-}
    if [ -z "$r" ] || [ "$v" = fail ] || [ "$r" = fail ]; then echo "-"; return; fi
    awk -v v="$v" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f", v / r; else print "-" }'
}

echo
echo "CPU seconds (user+sys), loopback, $rate packets/s, mean of $repeat run(s); ratio to the reference"
echo "owping: $packets packets each way, against the $client_server owampd; owampd: $server_packets packets each way"
printf '%-34s %10s %10s\n' "what" "cpu s" "ratio"
[ -n "$base" ] && printf '%-34s %10s %10s\n' "owping, BASE_BIN" "${cpu[owping-base]}" "$(ratio "${cpu[owping-base]}" "${cpu[owping-ref]:-}")"
printf '%-34s %10s %10s\n' "owping, ours" "${cpu[owping-ours]}" "$(ratio "${cpu[owping-ours]}" "${cpu[owping-ref]:-}")"
[ "$have_ref" = 1 ] && printf '%-34s %10s %10s\n' "owping, reference" "${cpu[owping-ref]}" "1.00"
[ -n "$base" ] && printf '%-34s %10s %10s\n' "owampd, BASE_BIN" "${cpu[owampd-base]}" "$(ratio "${cpu[owampd-base]}" "${cpu[owampd-ref]:-}")"
printf '%-34s %10s %10s\n' "owampd, ours" "${cpu[owampd-ours]}" "$(ratio "${cpu[owampd-ours]}" "${cpu[owampd-ref]:-}")"
[ "$have_ref" = 1 ] && printf '%-34s %10s %10s\n' "owampd, reference" "${cpu[owampd-ref]}" "1.00"

echo
echo "Send lateness of the last run (send timestamp minus scheduled time)"
files=()
for f in owping-base-to owping-ours-to owping-ref-to owampd-base-from owampd-ours-from owampd-ref-from; do
    [ -s "$work/$f.owp" ] && files+=("$work/$f.owp")
done
if [ "${#files[@]}" -gt 0 ] &&
    (cd "$root" && cargo build --release -q -p owamp-std --example send_lateness); then
    "${CARGO_TARGET_DIR:-$root/target}/release/examples/send_lateness" "${files[@]}" |
        sed "s|$work/||"
else
    echo "bench-cpu: no sessions saved, or the send_lateness example did not build; skipped"
fi
exit 0
