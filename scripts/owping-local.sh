#!/usr/bin/env bash
# Runs a one-way latency test against a private owampd on 127.0.0.1:
# builds the tools in release mode, starts owampd with a temporary configuration directory on
# a free port, runs `owping -c 100 -i 0.01` against it, prints the result, stops owampd and
# exits with owping's status. Every wait is bounded; owampd is stopped however the script ends.
#
# Usage: scripts/owping-local.sh [extra owping arguments]
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1

echo "== building (release)" >&2
cargo build --release -p owamp-cli --bins >&2 || exit 1
bin="${CARGO_TARGET_DIR:-$root/target}/release"

work="$(mktemp -d "${TMPDIR:-/tmp}/owping-local.XXXXXX")" || exit 1
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null
        # Bounded wait for a clean shutdown, then force it.
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
# Port 0: owampd binds a free port and logs it.
cat > "$work/owamp-server.conf" <<CONF
srcnode 127.0.0.1:0
datadir $work/data
vardir $work
CONF

echo "== starting owampd" >&2
# -f: allowed to run as root (for containers); -Z: foreground (owampd always is).
"$bin/owampd" -f -Z -c "$work" 2>"$work/owampd.log" &
daemon_pid=$!

port=""
for _ in $(seq 1 100); do
    port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$work/owampd.log" | head -n 1)"
    [ -n "$port" ] && break
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "owampd did not start:" >&2
    cat "$work/owampd.log" >&2
    exit 1
fi
echo "== owampd listening on 127.0.0.1:$port" >&2

echo "== owping -c 100 -i 0.01 127.0.0.1:$port" >&2
if command -v timeout >/dev/null 2>&1; then
    timeout 120 "$bin/owping" -c 100 -i 0.01 "$@" "127.0.0.1:$port"
else
    "$bin/owping" -c 100 -i 0.01 "$@" "127.0.0.1:$port"
fi
status=$?

echo "== owampd log" >&2
cat "$work/owampd.log" >&2
echo "== owping exit status: $status" >&2
exit "$status"
