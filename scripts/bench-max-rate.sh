#!/usr/bin/env bash
# The highest packet rate one OWAMP session holds on loopback, side by side in one run: our
# owping against our owampd, perfSONAR's owping against perfSONAR's owampd, and a raw UDP
# blast of datagrams of the same size (owamp-std's udp_blast example: a paced sender and a
# receiver sized as ours, no protocol) as the baseline.
#
# A rate "holds" when every packet was sent, at most 0.01 % were lost and the sender achieved
# at least 95 % of the rate (from the send timestamps of the session, by owamp-std's
# session_rate example; the blast measures its own). Rates are tried in increasing order from
# RATES; the first that fails ends the search for that row. Each session has
# max(MIN_PACKETS, rate * SECONDS) packets on a fixed schedule (owping -i 1/rate followed by
# 'f'), open mode, loss timeout 2 s, in one direction: owping -t (owping sends, owampd
# receives) and owping -f (owampd sends).
#
# Prints one table: per row the highest rate that held and its ratio to the blast's and to the
# reference's. Loopback only; every run is bounded (timeout; at most 2,000,000 packets a
# session); the daemons are stopped however the script ends.
#
# Usage: scripts/bench-max-rate.sh   (RATES="20000 50000 100000 150000 200000 300000 400000"
#                                      SECONDS_EACH=1 MIN_PACKETS=50000)
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
ref="${REFERENCE_BIN:-$root/../shared/reference/perfsonar-owamp-5.2.3/bin}"
rates="${RATES:-20000 50000 100000 150000 200000 300000 400000}"
seconds="${SECONDS_EACH:-1}"
min_packets="${MIN_PACKETS:-50000}"
for v in $rates "$seconds" "$min_packets"; do
    case "$v" in '' | *[!0-9]*) echo "bench-max-rate: rates and counts must be positive integers"; exit 2 ;; esac
done

(cd "$root" && cargo build --release -q -p owamp-cli --bins &&
    cargo build --release -q -p owamp-std --example udp_blast --example session_rate) || exit 1
target="${CARGO_TARGET_DIR:-$root/target}/release"
ours="$target"
have_ref=1
if [ ! -x "$ref/owampd" ] || [ ! -x "$ref/owping" ]; then
    echo "bench-max-rate: no reference binaries at $ref; reference rows skipped"
    have_ref=0
fi

# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
bench_workdir max-rate

count_for() {
    local n=$(($1 * seconds))
    [ "$n" -lt "$min_packets" ] && n=$min_packets
    [ "$n" -gt 2000000 ] && n=2000000
    echo "$n"
}

# held LINE RATE: whether a "... lost_pct X achieved_pps Y" line meets the bar.
held() {
    awk -v r="$2" '{ for (i = 1; i < NF; i++) { if ($i == "lost_pct") l = $(i + 1); if ($i == "achieved_pps") a = $(i + 1) } }
        END { exit !(l != "" && l <= 0.01 && a >= 0.95 * r) }' <<< "$1"
}

# try_owping BIN PORT DIR RATE: one session; prints session_rate's line, or "fail: why".
try_owping() {
    local bin=$1 port=$2 dir=$3 rate=$4 n interval file out="$work/owping.out"
    n=$(count_for "$rate")
    interval=$(awk -v r="$rate" 'BEGIN { printf "%.9f", 1 / r }')
    file="$work/session.owp"
    rm -f "$file"
    if [ "$dir" = -t ]; then set -- -T "$file"; else set -- -F "$file"; fi
    if ! timeout $((n / rate + 60)) "$bin/owping" "$dir" -c "$n" -i "${interval}f" -L 2 "$@" \
        "127.0.0.1:$port" > "$out" 2>&1; then
        echo "fail: owping exited non-zero: $(grep -m1 -i 'lost\|error\|unable' "$out")"
        return
    fi
    [ -s "$file" ] || { echo "fail: no session file"; return; }
    "$target/examples/session_rate" "$file" || echo "fail: unreadable session"
}

try_blast() {
    local rate=$1
    timeout 120 "$target/examples/udp_blast" --rate "$rate" --packets "$(count_for "$rate")" ||
        echo "fail: udp_blast"
}

# search NAME CMD...: runs CMD RATE for each rate; prints the highest that held (0 if none).
search() {
    local name=$1 best=0 line
    shift
    for r in $rates; do
        line=$("$@" "$r")
        echo "  $name at $r/s: $line" >&2
        if held "$line" "$r"; then best=$r; else break; fi
    done
    echo "$best"
}

start_owampd ours "$ours" 9500-9700 "$work" || exit 1
our_port=$port
if [ "$have_ref" = 1 ]; then
    start_owampd reference "$ref" 9800-9999 "$work" || exit 1
    ref_port=$port
fi

blast=$(search "raw UDP blast" try_blast)
declare -A best
for d in -t -f; do
    best[ours$d]=$(search "ours $d" try_owping "$ours" "$our_port" "$d")
    [ "$have_ref" = 1 ] && best[ref$d]=$(search "reference $d" try_owping "$ref" "$ref_port" "$d")
done

ratio() {
    awk -v v="$1" -v r="${2:-0}" 'BEGIN { if (r > 0) printf "%.2f", v / r; else print "-" }'
}
echo
echo "Highest rate one session holds (all sent, loss <= 0.01 %, >= 95 % of the rate achieved), loopback"
printf '%-28s %12s %12s %14s\n' "what" "packets/s" "/ raw blast" "/ reference"
printf '%-28s %12s %12s %14s\n' "raw UDP blast" "$blast" "1.00" "-"
for d in -t -f; do
    printf '%-28s %12s %12s %14s\n' "ours, owping $d" "${best[ours$d]}" \
        "$(ratio "${best[ours$d]}" "$blast")" "$(ratio "${best[ours$d]}" "${best[ref$d]:-0}")"
    [ "$have_ref" = 1 ] && printf '%-28s %12s %12s %14s\n' "reference, owping $d" "${best[ref$d]}" \
        "$(ratio "${best[ref$d]}" "$blast")" "1.00"
done
exit 0
