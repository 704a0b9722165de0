#!/usr/bin/env bash
# Reruns the benchmarks behind the README's charts, keeps each result as the bench's JSON
# under docs/bench/, and redraws docs/charts/*.svg from them (plusgate-charts):
#
#   connections  plusgate (HTTP/1.1 and HTTP/2) beside RabbitMQ, one run per connection
#                count in $CONNECTIONS (tools/bench-rabbitmq.sh, which installs the broker)
#                -> docs/bench/connections-<N>.json
#   cross        two centers (plusgate-bench --cross): throughput, then push-to-pullable
#                latency at 1,000/s -> docs/bench/cross.json
#   memory       the cross-center open loop at 1,000/s for $LONG_S seconds, both nodes'
#                resident memory read every second -> docs/bench/memory.json
#   render       only redraw the charts from the JSON already there (no benchmark)
#
# Usage: tools/bench-charts.sh [all|connections|cross|memory|render]...   (default: all)
# Each JSON file wraps the bench's report with when, at which commit and how loaded the
# machine was, since this machine is shared and noisy: compare within one file, not across.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-"1 4 16 64 256"}
DURATION_S=${DURATION_S:-10}
LONG_S=${LONG_S:-1200}
out=docs/bench

# Runs the bench command "$@" and writes its JSON report, wrapped with the context of the
# run, to the file $1 (atomically: a failed run leaves the previous result in place).
record() {
    local file=$1
    shift
    local tmp="$file.tmp"
    local load commit
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    commit=$(git rev-parse --short HEAD)
    if ! git diff --quiet HEAD -- src tools Cargo.lock; then
        commit="$commit+changes"
    fi
    echo "bench-charts: $* -> $file (load average $load)" >&2
    "$@" --json >"$tmp.report"
    {
        printf '{\n"measured_at": "%s",\n"commit": "%s",\n"cpus": %s,\n' \
            "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$(nproc)"
        printf '"load_average_at_start": "%s",\n"command": "%s",\n"report": ' "$load" "$*"
        cat "$tmp.report"
        printf '}\n'
    } >"$tmp"
    rm -f "$tmp.report"
    mv "$tmp" "$file"
}

render() {
    cargo run --quiet --release -p plusgate-tools --bin plusgate-charts -- \
        --input "$out" --output docs/charts
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
mkdir -p "$out"
for step in "${steps[@]}"; do
    case "$step" in
    all) set -- connections cross memory render ;;
    connections | cross | memory | render) set -- "$step" ;;
    *)
        echo "bench-charts: unknown step '$step' (all, connections, cross, memory, render)" >&2
        exit 2
        ;;
    esac
    for one in "$@"; do
        case "$one" in
        connections)
            for n in $CONNECTIONS; do
                record "$out/connections-$n.json" tools/bench-rabbitmq.sh --http both \
                    --connections "$n" --duration-s "$DURATION_S"
            done
            ;;
        cross)
            cargo build --release --workspace
            record "$out/cross.json" target/release/plusgate-bench --cross \
                --duration-s "$DURATION_S"
            ;;
        memory)
            cargo build --release --workspace
            record "$out/memory.json" target/release/plusgate-bench --cross --rate 1000 \
                --duration-s "$LONG_S"
            ;;
        render) render ;;
        esac
    done
done
