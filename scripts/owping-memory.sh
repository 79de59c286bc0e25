#!/usr/bin/env bash
# Peak resident memory of owping over one long session in each direction ("-t": the server
# receives and the records are fetched; "-f": the client receives), against a private owampd
# from this tree on 127.0.0.1 (release build), measured with `/usr/bin/time -f %M` (KiB).
#
# Usage: scripts/owping-memory.sh [count] [interval]        (default: 1000000 0.00001)
#
# Other owpings measured against the same owampd, in the same run, when given:
#   OWPING_BEFORE=<file>    an owping built from an earlier commit
#   REFERENCE_BIN=<dir>     perfSONAR's bin directory (its owping); by default
#                           ../shared/reference/perfsonar-owamp-5.2.3/bin beside the checkout
#
# Loopback only; every owping run is bounded by `timeout`, and owampd is stopped however the
# script ends.
set -u

count="${1:-1000000}"
interval="${2:-0.00001}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1

cargo build --release -q -p owamp-cli --bins || exit 1
bin="${CARGO_TARGET_DIR:-$root/target}/release"
ref="${REFERENCE_BIN:-$root/../shared/reference/perfsonar-owamp-5.2.3/bin}"

work="$(mktemp -d "${TMPDIR:-/tmp}/owping-memory.XXXXXX")" || exit 1
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$daemon_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$daemon_pid" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/data"
# The server forgets what was fetched, so that the disk holds one session at a time.
cat > "$work/owamp-server.conf" <<CONF
srcnode 127.0.0.1:0
datadir $work/data
vardir $work
CONF
printf 'limit root with disk=0, bandwidth=0, delete_on_fetch=on, allow_open_mode=on\nassign default root\n' \
    > "$work/owamp-server.limits"
"$bin/owampd" -f -Z -c "$work" 2>"$work/owampd.log" &
daemon_pid=$!
port=""
for _ in $(seq 1 100); do
    port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$work/owampd.log" | head -n 1)"
    [ -n "$port" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "owampd did not start:" >&2
    cat "$work/owampd.log" >&2
    exit 1
fi

owpings=("this tree=$bin/owping")
[ -n "${OWPING_BEFORE:-}" ] && owpings=("before=$OWPING_BEFORE" "${owpings[@]}")
[ -x "$ref/owping" ] && owpings+=("perfSONAR 5.2.3=$ref/owping")

printf '%-16s %-4s %12s %5s  %s\n' owping dir "peak RSS KiB" exit summary
for entry in "${owpings[@]}"; do
    label="${entry%%=*}"
    owping="${entry#*=}"
    for dir in -t -f; do
        # The session lasts count * interval; the fetch and the statistics follow.
        timeout 600 /usr/bin/time -f %M -o "$work/rss" \
            "$owping" "$dir" -c "$count" -i "$interval" -L 2 "127.0.0.1:$port" \
            > "$work/out" 2>&1
        status=$?
        summary="$(grep -m1 ' sent, ' "$work/out")"
        printf '%-16s %-4s %12s %5s  %s\n' "$label" "$dir" "$(tail -n 1 "$work/rss")" \
            "$status" "${summary:-$(tail -n 1 "$work/out")}"
    done
done
