#!/usr/bin/env bash
# plusgate against RabbitMQ in one run (README § Benchmark, docs/performance.md):
# installs Debian's rabbitmq-server if it is missing (as root, or through `sudo -n`),
# builds the workspace in release mode, and runs
#   target/release/plusgate-bench --rabbitmq --http 1 [your flags]
# (`--http 1` unless your flags name --http)
# which measures the plusgate node (HTTP/1.1, --connections in flight), stops it, then
# starts a private broker of its own and drives it with as many synchronous publishers.
#
# The installing is here and not in the bench because it needs root: this script is what
# a reader checks before running it, as with .ci/test. Everything with a lifetime (the
# broker, its epmd, certificates, config, data) is the bench's, which stops and removes
# them on every exit path, Ctrl-C included. The broker runs as the calling user, from a
# temporary folder, on free loopback ports, with its own node name, epmd and Erlang
# cookie: a system-wide broker (`rabbitmq-server.service`, port 5672) is neither used nor
# touched. On a machine with systemd, installing the package may start that system
# broker (Debian's postinst does); this script leaves it as the package set it up.
#
# Usage: tools/bench-rabbitmq.sh [plusgate-bench flags, e.g. --duration-s 20 --json]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        echo "bench-rabbitmq: need root or sudo to install rabbitmq-server" >&2
        return 1
    fi
}

server=/usr/lib/rabbitmq/bin/rabbitmq-server
if [ ! -x "$server" ] || ! command -v epmd >/dev/null; then
    echo "bench-rabbitmq: installing rabbitmq-server (Debian)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y --no-install-recommends rabbitmq-server </dev/null >&2; then
        as_root apt-get update </dev/null >&2
        as_root apt-get install -y --no-install-recommends rabbitmq-server </dev/null >&2
    fi
fi

cargo build --release --workspace
http=(--http 1)
for arg in "$@"; do
    case "$arg" in --http | --http=*) http=() ;; esac
done
exec target/release/plusgate-bench --rabbitmq "${http[@]}" "$@"
