#!/usr/bin/env bash
# CI smoke run of the fuzz targets (.ci/run calls it after the tests).
#
#   fuzz/smoke.sh [-t SECONDS]      (default 3 s per target, or $FUZZ_SMOKE_SECS)
#
# With a nightly toolchain and cargo-fuzz (installed here with `cargo install cargo-fuzz
# --locked` when missing), it builds every target and runs each one for a few seconds from its
# committed seeds and regression inputs, failing on any crash, hang (-timeout) or runaway
# allocation (-rss_limit_mb). New inputs go to a scratch corpus that is thrown away; a crash
# input is kept in fuzz/artifacts/<target>/ and its log in fuzz/logs/smoke-<target>.log.
#
# Without them, it says so and runs the stable replay test instead (every target's check on
# its seeds, regressions and deterministic mutations of them).
set -euo pipefail
cd "$(dirname "$0")"

secs=${FUZZ_SMOKE_SECS:-3}
if [[ "${1:-}" == "-t" ]]; then
    secs=$2
    shift 2
fi

stable_replay() {
    echo "fuzz smoke: $1; running the stable replay test instead (no libFuzzer run)"
    cargo test --manifest-path Cargo.toml --test replay
}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    stable_replay "no nightly toolchain"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked; then
        stable_replay "cargo-fuzz cannot be installed"
        exit 0
    fi
fi

start=$(date +%s)
cargo +nightly fuzz build
built=$(date +%s)
mapfile -t targets < <(cargo +nightly fuzz list)
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "fuzz smoke: cargo fuzz lists no target" >&2
    exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p logs
failed=()
for t in "${targets[@]}"; do
    corpus="$scratch/$t"
    mkdir -p "$corpus" "regressions/$t"
    log="logs/smoke-$t.log"
    # The first folder receives new inputs; seeds and regressions are only read.
    if cargo +nightly fuzz run "$t" "$corpus" "seeds/$t" "regressions/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        echo "$t: ok: $(grep -E '^Done|#[0-9]+ +DONE' "$log" | tail -n 1)"
    else
        echo "$t: FAILED (see fuzz/$log and fuzz/artifacts/$t/)"
        tail -n 30 "$log"
        failed+=("$t")
    fi
    # An empty regressions folder made above is not worth keeping.
    rmdir "regressions/$t" 2>/dev/null || true
done
end=$(date +%s)
echo "fuzz smoke: ${#targets[@]} targets, ${secs} s each; build $((built - start)) s, runs $((end - built)) s"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz smoke: FAILED: ${failed[*]}" >&2
    exit 1
fi
