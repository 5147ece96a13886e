#!/bin/sh
# The local stack for `make run` / `make stop`, in a private work directory (./run):
# the test guest image served over HTTP on loopback (deploy/imageserver.py), the embedded
# bus (nodeagent-devbus), a control plane key with a certificate for each node (./run/keys),
# and one agent per node, which boot a demo guest on the first node.
# Guests run under TCG (virt_type = qemu).
#   NODES=1 (default): one private libvirt + Open vSwitch host (deploy/virtenv.py), node "demo".
#   NODES=N (2..8): N hosts joined by an underlay (deploy/hosts.py), nodes node1..nodeN, each
#   announcing its underlay address as its tunnel endpoint.
#   deploy/run.sh start BUILD_DIR
#   deploy/run.sh stop
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="$ROOT/run"
PREFIX=nodeagent
NODES=${NODES:-1}
case "$NODES" in
[1-8]) ;;
*)
    echo "run: NODES=$NODES: from 1 to 8" >&2
    exit 2
    ;;
esac

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
    for f in "$RUN"/agent*.pid; do
        [ -e "$f" ] || continue
        stop_pid "$(basename "$f" .pid)"
    done
    stop_pid devbus
    stop_pid imageserver
    if [ -d "$RUN/virtenv" ]; then
        /usr/bin/python3 "$ROOT/deploy/virtenv.py" stop "$RUN/virtenv" >/dev/null &&
            echo "run: stopped the private libvirt and OVS host"
    fi
    if [ -d "$RUN/hosts" ]; then
        /usr/bin/python3 "$ROOT/deploy/hosts.py" stop "$RUN/hosts" >/dev/null &&
            echo "run: stopped the hosts and their underlay"
    fi
}

# The stack's control plane key, made once and kept in ./run/keys: nodectl signs with it
# (NODEAGENT_CP_KEY in ./run/env) and every agent checks requests and certificates with it.
make_control_plane_key() {
    mkdir -p "$RUN/keys"
    chmod 0700 "$RUN/keys"
    [ -f "$RUN/keys/control-plane.key" ] ||
        "$BUILD/nodectl" keygen "$RUN/keys/control-plane.key" >/dev/null
}

# issue_node_cert NODE TUNNEL_IP: the node's key (made once) and a certificate for it and
# its tunnel endpoint, issued anew at every start.
issue_node_cert() {
    [ -f "$RUN/keys/$1.key" ] || "$BUILD/nodectl" keygen "$RUN/keys/$1.key" >/dev/null
    # shellcheck disable=SC2046 # no endpoint flag without an endpoint
    "$BUILD/nodectl" --key "$RUN/keys/control-plane.key" node-cert issue --node-id "$1" \
        --public-key "$RUN/keys/$1.pub" $([ -n "$2" ] && echo --endpoint "$2") \
        --cert-out "$RUN/keys/$1.cert" >/dev/null
}

# start_agent NODE STATE_DIR LIBVIRT_URI BRIDGE TUNNEL_IP: one agent, ./run/agent-NODE.*
start_agent() {
    issue_node_cert "$1" "$5"
    cat >"$RUN/agent-$1.conf" <<EOF
[agent]
node_id = $1
state_dir = $2
log_file = $RUN/agent-$1.log
[bus]
bootstrap_servers = $BOOTSTRAP
topic_prefix = $PREFIX
control_plane_key = $RUN/keys/control-plane.pub
node_key = $RUN/keys/$1.key
node_cert = $RUN/keys/$1.cert
[bus.rdkafka]
; the devbus (librdkafka's mock cluster) waits out every empty fetch instead of answering
; when a request arrives, as a real broker does: a short wait keeps requests from idling
; there (docs/benchmarks.md).  On a real broker the agent's 100 ms costs nothing.
fetch.wait.max.ms = 10
[admin]
socket = $RUN/admin-$1.sock
[hypervisor]
uri = $3
virt_type = qemu
cpu_mode = none
bridge = $4
[image_cache]
; deploy/imageserver.py serves the dev images on loopback
allowed_networks = 127.0.0.0/8
[network]
ovsdb = $NODEAGENT_OVS_DB
datapath_type = netdev
EOF
    if [ -n "$5" ]; then
        printf 'tunnel_endpoint = %s\n' "$5" >>"$RUN/agent-$1.conf"
    fi
    "$BUILD/nodeagent" -c "$RUN/agent-$1.conf" </dev/null >>"$RUN/agent-$1.log" 2>&1 &
    echo $! >"$RUN/agent-$1.pid"
}

# wait_agent NODE: until its admin API answers
wait_agent() {
    i=0
    until "$BUILD/nodectl" --admin-socket "$RUN/admin-$1.sock" status >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$(cat "$RUN/agent-$1.pid")" 2>/dev/null; then
            echo "run: the agent $1 did not become healthy; see $RUN/agent-$1.log"
            stop
            exit 1
        fi
        sleep 0.2
    done
}

wait_file() { # FILE SECONDS: until FILE is not empty
    i=0
    while [ ! -s "$1" ] && [ $i -lt $(($2 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -s "$1" ]
}

start() {
    BUILD=$1
    mkdir -p "$RUN"
    stop
    rm -f "$RUN/devbus.out" "$RUN/imageserver.out"

    echo "run: building the guest image (cached in build/images)"
    "$ROOT/deploy/images/build-guest-image.sh" "$ROOT/build/images" >"$RUN/image.log" 2>&1 ||
        { echo "run: building the guest image failed; see $RUN/image.log"; exit 1; }
    IMAGE_SHA=$(cut -d' ' -f1 "$ROOT/build/images/nodeagent-guest.qcow2.sha256")

    if [ "$NODES" -eq 1 ]; then
        NODE_IDS=demo
        echo "run: starting a private libvirt and OVS host in $RUN/virtenv"
        /usr/bin/python3 "$ROOT/deploy/virtenv.py" start "$RUN/virtenv" >"$RUN/virtenv.log" 2>&1 ||
            { echo "run: the virtualization host did not start; see $RUN/virtenv.log"; stop; exit 1; }
    else
        NODE_IDS=$(seq -f 'node%g' 1 "$NODES" | tr '\n' ' ')
        echo "run: starting $NODES hosts joined by an underlay in $RUN/hosts"
        /usr/bin/python3 "$ROOT/deploy/hosts.py" start "$RUN/hosts" --count "$NODES" \
            >"$RUN/hosts.out" 2>"$RUN/hosts.log" ||
            { echo "run: the hosts did not start; see $RUN/hosts.log"; stop; exit 1; }
    fi

    /usr/bin/python3 "$ROOT/deploy/imageserver.py" --root "$ROOT/build/images" </dev/null \
        >"$RUN/imageserver.out" 2>"$RUN/imageserver.log" &
    echo $! >"$RUN/imageserver.pid"
    wait_file "$RUN/imageserver.out" 30 || { echo "run: the image server did not start"; stop; exit 1; }
    IMAGE_URL="$(head -n 1 "$RUN/imageserver.out")nodeagent-guest.qcow2"

    devbus_nodes=""
    for n in $NODE_IDS; do devbus_nodes="$devbus_nodes --node $n"; done
    # shellcheck disable=SC2086 # one --node flag per node
    "$BUILD/nodeagent-devbus" --prefix "$PREFIX" $devbus_nodes </dev/null \
        >"$RUN/devbus.out" 2>"$RUN/devbus.log" &
    echo $! >"$RUN/devbus.pid"
    wait_file "$RUN/devbus.out" 30 || true
    BOOTSTRAP=$(head -n 1 "$RUN/devbus.out")
    if [ -z "$BOOTSTRAP" ]; then
        echo "run: the devbus did not start in 30 s; see $RUN/devbus.log"
        stop
        exit 1
    fi

    make_control_plane_key
    if [ "$NODES" -eq 1 ]; then
        . "$RUN/virtenv/env"
        start_agent demo "$NODEAGENT_STATE_DIR" "$NODEAGENT_LIBVIRT_URI" "$NODEAGENT_BRIDGE" ""
    else
        # hosts.out: "hI UNDERLAY_IP NETNS DIR" per host
        while read -r h ip _ dir; do
            (
                . "$dir/env"
                start_agent "node${h#h}" "$NODEAGENT_STATE_DIR" "$NODEAGENT_LIBVIRT_URI" \
                    "$NODEAGENT_BRIDGE" "$ip"
            )
        done <"$RUN/hosts.out"
        . "$RUN/hosts/h1/env"
    fi
    NODE=${NODE_IDS%% *}

    cat >"$RUN/env" <<EOF
export NODECTL_BOOTSTRAP=$BOOTSTRAP
export NODECTL_PREFIX=$PREFIX
export NODECTL_NODE=$NODE
export NODECTL_ADMIN_SOCKET=$RUN/admin-$NODE.sock
export NODEAGENT_CP_KEY=$RUN/keys/control-plane.key
export PATH="$BUILD:\$PATH"
export LIBVIRT_DEFAULT_URI='$NODEAGENT_LIBVIRT_URI'
EOF
    for n in $NODE_IDS; do wait_agent "$n"; done

    . "$RUN/env"
    echo "run: devbus on $BOOTSTRAP, agents healthy: $NODE_IDS"
    nodectl status
    DEMO=0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e
    echo
    echo "run: creating the demo instance $DEMO"
    nodectl create --uuid "$DEMO" --name demo --tenant demo --vcpus 1 --memory-mib 256 \
        --disk-gib 1 --image-id nodeagent-guest --image-url "$IMAGE_URL" \
        --image-sha256 "$IMAGE_SHA" --image-format qcow2 --hostname demo \
        --nic "port=8d3c6a1e-5b7f-4c2d-9e0a-1f2b3c4d5e6f,network=5e0f7a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b,vni=100,mac=52:54:00:de:00:01,ip=10.0.0.5/24,gateway=10.0.0.1,mtu=1450" \
        --wait --timeout 300 || { echo "run: the demo create failed; see $RUN/agent-$NODE.log"; exit 1; }
    wait_console_ready "$NODEAGENT_STATE_DIR/instances/$DEMO/console.log"
    if [ "$NODES" -gt 1 ]; then
        demo_on_node2
    fi
    cat <<EOF

The stack runs in $RUN.  To use it:
  . $RUN/env        # points nodectl and virsh at this stack
  nodectl status    # the agent's health and instances (node $NODE)
  nodectl peers     # the other nodes, from their announcements
  nodectl events    # follow every event on the bus
  nodectl stop $DEMO --wait
  nodectl console-log $DEMO --wait
  virsh list --all; virsh console $DEMO    # the serial console; Ctrl+] leaves
  nodectl create --help    # every request has --help; add --wait for its result
  curl --unix-socket $RUN/admin-$NODE.sock http://localhost/metrics
  NODECTL_NODE=X NODECTL_ADMIN_SOCKET=$RUN/admin-X.sock nodectl ...   # another node X
Logs: $RUN/agent-NODE.log, $RUN/devbus.log, $RUN/virtenv/log/ or $RUN/hosts/hI/log/.
Stop everything: make stop
EOF
}

# With several nodes, a second guest on node2 in the demo's network: the two reach each
# other through the Geneve tunnel the agents set up between their hosts.
demo_on_node2() {
    DEMO2=6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f
    echo
    echo "run: creating a second demo instance $DEMO2 on node2, in the same network"
    NODECTL_NODE=node2 NODECTL_ADMIN_SOCKET="$RUN/admin-node2.sock" nodectl create \
        --uuid "$DEMO2" --name demo2 --tenant demo --vcpus 1 --memory-mib 256 \
        --disk-gib 1 --image-id nodeagent-guest --image-url "$IMAGE_URL" \
        --image-sha256 "$IMAGE_SHA" --image-format qcow2 --hostname demo2 \
        --nic "port=2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d,network=5e0f7a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b,vni=100,mac=52:54:00:de:00:02,ip=10.0.0.6/24,gateway=10.0.0.1,mtu=1450" \
        --wait --timeout 300 || { echo "run: the second demo create failed; see $RUN/agent-node2.log"; exit 1; }
    wait_console_ready "$RUN/hosts/h2/state/instances/$DEMO2/console.log"
    echo "run: node1 and node2 tunnel network 100 to each other (ports nat0ac80002 and"
    echo "     nat0ac80001 on their br-int); from demo's console, ping 10.0.0.6 reaches demo2"
}

# Waits (up to 120 s) for a guest's console to say it is ready, and shows that line.
wait_console_ready() {
    i=0
    until grep -q "nodeagent-guest: ready" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 1200 ] || { echo "run: the guest did not say ready in 120 s; see $1"; exit 1; }
        sleep 0.1
    done
    echo "run: the guest's console says: $(grep -a "nodeagent-guest: ready" "$1" | tail -n 1)"
}

case "${1:-}" in
start) start "${2:?usage: run.sh start BUILD_DIR}" ;;
stop) stop ;;
*)
    echo "usage: run.sh start BUILD_DIR | stop" >&2
    exit 2
    ;;
esac
