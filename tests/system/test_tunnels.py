"""Tenant networks across nodes: two test hosts (deploy/hosts.py, each its own OVS and
libvirtd in a network namespace of its own, joined by an underlay), an agent on each that
learns the other from its announcements and tunnels to it.  What the guests reach is asked
of the guests (ping on their consoles); what crosses the underlay is read off the underlay's
wire by a raw socket; what the bridges hold is read with ovs-vsctl and ovs-ofctl."""
import os
import re
import signal
import struct
import subprocess
import tempfile
import time
import uuid

import pytest

import trust
from harness import Cluster, wait_for
from nodes import Node
from test_network import Guest, flows, iface_of, ping

UDP_PORTS = {"geneve": 6081, "vxlan": 4789}

# Tunnel frames on an underlay device: UDP to the tunnel's port, the VNI from the Geneve or
# VXLAN header (bytes 4-6 of both), the inner frame's source MAC and, for IPv4 and ARP, its
# source address.
CAPTURE = r"""
import socket, struct, sys, time
dev, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((dev, 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        f = s.recv(4096)
    except socket.timeout:
        continue
    if len(f) < 14 + 20 + 8 + 8 + 14 or struct.unpack("!H", f[12:14])[0] != 0x0800 or f[23] != 17:
        continue
    ip = 14 + (f[14] & 0x0f) * 4
    if struct.unpack("!H", f[ip + 2:ip + 4])[0] != port:
        continue
    gen = ip + 8
    vni = int.from_bytes(f[gen + 4:gen + 7], "big")
    inner = gen + 8 + ((f[gen] & 0x3f) * 4 if port == 6081 else 0)  # Geneve options
    etype = struct.unpack("!H", f[inner + 12:inner + 14])[0]
    src = ""
    if etype == 0x0800:
        src = socket.inet_ntoa(f[inner + 26:inner + 30])
    elif etype == 0x0806:
        src = socket.inet_ntoa(f[inner + 28:inner + 32])
    print(vni, f[inner + 6:inner + 12].hex(":"), hex(etype), src, flush=True)
"""


class UnderlayCapture:
    """Tunnel frames on a device of the underlay namespace: [(vni, inner src MAC, ethertype,
    inner src IP), ...]."""

    def __init__(self, netns, dev, udp_port, seconds):
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "/usr/bin/python3", "-c",
                                      CAPTURE, dev, str(udp_port), str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def frames(self):
        out, _ = self.proc.communicate(timeout=120)
        frames = []
        for line in out.splitlines():
            parts = line.split() + [""]
            frames.append((int(parts[0]), parts[1], parts[2], parts[3]))
        return frames


def tunnel_ports(node):
    """{port name: remote_ip} of the agent's tunnel ports on the node's br-int."""
    out = node.env.vsctl("--bare", "--columns=name,external_ids", "find", "Port",
                         "external_ids:nodeagent-tunnel!=x")
    ports, name = {}, None
    for line in out.splitlines():
        ids = dict(t.split("=", 1) for t in line.split() if "=" in t)
        if "nodeagent-tunnel" in ids:
            ports[name] = ids["nodeagent-tunnel"]
        elif line.strip():
            name = line.strip()
    return ports


def agent_flows(node):
    """The flows the agent installed (cookie 0x4e41), not those learned from tunnels."""
    return [f for f in flows(node) if "cookie=0x4e41" in f]


@pytest.fixture
def two_nodes(tmp_path, images, request):
    """Two hosts with an agent each; the tunnel type is the test's parameter (geneve when
    it has none)."""
    from hosts import Hosts
    tunnel_type = getattr(request, "param", "geneve")
    hosts = Hosts(tempfile.mkdtemp(prefix="nodeagent-hosts-"), 2)
    cluster = Cluster(tmp_path, nodes=("h1", "h2"))
    try:
        hosts.start()
        nodes = [Node(cluster, h.env, images, node_id=f"h{h.index}", extra_config=(
            f"[network]\ntunnel_endpoint = {h.underlay_ip}\nannounce_interval = 1\n"
            f"tunnel_type = {tunnel_type}\n")).start()
            for h in hosts]
        yield hosts, nodes, tunnel_type
    finally:
        cluster.close()
        hosts.stop()


@pytest.mark.parametrize("two_nodes", ["geneve", "vxlan"], indirect=True)
def test_one_network_on_two_nodes_talks_through_the_tunnel_and_no_other(two_nodes):
    hosts, (n1, n2), tunnel_type = two_nodes
    a = Guest(n1, "tun-a", "10.0.0.5", 300)
    d = Guest(n1, "tun-d", "10.0.0.7", 301)
    b = Guest(n2, "tun-b", "10.0.0.6", 300)
    c = Guest(n2, "tun-c", "10.0.0.5", 301)  # another tenant, with A's address
    for g in (a, b, c, d):
        g.ready(timeout=300)  # four guests booting at once under TCG on the test host
    # Each node has one tunnel, to the other, once it has heard of the other's networks.
    wait_for(lambda: tunnel_ports(n1) == {"nat0ac80002": hosts[1].underlay_ip}
             and tunnel_ports(n2) == {"nat0ac80001": hosts[0].underlay_ip}, 60,
             "one tunnel port on each node")

    assert n1.env.vsctl("get", "Interface", "nat0ac80002", "type").strip() == tunnel_type
    cap = UnderlayCapture(hosts.underlay_ns, "h1", UDP_PORTS[tunnel_type], 40)
    r = a.run([ping(b.ip, "a_b")], ["a_b"])
    assert r["a_b"] == 0
    # D's ARP for 10.0.0.5 goes to C, across the underlay in network 301, and not to A,
    # which has that address in network 300 on D's own node.
    r = d.run([ping("10.0.0.5", "d_c")], ["d_c"])
    assert r["d_c"] == 0
    r = a.run(['grep -q "^10.0.0.7 " /proc/net/arp; echo "@@a_arp=$?@@"'], ["a_arp"])
    assert r["a_arp"] == 1
    # Other tenants, on the other node or on this one, are out of reach.
    r = b.run([ping(d.ip, "b_d")], ["b_d"])
    assert r["b_d"] == 1
    r = c.run([ping(b.ip, "c_b")], ["c_b"])
    assert r["c_b"] == 1
    frames = cap.frames()

    # On the underlay, the tenants' frames carry their network's VNI, and only theirs.
    assert frames, "no tunnel frames on the underlay"
    by_vni = {}
    for vni, mac, _, _ in frames:
        by_vni.setdefault(vni, set()).add(mac)
    assert set(by_vni) == {300, 301}, by_vni
    assert by_vni[300] <= {a.mac, b.mac} and by_vni[300] == {a.mac, b.mac}, by_vni
    assert by_vni[301] <= {c.mac, d.mac} and d.mac in by_vni[301], by_vni
    assert not [f for f in frames if f[3] == b.ip and f[0] != 300]
    # The guests' MTU leaves room for the encapsulation.
    r = b.run(['[ "$(cat /sys/class/net/eth0/mtu)" = 1450 ]; echo "@@mtu=$?@@"'], ["mtu"])
    assert r["mtu"] == 0


def test_restarts_converge_and_the_last_port_of_a_network_takes_its_tunnel(two_nodes):
    hosts, (n1, n2), _ = two_nodes
    a = Guest(n1, "tr-a", "10.0.0.5", 310).ready()
    b = Guest(n2, "tr-b", "10.0.0.6", 310).ready()
    wait_for(lambda: tunnel_ports(n1) and tunnel_ports(n2), 60, "a tunnel port on each node")
    r = a.run([ping(b.ip, "before")], ["before"])
    assert r["before"] == 0
    before = agent_flows(n1)
    assert [f for f in before if "tun_id=0x136" in f], before

    for what in ("agent", "ovs-vswitchd", "ovsdb-server"):
        if what == "agent":
            n1.agent.stop()
            n1.start()
        else:
            hosts[0].restart_ovs(what)
        t0 = time.monotonic()
        wait_for(lambda: agent_flows(n1) == before, 60, f"the same flows after restarting {what}",
                 interval=0.2)
        print(f"{what} restart: flows back in {time.monotonic() - t0:.2f} s")
        # The first frame after ovs-vswitchd restarts waits for the underlay neighbour to be
        # resolved again (OVS's userspace tunnels lose that cache): the restart itself.
        r = a.run(['t0=$(cut -d. -f1 /proc/uptime)', f'ping -c 1 -w 30 {b.ip} >/dev/null 2>&1; '
                   'echo "@@after=$?@@ @@secs=$(( $(cut -d. -f1 /proc/uptime) - t0 ))@@"'],
                  ["after", "secs"])
        print(f"{what} restart: B answered A after {r['secs']} s")
        assert r["after"] == 0, what

    # n2's agent dies without a word: n1 drops it after three of its announce intervals,
    # and the tunnel with it; n2's agent back, the tunnel comes back and A reaches B again.
    n2.agent.stop(signal.SIGKILL)
    wait_for(lambda: not tunnel_ports(n1), 30, "n1 to drop the silent peer's tunnel")
    assert "peer lost: no announcement in time" in n1.agent.logs()
    n2.start()
    wait_for(lambda: tunnel_ports(n1), 30, "n1 to tunnel to n2 again")
    r = a.run([f'ping -c 1 -w 30 {b.ip} >/dev/null 2>&1; echo "@@back=$?@@"'], ["back"])
    assert r["back"] == 0

    # B, the last port of network 310 on n2, goes: both tunnels go, and with them every
    # flow of the tunnel; n1 keeps A's own flows.
    assert n2.request("delete", b.inst, check=0)["kind"] == "DONE"
    wait_for(lambda: not tunnel_ports(n1) and not tunnel_ports(n2), 60,
             "the tunnel ports to go from both nodes")
    wait_for(lambda: not [f for f in flows(n1) if "tun_id" in f or "NXM_NX_TUN_ID" in f], 30,
             "n1's tunnel flows (and learned ones) to go")
    assert [f for f in agent_flows(n1) if f"dl_src={a.mac}" in f]
    assert len(agent_flows(n2)) == 8, agent_flows(n2)  # only the drops


def trace(node, flow):
    """What the node's real ovs-vswitchd does with flow on br-int (ofproto/trace), as text."""
    ctl = os.path.join(node.env.ovs_rundir, "ovs-vswitchd.ctl")
    return subprocess.run(["ovs-appctl", "-t", ctl, "ofproto/trace", node.env.bridge, flow],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def test_a_tunnel_cannot_take_over_a_local_mac_and_learns_a_capped_number_per_network(
        two_nodes):
    hosts, (n1, n2), _ = two_nodes
    a = Guest(n1, "own-a", "10.0.0.5", 300).ready()
    b = Guest(n2, "own-b", "10.0.0.6", 300).ready()
    wait_for(lambda: tunnel_ports(n1) and tunnel_ports(n2), 60, "a tunnel port on each node")
    r = a.run([ping(b.ip, "a_b")], ["a_b"])
    assert r["a_b"] == 0
    (tunnel,) = tunnel_ports(n1)
    t = int(n1.env.vsctl("get", "Interface", tunnel, "ofport").strip())
    _, port_a = iface_of(n1, a.port)

    # A frame from the tunnel claiming A's MAC is dropped by n1's OVS: nothing delivered,
    # nothing learned.  One from B's MAC is delivered to A, and learned.
    arp = f"arp,arp_op=1,arp_spa={b.ip},arp_tpa={a.ip},dl_dst=ff:ff:ff:ff:ff:ff"
    forged = trace(n1, f"in_port={t},tun_id=300,dl_src={a.mac},{arp}")
    assert "Datapath actions: drop" in forged, forged
    assert "learn(" not in forged, forged
    honest = trace(n1, f"in_port={t},tun_id=300,dl_src={b.mac},{arp}")
    assert "Datapath actions: drop" not in honest, honest
    assert "learn(" in honest, honest
    # To A's MAC, from the tunnel: A's port, by the local flow.
    to_a = trace(n1, f"in_port={t},tun_id=300,dl_src={b.mac},dl_dst={a.mac},arp,arp_op=2")
    assert f"output:{port_a}" in to_a, to_a

    # B's MAC was learned on n1 with network 300's own cookie, which the learn limit counts.
    table = flows(n1)
    learned = [f for f in table if "learn(" not in f and " priority=80," in f]
    assert learned and all("cookie=0x12c4e42," in f for f in learned), learned
    assert [f for f in learned if f"dl_dst={b.mac}" in f], learned
    assert not [f for f in learned if f"dl_dst={a.mac}" in f], learned
    assert [f for f in table if "limit=1024" in f and "cookie=0x12c4e42" in f
            and "reg6=0x12c" in f], table
    assert [f for f in table if f"dl_src={a.mac}" in f and "reg6=0x12c" in f
            and "actions=drop" in f], table


def peers_of(node):
    status, body = node.agent.get_json("/v1/peers")
    assert status == 200, body
    return {p["node_id"]: p for p in body["peers"]}


def refused(node, reason):
    _, text = node.agent.get("/metrics")
    pat = rf'^nodeagent_announcements_refused_total{{reason="{reason}"}} (\d+)$'
    m = re.search(pat, text, re.M)
    return int(m.group(1)) if m else 0


def announce(cluster, tmp_path, key, payload, headers=()):
    path = os.path.join(str(tmp_path), f"an-{uuid.uuid4().hex}")
    with open(path, "wb") as f:
        f.write(payload)
    subprocess.run(["kcat", "-P", "-b", cluster.devbus.bootstrap, "-t",
                    f"{cluster.prefix}.nodes", "-k", key, *headers, path],
                   check=True, timeout=60, capture_output=True)


def test_forged_announcements_change_no_tunnel(two_nodes, tmp_path):
    """One node is hostile (h3: a certified key of its own, and any message it likes on the
    bus).  Nothing it or an outsider announces creates, moves or removes a tunnel on h1; a
    node the control plane did certify does get one.  Every forged endpoint is an unused
    address of the test's own underlay (10.200.0.0/24)."""
    hosts, (n1, n2), _ = two_nodes
    cluster = n1.cluster
    ca = cluster.authority
    Guest(n1, "fa-a", "10.0.0.5", 300)  # h1 hosts network 300: a tunnel to whoever else does
    wait_for(lambda: "h2" in peers_of(n1), 30, "h1 to know h2")
    ports, flows_before = tunnel_ports(n1), agent_flows(n1)
    assert ports == {}, ports
    peers_before = {k: (v["tunnel_endpoint"], v["vnis"]) for k, v in peers_of(n1).items()}

    h2_key, h2_cert = ca.node("h2")
    h3_key, h3_cert = ca.node("h3", ["10.200.0.3"])
    h8_key, h8_cert = ca.node("h8", ["10.200.0.68"], not_before_ms=1000, not_after_ms=2000)
    cert = {n: open(p, "rb").read() for n, p in (("h2", h2_cert), ("h3", h3_cert),
                                                  ("h8", h8_cert))}

    def node_signed(key, node, payload):
        return trust.node_headers(key, cert[node], "announcement", payload)

    an = trust.announcement
    # An outsider: no signature.
    p = an("h9", "10.200.0.66", vnis=(300,))
    announce(cluster, tmp_path, "h9", p)
    # h3 signs as itself but claims to be h9, then h2; h3 announces h2 leaving.
    p = an("h9", "10.200.0.3", vnis=(300,))
    announce(cluster, tmp_path, "h9", p, node_signed(h3_key, "h3", p))
    p = an("h2", "10.200.0.3", vnis=(300,))
    announce(cluster, tmp_path, "h2", p, node_signed(h3_key, "h3", p))
    p = an("h2", "10.200.0.2", leaving=True)
    announce(cluster, tmp_path, "h2", p, node_signed(h3_key, "h3", p))
    # h3 as itself, with an endpoint its certificate does not allow (re-pointing h2's).
    p = an("h3", "10.200.0.2", vnis=(300,))
    announce(cluster, tmp_path, "h3", p, node_signed(h3_key, "h3", p))
    # h2's own key re-pointing h2 to an address outside its certificate (a stolen key can
    # sign, but not move the endpoint).
    p = an("h2", "10.200.0.67", vnis=(300,))
    announce(cluster, tmp_path, "h2", p, node_signed(h2_key, "h2", p))
    # A certificate that expired.
    p = an("h8", "10.200.0.68", vnis=(300,))
    announce(cluster, tmp_path, "h8", p, node_signed(h8_key, "h8", p))
    # A signature copied onto other bytes.
    p, q = an("h9", "10.200.0.69", vnis=(300,)), an("h9", "10.200.0.3", vnis=(300,))
    announce(cluster, tmp_path, "h9", p, node_signed(h3_key, "h3", q))

    wait_for(lambda: refused(n1, "unauthenticated") >= 3 and refused(n1, "identity") >= 3
             and refused(n1, "endpoint") >= 2, 30, "every forgery refused")
    assert (refused(n1, "unauthenticated"), refused(n1, "identity"),
            refused(n1, "endpoint")) == (3, 3, 2)
    logs = n1.agent.logs()
    assert 'msg="node announcement refused" reason=identity node_id=h9' in logs
    assert "not one that the certificate of `h2` allows" in logs
    assert "expired" in logs

    # 10,000 announcements of distinct made-up nodes, all for network 300.
    paths = []
    for i in range(10000):
        path = os.path.join(str(tmp_path), f"flood-{i}")
        with open(path, "wb") as f:
            f.write(an(f"x{i}", f"10.200.0.{100 + i % 150}", vnis=(300,)))
        paths.append(path)
    cluster.kcat_produce(f"{cluster.prefix}.nodes", paths)
    wait_for(lambda: refused(n1, "unauthenticated") == 3 + 10000, 120, "the flood refused")
    # Counted in full, logged in part: at most 100 lines every 10 s, then how many were not.
    wait_for(lambda: "node announcements refused without a log line" in n1.agent.logs(), 60,
             "the flood's summary in the log")
    assert n1.agent.logs().count('msg="node announcement refused"') < 1000

    # The world: no tunnel port, the same flows, the same peers; h2 still there.
    assert tunnel_ports(n1) == {}
    assert agent_flows(n1) == flows_before
    assert {k: (v["tunnel_endpoint"], v["vnis"]) for k, v in peers_of(n1).items()} == peers_before
    assert n1.agent.proc.poll() is None

    # The check can say yes: a node the control plane certified at 10.200.0.77 gets its
    # tunnel; its own old announcement replayed changes nothing; its signed goodbye removes it.
    h7_key, h7_cert = ca.node("h7", ["10.200.0.77"])
    cert["h7"] = open(h7_cert, "rb").read()
    joined_at = int(time.time() * 1000)
    p = an("h7", "10.200.0.77", time_ms=joined_at, interval=30, vnis=(300,))
    announce(cluster, tmp_path, "h7", p, node_signed(h7_key, "h7", p))
    wait_for(lambda: tunnel_ports(n1) == {"nat0ac8004d": "10.200.0.77"}, 30, "h7's tunnel")
    old = an("h7", "10.200.0.77", time_ms=joined_at - 5000, interval=30, leaving=True)
    announce(cluster, tmp_path, "h7", old, node_signed(h7_key, "h7", old))
    wait_for(lambda: refused(n1, "replayed") == 1, 30, "the replayed goodbye refused")
    assert tunnel_ports(n1) == {"nat0ac8004d": "10.200.0.77"}
    bye = an("h7", "10.200.0.77", interval=30, leaving=True)
    announce(cluster, tmp_path, "h7", bye, node_signed(h7_key, "h7", bye))
    wait_for(lambda: tunnel_ports(n1) == {}, 30, "h7's tunnel to go with its goodbye")
