#!/bin/sh
# Runs a development federation of plusgate nodes on this machine: one `plusgate serve`
# per center of a `plusgate dev-init` folder, in the background. Development and
# demonstration only; production nodes run one per machine under systemd
# (plusgate.service).
#
#   deploy/federation.sh start  [DIR]  write DIR with `plusgate dev-init` if it has no
#                                      manifest.json, then start every center's node
#   deploy/federation.sh stop   [DIR]  SIGTERM every node, wait up to 20 s (then SIGKILL)
#   deploy/federation.sh status [DIR]  one line per center: running or not
#
# DIR defaults to ./plusgate-fed. A center is a subfolder of DIR holding a plusgate.toml;
# its node logs (stdout and stderr, appended) to DIR/<center>/node.log and its process id
# is kept in DIR/<center>/node.pid while it runs.
#
# Environment:
#   PLUSGATE            the plusgate binary; default: `plusgate` on PATH, else
#                       target/release/plusgate, else target/debug/plusgate of this repository
#   PLUSGATE_BASE_PORT  port of the first center when DIR is written (default 7443);
#                       center i listens on 127.0.0.1:(base + i)
#   PLUSGATE_LOG        passed on to the nodes (e.g. debug); their logs are written without
#                       colours (NO_COLOR=1)
#
# `start` is all or nothing: it starts no node if any center already runs, and stops the
# nodes it started if one of them does not come up.
#
# Exit codes: 0 done; 1 failed; 2 wrong usage; `status`: 3 if any center is not running.
#
# POSIX sh: it needs only sed, tail, sort, cut, tr, wc, date and kill, and reads
# /proc (or ps) to make sure a pid file still names a plusgate node before signalling it.

set -u

DEFAULT_DIR=./plusgate-fed
DEFAULT_CENTERS=suwon,gangseo,jeongeup
DEFAULT_BASE_PORT=7443
START_TIMEOUT_S=30
STOP_TIMEOUT_S=20
LISTENING='plusgate listening on https://'

me=$0
script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P) || exit 1
repo=$(dirname -- "$script_dir")

say() { printf '%s\n' "$*"; }
err() { printf 'federation.sh: %s\n' "$*" >&2; }
die() {
    err "$*"
    exit 1
}

usage() {
    cat <<EOF
usage: $me start  [DIR]   write DIR with plusgate dev-init if needed, start every center
       $me stop   [DIR]   stop every node of DIR (SIGTERM, SIGKILL after ${STOP_TIMEOUT_S} s)
       $me status [DIR]   show which centers of DIR run
DIR defaults to $DEFAULT_DIR. Environment: PLUSGATE (binary), PLUSGATE_BASE_PORT
(first port of a new DIR, default $DEFAULT_BASE_PORT), PLUSGATE_LOG (node log level).
EOF
}

# Quotes $1 for a POSIX shell if it holds anything beyond a safe alphabet (for the
# commands printed as hints).
quote() {
    case $1 in
    '' | *[!A-Za-z0-9/._:@=+,-]*)
        printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
        ;;
    *) printf '%s' "$1" ;;
    esac
}

now() { date +%s; }

nap() { sleep 0.1 2>/dev/null || sleep 1; }

# Sets $bin to the plusgate binary, or exits saying where it looked.
find_plusgate() {
    if [ -n "${PLUSGATE:-}" ]; then
        case $PLUSGATE in
        */*)
            if [ ! -f "$PLUSGATE" ] || [ ! -x "$PLUSGATE" ]; then
                die "PLUSGATE=$PLUSGATE is not an executable file"
            fi
            ;;
        *) command -v "$PLUSGATE" >/dev/null 2>&1 ||
            die "PLUSGATE=$PLUSGATE: no such command on PATH" ;;
        esac
        bin=$PLUSGATE
    elif bin=$(command -v plusgate 2>/dev/null) && [ -n "$bin" ]; then
        :
    elif [ -x "$repo/target/release/plusgate" ]; then
        bin=$repo/target/release/plusgate
    elif [ -x "$repo/target/debug/plusgate" ]; then
        bin=$repo/target/debug/plusgate
    else
        die "cannot find the plusgate binary: set PLUSGATE=/path/to/plusgate, put plusgate on PATH, or build it with 'cargo build --release' in $repo"
    fi
}

# The centers of the federation in $dir, one per line, in port order (the order
# dev-init was given them): every subfolder holding a plusgate.toml.
list_centers() {
    for config in "$dir"/*/plusgate.toml; do
        [ -f "$config" ] || continue
        center=${config%/plusgate.toml}
        center=${center##*/}
        case $center in '' | *[!a-z0-9-]*) continue ;; esac
        port=$(sed -n 's/^listen *= *"[^"]*:\([0-9][0-9]*\)".*/\1/p' "$config" | head -n 1)
        printf '%s %s\n' "${port:-99999}" "$center"
    done | sort -n -k1,1 -k2,2 | cut -d' ' -f2
}

# The pid in pid file $1, or nothing.
read_pid() {
    [ -f "$1" ] && tr -cd '0-9' <"$1"
}

# True if process $1 exists and has not exited (a zombie has exited).
pid_running() {
    case $1 in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/stat" ]; then
        state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    else
        state=$(ps -p "$1" -o stat= 2>/dev/null)
    fi
    case $state in Z* | X*) return 1 ;; esac
    return 0
}

# True if process $1 is running and is `plusgate serve --config $2` (a pid file may name a
# process that exited long ago and whose pid now belongs to something else).
node_alive() {
    pid_running "$1" || return 1
    if [ -r "/proc/$1/cmdline" ]; then
        args=$(tr '\0' ' ' <"/proc/$1/cmdline")
    else
        args=$(ps -p "$1" -o args= 2>/dev/null) || return 0
    fi
    case $args in *" serve --config $2"*) return 0 ;; *) return 1 ;; esac
}

# The URL the node of center $1 last said it listens on, from its log.
logged_url() {
    log=$dir/$1/node.log
    [ -f "$log" ] || return 0
    sed -n "s|^$LISTENING\\([^ ]*\\).*|https://\\1|p" "$log" | tail -n 1
}

# Sets $dir to the absolute form of folder $1, or returns 1 if it is not a folder.
set_dir() {
    [ -d "$1" ] || return 1
    dir=$(CDPATH='' cd -- "$1" && pwd -P)
}

# Sends SIGTERM to each "center:pid[:…]" in $1, waits up to STOP_TIMEOUT_S for all of
# them, SIGKILLs the rest and removes their pid files. Prints one line per node. Returns 1
# if a node could not be ended.
stop_nodes() {
    failed=0
    for entry in $1; do
        rest=${entry#*:}
        kill -TERM "${rest%%:*}" 2>/dev/null
    done
    deadline=$(($(now) + STOP_TIMEOUT_S))
    for entry in $1; do
        center=${entry%%:*}
        rest=${entry#*:}
        pid=${rest%%:*}
        config=$dir/$center/plusgate.toml
        while node_alive "$pid" "$config" && [ "$(now)" -lt "$deadline" ]; do
            nap
        done
        if node_alive "$pid" "$config"; then
            kill -KILL "$pid" 2>/dev/null
            i=0
            while node_alive "$pid" "$config" && [ "$i" -lt 50 ]; do
                nap
                i=$((i + 1))
            done
            if node_alive "$pid" "$config"; then
                err "$center: pid $pid survived SIGKILL; pid file kept"
                failed=1
                continue
            fi
            say "$center: did not exit within ${STOP_TIMEOUT_S} s of SIGTERM; killed (SIGKILL, pid $pid)"
        else
            say "$center: stopped (pid $pid)"
        fi
        rm -f "$dir/$center/node.pid"
    done
    return "$failed"
}

cmd_start() {
    find_plusgate
    if [ ! -f "$dir_arg/manifest.json" ]; then
        base=${PLUSGATE_BASE_PORT:-$DEFAULT_BASE_PORT}
        case $base in '' | *[!0-9]*) die "PLUSGATE_BASE_PORT=$base is not a port number" ;; esac
        if [ "$base" -lt 1 ] || [ "$base" -gt 65533 ]; then
            die "PLUSGATE_BASE_PORT=$base: the three ports base..base+2 must lie within 1..65535"
        fi
        say "Writing a development federation into $dir_arg (plusgate dev-init: centers $DEFAULT_CENTERS, ports $base-$((base + 2)))"
        "$bin" dev-init --out "$dir_arg" --centers "$DEFAULT_CENTERS" --base-port "$base" >/dev/null ||
            die "plusgate dev-init --out $dir_arg failed (see above)"
    elif [ -n "${PLUSGATE_BASE_PORT:-}" ]; then
        say "note: $dir_arg exists already, so PLUSGATE_BASE_PORT is ignored; the ports are those in its plusgate.toml files"
    fi
    set_dir "$dir_arg" || die "$dir_arg is not a folder"
    centers=$(list_centers)
    [ -n "$centers" ] || die "no center in $dir: no subfolder holds a plusgate.toml"

    # All or nothing: refuse if any center runs already.
    running=""
    for center in $centers; do
        pidfile=$dir/$center/node.pid
        [ -f "$pidfile" ] || continue
        pid=$(read_pid "$pidfile")
        if node_alive "$pid" "$dir/$center/plusgate.toml"; then
            running="$running $center (pid $pid)"
        else
            rm -f "$pidfile"
            say "$center: removed the stale pid file of a node that is gone (pid ${pid:-?})"
        fi
    done
    if [ -n "$running" ]; then
        die "nothing started: already running:$running. Stop the federation first: $me stop $(quote "$dir_arg")"
    fi

    say "Starting $(printf '%s' "$centers" | tr '\n' ' ' | sed 's/ $//') with $bin"
    launched=""
    trap 'err "interrupted; stopping the nodes started so far"; stop_nodes "$launched" >&2; exit 130' INT TERM
    for center in $centers; do
        cdir=$dir/$center
        log=$cdir/node.log
        printf '\n==== %s federation.sh: plusgate serve --config %s\n' \
            "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$cdir/plusgate.toml" >>"$log" ||
            die "cannot write $log"
        # Only what the node writes from now on counts when looking for its listening line.
        offset=$(wc -c <"$log" | tr -d ' ')
        NO_COLOR=1 "$bin" serve --config "$cdir/plusgate.toml" </dev/null >>"$log" 2>&1 &
        pid=$!
        printf '%s\n' "$pid" >"$cdir/node.pid"
        launched="$launched $center:$pid:$offset"
    done

    deadline=$(($(now) + START_TIMEOUT_S))
    lines=""
    for entry in $launched; do
        center=${entry%%:*}
        rest=${entry#*:}
        pid=${rest%%:*}
        offset=${rest#*:}
        log=$dir/$center/node.log
        url=""
        problem=""
        while :; do
            url=$(tail -c +"$((offset + 1))" "$log" |
                sed -n "s|^$LISTENING\\([^ ]*\\).*|https://\\1|p" | head -n 1)
            [ -n "$url" ] && break
            if ! pid_running "$pid"; then
                wait "$pid"
                code=$?
                problem="exited with code $code before listening"
                [ "$code" -ne 78 ] || problem="$problem (78: a configuration error)"
                # It is gone and reaped: nothing to signal, and its pid may be reused.
                rm -f "$dir/$center/node.pid"
                others=""
                for other in $launched; do
                    [ "${other%%:*}" = "$center" ] || others="$others $other"
                done
                launched=$others
                break
            fi
            if [ "$(now)" -ge "$deadline" ]; then
                problem="did not print its listening line within ${START_TIMEOUT_S} s"
                break
            fi
            nap
        done
        if [ -n "$problem" ]; then
            err "$center: the node $problem. Last lines of $log:"
            tail -c +"$((offset + 1))" "$log" | tail -n 25 >&2
            err "stopping the nodes this command started"
            stop_nodes "$launched" >&2
            exit 1
        fi
        lines="$lines$(printf '  %-10s %-24s log %s' "$center" "$url" "$log")
"
    done
    trap - INT TERM

    printf 'plusgate federation in %s: %s nodes running\n%s' \
        "$dir" "$(printf '%s\n' "$centers" | wc -l | tr -d ' ')" "$lines"
    hints
}

# What to try next: the remote referral example across two centers, and the commands that
# look after the federation.
hints() {
    say ""
    say "Try next:"
    example=$dir/examples/referral-remote.json
    sender=$(sed -n '/"referral-remote": {/,/}/s/.*"sender": *"\([^"]*\)".*/\1/p' \
        "$dir/manifest.json" 2>/dev/null | head -n 1)
    to=$(sed -n 's/^  "to": *"\([^"]*\)".*/\1/p' "$example" 2>/dev/null | head -n 1)
    from_url=$(logged_url "${sender%%/*}")
    to_url=$(logged_url "${to%%/*}")
    if [ -n "$sender" ] && [ -n "$to" ] && [ -n "$from_url" ] && [ -n "$to_url" ]; then
        ca=$(quote "$dir/ca.crt")
        say "  # $sender registers the consent the referral cites (once; again is 200):"
        say "  curl --cacert $ca --cert $(quote "$dir/${sender%%/*}/agencies/${sender#*/}.crt") --key $(quote "$dir/${sender%%/*}/agencies/${sender#*/}.key") \\"
        say "    -H 'content-type: application/json' --data-binary @$(quote "$dir/examples/consent.json") $from_url/v1/consents"
        say "  # $sender sends a referral to $to, at another center:"
        say "  curl --cacert $ca --cert $(quote "$dir/${sender%%/*}/agencies/${sender#*/}.crt") --key $(quote "$dir/${sender%%/*}/agencies/${sender#*/}.key") \\"
        say "    -H 'content-type: application/json' --data-binary @$(quote "$example") $from_url/v1/messages"
        say "  # $to pulls it from its own node:"
        say "  curl --cacert $ca --cert $(quote "$dir/${to%%/*}/agencies/${to#*/}.crt") --key $(quote "$dir/${to%%/*}/agencies/${to#*/}.key") \\"
        say "    '$to_url/v1/inbox?max=10&wait=5'"
        say "  # the sender follows it (state forwarded/delivered, the signed receipt):"
        say "  curl --cacert $ca --cert $(quote "$dir/${sender%%/*}/agencies/${sender#*/}.crt") --key $(quote "$dir/${sender%%/*}/agencies/${sender#*/}.key") \\"
        say "    $from_url/v1/messages/$(sed -n 's/^  "id": *"\([^"]*\)".*/\1/p' "$example" | head -n 1)"
        say "  # what waits for other centers:"
        say "  $(quote "$bin") outbox list --config $(quote "$dir/${sender%%/*}/plusgate.toml")"
    fi
    say "  $me status $(quote "$dir_arg")"
    say "  $me stop $(quote "$dir_arg")"
}

cmd_stop() {
    if ! set_dir "$dir_arg"; then
        say "nothing to stop: there is no folder $dir_arg"
        return 0
    fi
    signalled=""
    for center in $(list_centers); do
        pidfile=$dir/$center/node.pid
        if [ ! -f "$pidfile" ]; then
            say "$center: not running"
            continue
        fi
        pid=$(read_pid "$pidfile")
        if node_alive "$pid" "$dir/$center/plusgate.toml"; then
            signalled="$signalled $center:$pid"
        else
            rm -f "$pidfile"
            say "$center: not running (removed the stale pid file, pid ${pid:-?})"
        fi
    done
    [ -n "$signalled" ] || return 0
    stop_nodes "$signalled"
}

cmd_status() {
    if ! set_dir "$dir_arg"; then
        say "no federation: there is no folder $dir_arg"
        return 3
    fi
    centers=$(list_centers)
    if [ -z "$centers" ]; then
        say "no federation in $dir: no subfolder holds a plusgate.toml"
        return 3
    fi
    code=0
    for center in $centers; do
        pid=$(read_pid "$dir/$center/node.pid")
        if [ -n "$pid" ] && node_alive "$pid" "$dir/$center/plusgate.toml"; then
            printf '%-10s running      pid %-8s %s  log %s\n' \
                "$center" "$pid" "$(logged_url "$center")" "$dir/$center/node.log"
        else
            stale=""
            [ -f "$dir/$center/node.pid" ] && stale=" (stale pid file ${pid:-?})"
            printf '%-10s not running%s\n' "$center" "$stale"
            code=3
        fi
    done
    return "$code"
}

[ $# -ge 1 ] || {
    usage >&2
    exit 2
}
command=$1
shift
case $command in
-h | --help | help)
    usage
    exit 0
    ;;
start | stop | status) ;;
*)
    err "unknown command '$command'"
    usage >&2
    exit 2
    ;;
esac
if [ $# -gt 1 ]; then
    err "too many arguments"
    usage >&2
    exit 2
fi
dir_arg=${1:-$DEFAULT_DIR}

case $command in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
esac
