# Shared by the benchmark scripts (source it; it defines functions only).
#
#   free_port                       prints a free TCP port on 127.0.0.1
#   start_owampd NAME BIN PORTS DIR starts BIN/owampd in the foreground (-Z) on 127.0.0.1 with
#                                   test ports PORTS, its config and data under DIR/NAME, open
#                                   mode allowed, no disk or bandwidth limit, delete_on_fetch;
#                                   sets $port and $server_pid and appends the pid to $pids.
#                                   Returns 1 (with its log) if it is not listening in 5 s.
#   proc_cpu PID                    user+sys CPU seconds of PID so far, reaped children included
#   bench_workdir NAME              makes the temporary directory $work (bench-NAME.XXXXXX) and an
#                                   empty $pids, and on exit (or INT/TERM) stops every pid in
#                                   $pids (TERM, then KILL) and removes $work

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_owampd() {
    local name=$1 bin=$2 ports=$3 dir="$4/$1"
    mkdir -p "$dir/data"
    chmod 755 "$dir"
    chmod 777 "$dir/data"
    port=$(free_port)
    printf 'srcnode 127.0.0.1:%s\ndatadir %s/data\nvardir %s\ntestports %s\n' \
        "$port" "$dir" "$dir" "$ports" > "$dir/owamp-server.conf"
    printf 'limit root with disk=0, bandwidth=0, delete_on_fetch=on, allow_open_mode=on\nassign default root\n' \
        > "$dir/owamp-server.limits"
    "$bin/owampd" -Z -f -c "$dir" > "$dir/daemon.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$name owampd did not start"
    cat "$dir/daemon.log"
    return 1
}

proc_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"
}

bench_workdir() {
    work="$(mktemp -d "${TMPDIR:-/tmp}/bench-$1.XXXXXX")" || exit 1
    chmod 755 "$work"
    pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.2
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
