#!/usr/bin/env bash
# Interoperability with perfSONAR owamp 5.2.3 on loopback, in every mode and both directions:
# our owping against the reference owampd, and the reference owping against our owampd.
# Needs the reference binaries (../shared/reference/perfsonar-owamp-5.2.3/bin beside the
# checkout, or REFERENCE_BIN); without them it says so and exits 0.
#
# Prints one line per run and a closing "N passed, M failed" line; exits 1 on any failure.
# Every run is bounded in time (timeout) and count (-c 20); owampd processes are stopped however
# the script ends.
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
ref="${REFERENCE_BIN:-$root/../shared/reference/perfsonar-owamp-5.2.3/bin}"
if [ ! -x "$ref/owampd" ] || [ ! -x "$ref/owping" ]; then
    echo "interop-reference: no reference binaries at $ref; skipped"
    exit 0
fi
ours="${OURS_BIN:-}"
if [ -z "$ours" ]; then
    cargo build --release -q -p owamp-cli --bins || exit 1
    ours="${CARGO_TARGET_DIR:-$root/target}/release"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/interop.XXXXXX")" || exit 1
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.2
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass="correct horse battery staple"
hex=$(printf '%s' "$pass" | od -An -tx1 | tr -d ' \n')
printf 'alice\t%s\n' "$hex" > "$work/alice.pfs"

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME BIN_DIR: a server configuration in $work/NAME, the daemon started, its
# port in $port.
start_server() {
    local name=$1 bin=$2 dir="$work/$1"
    mkdir -p "$dir/data"
    chmod 755 "$dir"
    chmod 777 "$dir/data"
    port=$(free_port)
    printf 'srcnode 127.0.0.1:%s\ndatadir %s/data\nvardir %s\ntestports 9000-9400\n' \
        "$port" "$dir" "$dir" > "$dir/owamp-server.conf"
    printf 'limit root with disk=0, bandwidth=0, delete_on_fetch=on, allow_open_mode=on\nassign default root\n' \
        > "$dir/owamp-server.limits"
    cp "$work/alice.pfs" "$dir/owamp-server.pfs"
    "$bin/owampd" -Z -f -c "$dir" > "$dir/daemon.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "interop-reference: $name did not start"; cat "$dir/daemon.log"
    return 1
}

passed=0
failed=0
# run LABEL CLIENT_BIN PORT MODE DIRECTION
run() {
    local label=$1 bin=$2 port=$3 mode=$4 dir=$5 auth=()
    [ "$mode" != O ] && auth=(-A "$mode" -u alice -k "$work/alice.pfs")
    local out="$work/out.txt" flags=()
    [ -n "$dir" ] && flags=("$dir")
    timeout 60 "$bin/owping" "${auth[@]}" "${flags[@]}" -c 20 -i 0.01 -L 2 "127.0.0.1:$port" \
        > "$out" 2>&1
    local expect=2
    case "$dir" in -t|-f) expect=1 ;; esac
    if grep -q 'sent, ' "$out" && [ "$(grep -c '20 sent, 0 lost' "$out")" -eq "$expect" ]; then
        echo "ok   $label mode $mode ${dir:-both}"
        passed=$((passed + 1))
    else
        echo "FAIL $label mode $mode ${dir:-both}"
        sed 's/^/    /' "$out"
        failed=$((failed + 1))
    fi
}

start_server reference "$ref" || exit 1
ref_port=$port
start_server ours "$ours" || exit 1
our_port=$port

for mode in O A E; do
    for dir in "" -t -f; do
        run "our owping -> reference owampd" "$ours" "$ref_port" "$mode" "$dir"
        run "reference owping -> our owampd" "$ref" "$our_port" "$mode" "$dir"
    done
done
# owup LABEL CLIENT_BIN PORT MODE: the server's start time, in the reference's format.
owup() {
    local label=$1 bin=$2 port=$3 mode=$4 auth=()
    [ "$mode" != O ] && auth=(-A "$mode" -u alice -k "$work/alice.pfs")
    local out="$work/owup.txt"
    if timeout 20 "$bin/owup" "${auth[@]}" "127.0.0.1:$port" > "$out" 2>&1 &&
        grep -Eq '^Server Up Since: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}[A-Z+-]' "$out"; then
        echo "ok   $label owup mode $mode"
        passed=$((passed + 1))
    else
        echo "FAIL $label owup mode $mode"
        sed 's/^/    /' "$out"
        failed=$((failed + 1))
    fi
}
for mode in O E; do
    owup "our owup -> reference owampd" "$ours" "$ref_port" "$mode"
    owup "reference owup -> our owampd" "$ref" "$our_port" "$mode"
done
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
