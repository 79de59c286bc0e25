#!/usr/bin/env bash
# A real Prometheus scraping our metrics (docs/metrics.md, docs/mesh.md): two owampd on
# 127.0.0.1 as the peers, one powstream measuring from both, a Prometheus (the Debian
# `prometheus` package) scraping the three endpoints every second with the mesh rules
# of docs/examples/owamp-rules.yml. Checks through Prometheus's HTTP API that the loss and
# delay series of both peers are there with loopback's values (no loss, a delay between 0 and
# a second) and that the recording rules give the mesh-wide numbers; `promtool check metrics`
# on every endpoint and `promtool check rules` on the rules file.
#
# Skips (status 0, with a message) without prometheus, promtool, curl or python3. Everything
# it starts is killed on exit; it takes about 15 s. `cargo test` runs it (owamp-cli's test
# `prometheus`); .ci/run installs the prometheus package first.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in prometheus promtool curl python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "prometheus-test: $tool not found (apt-get install prometheus curl python3): skipped"
        exit 0
    fi
done

# The binaries: as given (owamp-cli's test `prometheus` runs this script with those of its
# build), or built here.
if [ -z "${OWAMPD:-}" ] || [ -z "${POWSTREAM:-}" ]; then
    export CARGO_INCREMENTAL=0
    cargo build -q -p owamp-cli --bin owampd --bin powstream
    OWAMPD=target/debug/owampd
    POWSTREAM=target/debug/powstream
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "prometheus-test: FAILED: $*"
    for f in "$WORK"/*.log; do
        echo "== $f"
        tail -n 20 "$f"
    done
    exit 1
}

# Free loopback ports (each is bound by its user a moment later).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Two owampd: the peers, each with its metrics endpoint.
declare -a PEERS OWAMPD_METRICS
for i in 1 2; do
    dir="$WORK/owampd$i"
    mkdir -p "$dir/data"
    port=$(free_port)
    mport=$(free_port)
    printf 'srcnode 127.0.0.1:%s\ndatadir %s\nvardir %s\nmetrics 127.0.0.1:%s\n' \
        "$port" "$dir/data" "$dir" "$mport" >"$dir/owamp-server.conf"
    "$OWAMPD" -f -Z -c "$dir" 2>"$WORK/owampd$i.log" &
    PIDS+=($!)
    PEERS+=("127.0.0.1:$port")
    OWAMPD_METRICS+=("127.0.0.1:$mport")
done
for i in 1 2; do
    for _ in $(seq 100); do
        grep -q "listening on" "$WORK/owampd$i.log" && break
        sleep 0.1
    done
    grep -q "listening on" "$WORK/owampd$i.log" || fail "owampd $i did not start"
done

# One powstream measuring from both peers (`--peer` twice: each peer's files in a directory
# of its own), with --metrics. Bounded by -X as well as by the trap.
declare -a POWSTREAM_METRICS
mport=$(free_port)
mkdir -p "$WORK/powstream"
"$POWSTREAM" -c 20 -i 0.01 -L 1 -X 200 -d "$WORK/powstream" --metrics "127.0.0.1:$mport" \
    --peer "${PEERS[0]}" --peer "${PEERS[1]}" 2>"$WORK/powstream.log" &
PIDS+=($!)
POWSTREAM_METRICS+=("127.0.0.1:$mport")

# Prometheus: temporary configuration and data, every endpoint scraped every second.
PROM_PORT=$(free_port)
targets() { printf "'%s'," "$@" | sed 's/,$//'; }
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/docs/examples/owamp-rules.yml
scrape_configs:
  - job_name: powstream
    static_configs:
      - targets: [$(targets "${POWSTREAM_METRICS[@]}")]
  - job_name: owampd
    static_configs:
      - targets: [$(targets "${OWAMPD_METRICS[@]}")]
EOF
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn 2>"$WORK/prometheus.log" &
PIDS+=($!)

# The value of an instant query: one number per series, "labels value" per line.
query() {
    curl -sfG --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
        python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["status"] == "success", r
for s in r["data"]["result"]:
    m = s["metric"]
    print(",".join(f"{k}={m[k]}" for k in sorted(m)) or "{}", s["value"][1])
'
}

# Wait (at most 45 s in all) until Prometheus has three completed sessions of each peer (the
# rates of the rules then have two samples that differ) and the rules have been evaluated.
deadline=$((SECONDS + 45))
wait_for() {
    # wait_for WHAT QUERY: until QUERY's one value is 2 (one per peer).
    local n
    while [ "$SECONDS" -lt "$deadline" ]; do
        n=$(query "$2" 2>/dev/null | awk '{print $2}') || true
        [ "${n:-0}" = 2 ] && return 0
        sleep 0.5
    done
    fail "Prometheus did not see $1 of both peers in time"
}
wait_for "three sessions" 'count(owamp_sessions_total{outcome="completed"} >= 3)'
wait_for "the path loss rule" 'count(instance_peer_direction:owamp_loss:ratio_rate5m >= 0)'
wait_for "the path delay rule" 'count(instance_peer_direction:owamp_delay_seconds:median_rate5m > 0)'

check() {
    # check NAME QUERY PYTHON-CONDITION-ON-v: every series of QUERY satisfies it, one per peer.
    local out
    out=$(query "$2") || fail "query $2"
    echo "$out" | sed "s/^/  $1: /"
    echo "$out" | python3 -c "
import sys
lines = [l.rsplit(' ', 1) for l in sys.stdin.read().splitlines()]
peers = {p for l in lines for p in l[0].split(',') if p.startswith('peer=')}
assert peers == {'peer=${PEERS[0]}', 'peer=${PEERS[1]}'}, peers
for labels, v in lines:
    v = float(v)
    assert $3, (labels, v)
" || fail "$1"
}
echo "prometheus-test: Prometheus on 127.0.0.1:$PROM_PORT sees:"
check "loss ratio" 'owamp_loss_ratio{job="powstream"}' 'v == 0'
check "median delay" 'owamp_last_session_median_delay_seconds' '0 < v < 1'
check "max delay" 'owamp_last_session_max_delay_seconds' '0 < v < 1'
check "delay samples" 'owamp_delay_seconds_count' 'v >= 60'
check "recorded path loss" 'instance_peer_direction:owamp_loss:ratio_rate5m' 'v == 0'
check "recorded path median" 'instance_peer_direction:owamp_delay_seconds:median_rate5m' '0 < v < 1'
mesh_loss=$(query 'mesh:owamp_loss:ratio_rate5m' | awk '{print $2}')
mesh_delay=$(query 'mesh:owamp_delay_seconds:median_rate5m' | awk '{print $2}')
echo "  mesh loss ratio: $mesh_loss, mesh median delay: $mesh_delay s"
python3 -c "assert float('$mesh_loss') == 0 and 0 < float('$mesh_delay') < 1" ||
    fail "mesh rules: loss $mesh_loss, delay $mesh_delay"
up=$(query 'sum(up)' | awk '{print $2}')
[ "$up" = 3 ] || fail "$up of 3 endpoints up"

# promtool reads the Prometheus text format: asked for with Accept (the same metrics).
for ep in "${POWSTREAM_METRICS[@]}" "${OWAMPD_METRICS[@]}"; do
    curl -sf --max-time 5 -H 'Accept: text/plain; version=0.0.4' "http://$ep/metrics" >"$WORK/scrape.txt" ||
        fail "scraping $ep"
    promtool check metrics <"$WORK/scrape.txt" || fail "promtool check metrics on $ep"
done
promtool check rules docs/examples/owamp-rules.yml >/dev/null || fail "promtool check rules"
echo "prometheus-test: OK (3 endpoints: one powstream, two owampd; 2 peers; rules checked and evaluated)"
