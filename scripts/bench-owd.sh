#!/usr/bin/env bash
# One-way delay against the kernel-timestamp floor, side by side with perfSONAR owamp 5.2.3 in
# one run, at each rate of RATES:
#
#   floor:     owamp-std's owd_floor example: a bare UDP sender stamping each datagram just
#              before send(2) and a receiver reading the kernel's receive timestamp, with the
#              same Poisson mean rate; no protocol at all.
#   ours:      our owping against our owampd, both directions (-T/-F keep the sessions).
#   reference: perfSONAR's owping against perfSONAR's owampd, the same way.
#
# Each session's delays (receive minus send timestamp) come from its .owp file through the
# send_lateness example, which also prints how late its sender was. The table gives the median
# and 99th percentile delay per direction and the p99's ratio to the floor's in the same run,
# and the 99th percentile of the sender's lateness (send timestamp minus scheduled time) with
# its ratio to the bare sender's.
# Loopback only; every run is bounded (timeout, counts capped); the daemons are stopped however
# the script ends. Reference rows are skipped, with a message, without its binaries
# (../shared/reference/perfsonar-owamp-5.2.3/bin beside the checkout, or REFERENCE_BIN).
#
# Usage: scripts/bench-owd.sh          (RATES="100 10000" SECONDS_EACH=20)
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
ref="${REFERENCE_BIN:-$root/../shared/reference/perfsonar-owamp-5.2.3/bin}"
rates="${RATES:-100 10000}"
seconds="${SECONDS_EACH:-20}"
case "$seconds" in '' | *[!0-9]*) echo "bench-owd: SECONDS_EACH must be a positive integer"; exit 2 ;; esac
[ "$seconds" -ge 1 ] && [ "$seconds" -le 120 ] || { echo "bench-owd: SECONDS_EACH 1..120"; exit 2; }
for r in $rates; do
    case "$r" in '' | *[!0-9]*) echo "bench-owd: rates must be positive integers"; exit 2 ;; esac
    [ "$r" -ge 1 ] && [ "$r" -le 50000 ] || { echo "bench-owd: rates 1..50000"; exit 2; }
done

(cd "$root" && cargo build --release -q -p owamp-cli --bins &&
    cargo build --release -q -p owamp-std --example owd_floor --example send_lateness) || exit 1
bin="${CARGO_TARGET_DIR:-$root/target}/release"
have_ref=1
if [ ! -x "$ref/owampd" ] || [ ! -x "$ref/owping" ]; then
    echo "bench-owd: no reference binaries at $ref; reference rows skipped"
    have_ref=0
fi

# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
bench_workdir owd

start_owampd ours "$bin" 9500-9700 "$work" || exit 1
our_port=$port
if [ "$have_ref" = 1 ]; then
    start_owampd reference "$ref" 9800-9999 "$work" || exit 1
    ref_port=$port
fi

# measure BIN PORT COUNT INTERVAL LABEL: one owping run both ways, sessions kept as
# $work/LABEL-to.owp and LABEL-from.owp; prints the send_lateness lines of both, or "fail".
measure() {
    local b=$1 p=$2 count=$3 interval=$4 label=$5 out="$work/owping.out"
    rm -f "$work/$label-to.owp" "$work/$label-from.owp"
    timeout $((seconds * 3 + 60)) "$b/owping" -c "$count" -i "$interval" -L 2 \
        -T "$work/$label-to.owp" -F "$work/$label-from.owp" "127.0.0.1:$p" > "$out" 2>&1
    if [ ! -s "$work/$label-to.owp" ] || [ ! -s "$work/$label-from.owp" ]; then
        echo fail
        sed 's/^/    /' "$out" >&2
        return
    fi
    "$bin/examples/send_lateness" "$work/$label-to.owp" "$work/$label-from.owp" | sed "s|$work/||"
}

# The median and p99 delay and the p99 send lateness of a send_lateness line.
delay_fields() {
    sed -n 's/.* p99 \([0-9.]*\) us, max .*delay median \([0-9.]*\) us, p99 \([0-9.]*\) us.*/\2 \3 \1/p'
}

ratio() {
    awk -v v="$1" -v r="$2" 'BEGIN { if (r > 0 && v != "") printf "%.2f", v / r; else print "-" }'
}

rows=()
for rate in $rates; do
    count=$((rate * seconds))
    [ "$count" -gt 200000 ] && count=200000
    interval=$(awk -v r="$rate" 'BEGIN { printf "%.6f", 1 / r }')
    floor_line=$("$bin/examples/owd_floor" --rate "$rate" --packets "$count")
    echo "rate $rate/s, floor: $floor_line"
    read -r f_med f_p99 < <(echo "$floor_line" | sed -n 's/.*delay_us median \([0-9.]*\) p90 [0-9.]* p99 \([0-9.]*\) .*/\1 \2/p')
    f_late=$(echo "$floor_line" | sed -n 's/.*late_us median [0-9.]* p90 [0-9.]* p99 \([0-9.]*\) .*/\1/p')
    rows+=("$(printf '%-8s %-26s %10s %10s %8s %10s %8s' "$rate" "floor (bare UDP)" "$f_med" "$f_p99" "1.00" "$f_late" "1.00")")
    for who in ours reference; do
        if [ "$who" = ours ]; then b=$bin; p=$our_port; else
            [ "$have_ref" = 1 ] || continue
            b=$ref; p=$ref_port
        fi
        lines=$(measure "$b" "$p" "$count" "$interval" "$who-$rate")
        echo "$lines" | sed "s/^/rate $rate\/s, $who: /"
        for dir in to from; do
            med="" p99="" late=""
            read -r med p99 late < <(echo "$lines" | grep "^$who-$rate-$dir.owp" | delay_fields)
            rows+=("$(printf '%-8s %-26s %10s %10s %8s %10s %8s' "$rate" "$who, $dir server" "${med:--}" "${p99:--}" "$(ratio "${p99:-}" "$f_p99")" "${late:--}" "$(ratio "${late:-}" "$f_late")")")
        done
    done
done

echo
echo "One-way delay on loopback (µs), $seconds s a rate, Poisson schedules; ratio: p99 over the floor's p99"
echo "late p99: the sender's send lateness (to server: owping's; from server: owampd's), its ratio to the bare sender's"
printf '%-8s %-26s %10s %10s %8s %10s %8s\n' "rate/s" "who, direction" "median" "p99" "ratio" "late p99" "ratio"
printf '%s\n' "${rows[@]}"
exit 0
