#!/bin/sh
# The local stack for `make run` / `make stop`, in a private work directory (./run):
# the embedded bus (nodeagent-devbus) and one agent, node id "demo".
#   deploy/run.sh start BUILD_DIR
#   deploy/run.sh stop
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="$ROOT/run"
NODE=demo
PREFIX=nodeagent

stop_pid() {
    name=$1
    f="$RUN/$name.pid"
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run: $name (pid $pid) did not stop in 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "run: stopped $name (pid $pid)"
    fi
    rm -f "$f"
}

stop() {
    stop_pid agent
    stop_pid devbus
}

start() {
    BUILD=$1
    mkdir -p "$RUN"
    stop
    rm -f "$RUN/devbus.out"

    "$BUILD/nodeagent-devbus" --prefix "$PREFIX" --node "$NODE" </dev/null \
        >"$RUN/devbus.out" 2>"$RUN/devbus.log" &
    echo $! >"$RUN/devbus.pid"
    i=0
    while [ ! -s "$RUN/devbus.out" ] && [ $i -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    BOOTSTRAP=$(head -n 1 "$RUN/devbus.out")
    if [ -z "$BOOTSTRAP" ]; then
        echo "run: the devbus did not start in 30 s; see $RUN/devbus.log"
        stop
        exit 1
    fi

    cat >"$RUN/nodeagent.conf" <<EOF
[agent]
node_id = $NODE
state_dir = $RUN/state
log_file = $RUN/agent.log
[bus]
bootstrap_servers = $BOOTSTRAP
topic_prefix = $PREFIX
[admin]
socket = $RUN/admin.sock
EOF
    "$BUILD/nodeagent" -c "$RUN/nodeagent.conf" </dev/null >>"$RUN/agent.log" 2>&1 &
    echo $! >"$RUN/agent.pid"

    cat >"$RUN/env" <<EOF
export NODECTL_BOOTSTRAP=$BOOTSTRAP
export NODECTL_PREFIX=$PREFIX
export NODECTL_NODE=$NODE
export NODECTL_ADMIN_SOCKET=$RUN/admin.sock
export PATH="$BUILD:\$PATH"
EOF

    i=0
    until "$BUILD/nodectl" --admin-socket "$RUN/admin.sock" status >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$(cat "$RUN/agent.pid")" 2>/dev/null; then
            echo "run: the agent did not become healthy; see $RUN/agent.log"
            stop
            exit 1
        fi
        sleep 0.2
    done

    . "$RUN/env"
    echo "run: devbus on $BOOTSTRAP, agent \"$NODE\" healthy"
    nodectl status
    echo
    echo "run: a first request (this agent has no lifecycle handlers yet, so it is refused"
    echo "     with UNIMPLEMENTED, after it was durably accepted):"
    nodectl start 0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e --wait || true
    cat <<EOF

The stack runs in $RUN.  To use it:
  . $RUN/env                       # points nodectl at this stack
  nodectl status                   # the agent's health and instances
  nodectl events                   # follow every event on the bus
  nodectl create --help            # every request has --help; add --wait for its result
  curl --unix-socket $RUN/admin.sock http://localhost/metrics
  kcat -b $BOOTSTRAP -t $PREFIX.events -C -f '%k %o\\n'
Logs: $RUN/agent.log, $RUN/devbus.log.  Stop everything with: make stop
EOF
}

case "${1:-}" in
start) start "${2:?usage: run.sh start BUILD_DIR}" ;;
stop) stop ;;
*)
    echo "usage: run.sh start BUILD_DIR | stop" >&2
    exit 2
    ;;
esac
