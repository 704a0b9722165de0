#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) and prints, per target, how long it
# ran clean and how many inputs it executed: `fuzz/run.sh 60` (README "Evidence").
# cargo-fuzz drives libFuzzer with the stable compiler (RUSTC_BOOTSTRAP=1: the sanitizer
# flags are nightly-only otherwise). The committed seeds in fuzz/corpus/<target> are only
# read; what the fuzzer finds goes to fuzz/target/corpus/<target>, and a crashing input to
# fuzz/target/artifacts/<target>/, so a run never changes the repository. Exits non-zero
# on the first target that fails, after printing its crash.
# -O: the release build, as the node ships, with AddressSanitizer (cargo-fuzz's default).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=(envelope consent record batch export)
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cargo fuzz build -O --sanitizer address </dev/null
printf '%-10s %8s %12s %10s\n' target seconds executions exec/s
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t" "target/artifacts/$t"
    log="target/$t.log"
    if ! cargo fuzz run -O --sanitizer address "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -artifact_prefix="target/artifacts/$t/" \
        -print_final_stats=1 </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        echo "fuzz/run.sh: $t failed; the input is in fuzz/target/artifacts/$t/" >&2
        exit 1
    fi
    # libFuzzer's last words: "Done <runs> runs in <seconds> second(s)".
    read -r runs secs < <(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -1)
    printf '%-10s %8s %12s %10s\n' "$t" "$secs" "$runs" "$(( runs / (secs > 0 ? secs : 1) ))"
done
