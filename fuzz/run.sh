#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a while each, one after the other.
#
#   fuzz/run.sh [-t SECONDS] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts
# from its committed seeds (fuzz/seeds/<target>) and grows its own corpus in
# fuzz/corpus/<target> (not committed). Crash inputs land in fuzz/artifacts/<target>/; the
# summary line of each run is printed, the full log is in fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"

secs=60
if [[ "${1:-}" == "-t" ]]; then
    secs=$2
    shift 2
fi
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

mkdir -p logs
cargo +nightly fuzz build
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="logs/$t.log"
    if cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        echo "$t: ok: $(grep -E '^Done|#[0-9]+ +DONE' "$log" | tail -n 1)"
    else
        echo "$t: FAILED (see fuzz/$log and fuzz/artifacts/$t/)"
        status=1
    fi
done
exit $status
