"""Tenant networks on one node: real guests (TCG) on the virtenv's br-int, the agent's flows
installed through Open vSwitch's C library.  What the guests can reach is asked of the guests
themselves (ping on their consoles); what the bridge holds is read with ovs-ofctl."""
import concurrent.futures
import os
import re
import subprocess
import time
import uuid

from harness import wait_for

OF = "OpenFlow14"


def flows(node):
    """The bridge's flow table without counters, sorted: comparable across restarts."""
    mgmt = f"unix:{node.env.ovs_rundir}/{node.env.bridge}.mgmt"
    out = subprocess.run(["ovs-ofctl", "-O", OF, "--no-stats", "dump-flows", mgmt],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return sorted(line.strip() for line in out.splitlines() if "priority" in line)


def iface_of(node, port_id):
    """(tap name, ofport) of the interface libvirt plugged for port_id."""
    name = node.env.vsctl("--bare", "--columns=name", "find", "Interface",
                          f"external_ids:iface-id={port_id}").strip()
    ofport = int(node.env.vsctl("get", "Interface", name, "ofport").strip())
    return name, ofport


def in_ns(node, *cmd, check=True):
    return subprocess.run(node.env.nsenter() + list(cmd), capture_output=True, text=True,
                          check=check, timeout=60)


CAPTURE = r"""
import socket, struct, sys, time
dev, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((dev, 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        frame = s.recv(2048)
    except socket.timeout:
        continue
    etype = struct.unpack("!H", frame[12:14])[0]
    if etype == 0x0806:
        print("arp", frame[22:28].hex(":"), socket.inet_ntoa(frame[28:32]), flush=True)
    elif etype == 0x0800:
        print("ip", frame[6:12].hex(":"), socket.inet_ntoa(frame[26:30]), flush=True)
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] == 17 and len(frame) >= 14 + ihl + 2:
            print("udp", frame[6:12].hex(":"), socket.inet_ntoa(frame[26:30]),
                  struct.unpack("!H", frame[14 + ihl:16 + ihl])[0], flush=True)
"""

# A DHCPDISCOVER (broadcast flag set) from a made-up client, written into a guest's tap from
# the host's side: it reaches the guest alone (OVS reads only what the guest sends).  Sent
# again after each offer the guest answers with (seen on the same tap), until `want` offers
# were seen or 50 s passed.
INJECT_DISCOVER = r"""
import socket, struct, sys, time
dev, want = sys.argv[1], int(sys.argv[2])
client = bytes.fromhex("02aabbccdd01")
def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF
bootp = struct.pack("!BBBBIHH16s16s64s128s", 1, 1, 6, 0, 0x4E410001, 0, 0x8000, bytes(16),
                    client + bytes(10), bytes(64), bytes(128))
bootp += bytes([99, 130, 83, 99, 53, 1, 1, 255])
bootp += bytes(300 - len(bootp))
udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4),
                  b"\xff" * 4)
hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((dev, 0))
s.settimeout(1.0)
def is_offer(f):
    ihl = (f[14] & 0x0F) * 4 if len(f) > 14 else 0
    return (len(f) >= 14 + ihl + 2 and f[12:14] == b"\x08\x00" and f[23] == 17
            and struct.unpack("!H", f[14 + ihl:16 + ihl])[0] == 67)
offers, deadline = 0, time.monotonic() + 50
while offers < want and time.monotonic() < deadline:
    s.send(b"\xff" * 6 + client + b"\x08\x00" + hdr + udp)
    try:
        while not is_offer(s.recv(4096)):
            pass
        offers += 1
    except socket.timeout:
        pass
"""


class Capture:
    """IPv4 and ARP frames on a device of the test host (either direction), by a raw socket
    inside the host's namespaces: [(kind, source MAC, source IP), ...]."""

    def __init__(self, node, dev, seconds):
        self.proc = subprocess.Popen(node.env.nsenter() + ["/usr/bin/python3", "-c", CAPTURE, dev,
                                                           str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def frames(self):
        out, _ = self.proc.communicate(timeout=120)
        return [tuple(line.split()) for line in out.splitlines()]


class Guest:
    """A guest with one NIC; its security groups are sg, the group "open" (IPv4 and IPv6 in
    and out) unless the test says otherwise (None: no group, the default)."""

    def __init__(self, node, name, ip, vni, extra=(), ip6=None, sg="open"):
        self.node, self.name, self.ip, self.vni, self.ip6 = node, name, ip, vni, ip6
        self.port = str(uuid.uuid4())
        self.mac = "52:54:00:" + os.urandom(3).hex(":")
        if sg == "open":
            sg = [node.open_group()]
        self.inst, last = node.create(name, ip=ip, vni=vni, mac=self.mac, port=self.port,
                                      extra=extra, ip6=ip6, sg=sg or ())
        assert last["kind"] == "DONE", last
        assert last["state"] == "RUNNING", last

    def ready(self, timeout=120):
        self.node.wait_ready(self.inst, self.name, self.ip, timeout=timeout)
        return self

    def run(self, script, marks, timeout=90):
        """Types script into the guest's console shell; returns {mark: exit status} for each
        `echo "@@mark=$?@@"` the script prints."""
        pty = self.node.dom(self.inst).XMLDesc().split("<source path='")[1].split("'")[0]
        seen = len(self.node.console(self.inst))
        text = "".join(line + "\n" for line in script)
        # QEMU reads a pty only while a client holds it open.
        writer = subprocess.Popen(self.node.env.nsenter() + [
            "sh", "-c", f"exec 3>{pty}; sleep 2; printf '%s' \"$1\" >&3; exec sleep {timeout}",
            "writer", "\n" + text], stdout=subprocess.DEVNULL)
        try:
            def results():
                found = dict(re.findall(r"@@(\w+)=(\d+)@@", self.node.console(self.inst)[seen:]))
                return found if all(m in found for m in marks) else None
            found = wait_for(results, timeout, f"{marks} on the console of {self.name}",
                             interval=0.5)
        finally:
            writer.kill()
            writer.wait()
        return {m: int(found[m]) for m in marks}


def ping(ip, mark):
    return f'ping -c 2 -w 4 {ip} >/dev/null 2>&1; echo "@@{mark}=$?@@"'


def test_one_network_talks_another_with_the_same_addresses_reaches_nothing(node):
    node.start()
    a = Guest(node, "net-a", "10.0.0.5", 100)
    b = Guest(node, "net-b", "10.0.0.6", 100)
    c = Guest(node, "net-c", "10.0.0.5", 200)  # another tenant, A's address
    for g in (a, b, c):
        g.ready()
    r = a.run([ping(b.ip, "a_b")], ["a_b"])
    assert r["a_b"] == 0
    r = b.run([ping("10.0.0.5", "b_a")], ["b_a"])
    assert r["b_a"] == 0
    # B's ARP request for 10.0.0.5 reached A only: C, which has that address too, would
    # have learned B from it.
    r = c.run(['grep -q "^10.0.0.6 " /proc/net/arp; echo "@@c_arp=$?@@"', ping(b.ip, "c_b"),
               ping("10.0.0.7", "c_none")], ["c_arp", "c_b", "c_none"])
    assert r == {"c_arp": 1, "c_b": 1, "c_none": 1}
    # Each guest's MTU is the underlay's minus the tunnel overhead (1500 - 50).
    r = a.run(['[ "$(cat /sys/class/net/eth0/mtu)" = 1450 ]; echo "@@mtu=$?@@"'], ["mtu"])
    assert r["mtu"] == 0

    table = flows(node)
    for g in (a, b, c):
        _, ofport = iface_of(node, g.port)
        mine = [f for f in table if f"in_port={ofport}," in f]
        assert len(mine) == 2, mine  # IPv4 from its address, ARP for its address
        assert all(f"dl_src={g.mac}" in f for f in mine)
    assert not [f for f in table if "NORMAL" in f]
    assert all("cookie=0x4e41" in f for f in table)


def test_spoofed_mac_ip_and_gratuitous_arp_are_dropped(node):
    node.start()
    a = Guest(node, "spoof-a", "10.0.0.5", 100)
    b = Guest(node, "spoof-b", "10.0.0.6", 100)
    a.ready()
    b.ready()
    r = a.run([
        ping(b.ip, "before"),
        "ifconfig eth0 10.0.0.9 netmask 255.255.255.0", ping(b.ip, "other_ip"),
        "ifconfig eth0 10.0.0.5 netmask 255.255.255.0", ping(b.ip, "own_ip"),
        "ifconfig eth0 down", "ifconfig eth0 hw ether 52:54:00:aa:bb:cc",
        "ifconfig eth0 10.0.0.5 netmask 255.255.255.0 up", ping(b.ip, "other_mac"),
        "ifconfig eth0 down", f"ifconfig eth0 hw ether {a.mac}",
        "ifconfig eth0 10.0.0.5 netmask 255.255.255.0 up", ping(b.ip, "own_mac"),
    ], ["before", "other_ip", "own_ip", "other_mac", "own_mac"], timeout=150)
    assert r == {"before": 0, "other_ip": 1, "own_ip": 0, "other_mac": 1, "own_mac": 0}

    # A claims B's address with gratuitous ARPs (and ARP replies): none of them reaches B's
    # tap.  A's own ARP request for B does, which shows that the capture sees ARP.
    tap_b, _ = iface_of(node, b.port)
    cap = Capture(node, tap_b, 25)
    r = a.run(["ip neigh flush dev eth0", ping(b.ip, "arp_ok"),
               f'arping -U -c 3 -I eth0 {b.ip} >/dev/null 2>&1; echo "@@garp=$?@@"',
               f'arping -A -c 3 -I eth0 {b.ip} >/dev/null 2>&1; echo "@@garp2=$?@@"'],
              ["arp_ok", "garp", "garp2"])
    assert r["arp_ok"] == 0
    frames = cap.frames()
    assert ("arp", a.mac, a.ip) in frames
    assert not [f for f in frames if f[0] == "arp" and f[2] == b.ip and f[1] != b.mac], frames


def test_a_guest_answering_dhcp_reaches_no_other_guest(node):
    # A runs a DHCP server (busybox udhcpd) on its own address and MAC, which anti-spoofing
    # lets through; B, in its network, must not hear its offers, while A's ordinary traffic
    # still reaches B.
    node.start()
    a = Guest(node, "dhcp-a", "10.0.0.5", 100)
    b = Guest(node, "dhcp-b", "10.0.0.6", 100)
    a.ready()
    b.ready()
    r = a.run([
        "printf 'interface eth0\\nstart 10.0.0.100\\nend 10.0.0.150\\n"
        "lease_file /tmp/udhcpd.leases\\npidfile /tmp/udhcpd.pid\\n' >/tmp/udhcpd.conf",
        'touch /tmp/udhcpd.leases; udhcpd /tmp/udhcpd.conf; echo "@@dhcpd=$?@@"'], ["dhcpd"])
    assert r["dhcpd"] == 0
    tap_a, _ = iface_of(node, a.port)
    tap_b, _ = iface_of(node, b.port)
    cap_a = Capture(node, tap_a, 60)
    cap_b = Capture(node, tap_b, 60)
    r = a.run([ping(b.ip, "a_b")], ["a_b"])
    assert r["a_b"] == 0
    subprocess.run(node.env.nsenter() + ["/usr/bin/python3", "-c", INJECT_DISCOVER, tap_a, "5"],
                   check=True, timeout=60)
    offers_sent = [f for f in cap_a.frames() if f[0] == "udp" and f[1] == a.mac and f[3] == "67"]
    seen_by_b = cap_b.frames()
    # A did answer (so the capture could have seen its offers), and its pings reached B.
    assert offers_sent, "A's DHCP server sent no offer: the test shows nothing"
    assert ("ip", a.mac, a.ip) in seen_by_b
    assert not [f for f in seen_by_b if f[0] == "udp" and f[3] == "67"], seen_by_b
    # The bridge says why: a drop above every port's anti-spoofing flow.
    table = flows(node)
    assert [f for f in table if "priority=110,udp,tp_src=67" in f and "actions=drop" in f]
    assert [f for f in table if "priority=110,udp6,tp_src=547" in f and "actions=drop" in f]


def create_in(node, name, vni, mac, ip, inst=None):
    """A create's last event, without waiting for the guest to boot."""
    return node.create(name, ip=ip, vni=vni, mac=mac, inst=inst, check=None)[1]


def test_a_mac_or_address_taken_in_its_network_is_refused_and_free_in_another(node):
    node.start()
    mac = "52:54:00:" + os.urandom(3).hex(":")
    first = create_in(node, "dup-a", 100, mac, "10.0.0.5")
    assert first["kind"] == "DONE", first
    for name, other_mac, ip, field in (
            ("dup-mac", mac.upper(), "10.0.0.6", "create.spec.nics[0].mac"),
            ("dup-ip", "52:54:00:" + os.urandom(3).hex(":"), "10.0.0.5",
             "create.spec.nics[0].ips[0]")):
        inst = str(uuid.uuid4())
        last = create_in(node, name, 100, other_mac, ip, inst=inst)
        assert last["kind"] == "FAILED", last
        assert last["error"]["code"] == "INVALID_ARGUMENT", last
        assert last["error"]["field"] == field, last
        assert not node.has_domain(inst)
        assert not os.path.exists(node.dir(inst))
    # The same MAC and address in another network are another network's business.
    other = create_in(node, "dup-other-net", 200, mac, "10.0.0.5")
    assert other["kind"] == "DONE" and other["state"] == "RUNNING", other
    table = flows(node)
    assert len([f for f in table if f"dl_src={mac}" in f and "nw_src=10.0.0.5" in f]) == 2

    # Two creates with one MAC sent at once: the second is prepared while the first is still
    # being built, and is refused all the same.
    mac2 = "52:54:00:" + os.urandom(3).hex(":")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda args: create_in(node, *args),
                                [("race-1", 300, mac2, "10.0.0.5"),
                                 ("race-2", 300, mac2, "10.0.0.6")]))
    kinds = sorted(r["kind"] for r in results)
    assert kinds == ["DONE", "FAILED"], results
    refused = [r for r in results if r["kind"] == "FAILED"][0]
    assert refused["error"]["code"] == "INVALID_ARGUMENT", refused
    assert refused["error"]["field"] == "create.spec.nics[0].mac", refused


def test_a_tap_added_by_hand_passes_nothing(node):
    node.start()
    a = Guest(node, "hand-a", "10.0.0.5", 100).ready()
    bogus = str(uuid.uuid4())
    in_ns(node, "ip", "link", "add", "nahand0", "type", "veth", "peer", "name", "nahand1")
    try:
        in_ns(node, "ip", "link", "set", "nahand0", "up")
        in_ns(node, "ip", "link", "set", "nahand1", "up")
        in_ns(node, "ip", "addr", "add", "10.0.0.50/24", "dev", "nahand1")
        node.env.vsctl("add-port", node.env.bridge, "nahand0", "--", "set", "Interface",
                       "nahand0", f"external_ids:iface-id={bogus}")
        ofport = int(node.env.vsctl("get", "Interface", "nahand0", "ofport").strip())
        assert ofport > 0
        # From the hand-made port to the guest, and from the guest to it: nothing, not even
        # the ARP requests that the guest floods in its network.
        cap_out = Capture(node, "nahand0", 20)
        cap_guest = Capture(node, iface_of(node, a.port)[0], 20)
        r = in_ns(node, "ping", "-c", "2", "-w", "4", a.ip, check=False)
        assert r.returncode != 0
        r = a.run([ping("10.0.0.50", "to_hand"), ping("10.0.0.50", "to_hand2")],
                  ["to_hand", "to_hand2"])
        assert r == {"to_hand": 1, "to_hand2": 1}
        # nahand0 carries what nahand1 sends (the capture shows it) and nothing from OVS.
        hand_mac = in_ns(node, "cat", "/sys/class/net/nahand1/address").stdout.strip()
        out = cap_out.frames()
        assert ("arp", hand_mac, "10.0.0.50") in out
        assert not [f for f in out if f[1] == a.mac], out
        # (The host's own kernel may use the tap device itself; frames from the hand-made
        # port are what must not arrive.)
        assert not [f for f in cap_guest.frames() if f[1] == hand_mac]
        # By now the agent has seen the port's row (the pings above took seconds): no flow
        # names it.
        assert not [f for f in flows(node) if re.search(rf"(in_port=|output:){ofport}\b", f)]
    finally:
        node.env.vsctl("--if-exists", "del-port", node.env.bridge, "nahand0", check=False)
        in_ns(node, "ip", "link", "del", "nahand0", check=False)


def test_delete_removes_the_ports_flows_and_the_last_one_the_networks(node):
    node.start()
    a = Guest(node, "del-a", "10.0.0.5", 100)
    b = Guest(node, "del-b", "10.0.0.6", 100)
    _, of_a = iface_of(node, a.port)
    _, of_b = iface_of(node, b.port)
    assert [f for f in flows(node) if f"in_port={of_b}," in f]
    assert node.request("delete", b.inst, check=0)["kind"] == "DONE"
    table = wait_for(lambda: (lambda t: t if not [f for f in t if b.mac in f] else None)(
        flows(node)), 30, "B's flows to go")
    assert [f for f in table if f"in_port={of_a}," in f]
    assert [f for f in table if "reg6=0x64" in f and f"output:{of_a}" in f]
    assert node.request("delete", a.inst, check=0)["kind"] == "DONE"
    table = wait_for(lambda: (lambda t: t if len(t) == 8 else None)(flows(node)), 30,
                     "only the drop flows (tables 0 to 3, DHCP answers, router "
                     "advertisements and redirects) to stay")
    assert all("actions=drop" in f for f in table)


def test_ovs_and_agent_restarts_converge_to_the_same_flows(node):
    node.start()
    a = Guest(node, "rs-a", "10.0.0.5", 100).ready()
    b = Guest(node, "rs-b", "10.0.0.6", 100).ready()
    before = flows(node)
    # 8 drops (tables 0 to 3, DHCP answers, router advertisements and redirects), 4 per port,
    # 2 floods; per port 3 more for IPv6 and Neighbor Discovery to it; 14 of the conntrack
    # stage; the group "open": the two ports' clause, and for IPv4 and IPv6 the ethertype's
    # clause and the conj_id flow, in and out; the network's IPv6 (Neighbor Discovery floods,
    # multicast through the ports' ACL, the rest to tunnels: 4) and the multicast copies'
    # table (its drop, to the ACL, and per port never back to it: 4).
    assert len(before) == 58, before

    def same():
        return flows(node) == before
    for what in ("ovs-vswitchd", "ovsdb-server", "agent"):
        if what == "agent":
            node.agent.stop()
            node.start()
        else:
            node.env.restart_ovs(what)
        t0 = time.monotonic()
        wait_for(same, 60, f"the same flows after restarting {what}", interval=0.2)
        print(f"{what} restart: flows back in {time.monotonic() - t0:.2f} s")
        r = a.run([ping(b.ip, "after")], ["after"])
        assert r["after"] == 0, what


def test_a_port_that_never_binds_fails_the_create_and_leaves_nothing(cluster, virtenv, images):
    # libvirt plugs the tap into the host's OVS as always, but this agent looks at a database
    # that is not there: the port never binds, so the create fails, says why and undoes
    # itself.
    from nodes import Node
    node = Node(cluster, virtenv, images, extra_config=(
        f"[network]\novsdb = unix:{virtenv.dir}/no-such-ovsdb.sock\ndatapath_type = netdev\n"
        "bind_timeout = 3\n"))
    try:
        node.start(need=("bus", "database", "libvirt"))
        assert not node.agent.checks()["ovs"]
        inst = str(uuid.uuid4())
        t0 = time.monotonic()
        _, last = node.create("nobind", inst=inst, check=1)
        assert last["kind"] == "FAILED", last
        assert last["error"]["code"] == "NETWORK", last
        assert "did not bind" in last["error"]["message"], last
        assert "database is not connected" in last["error"]["message"], last
        assert time.monotonic() - t0 < 60
        assert not node.has_domain(inst)
        assert not os.path.exists(node.dir(inst))
    finally:
        if node.conn:
            node.conn.close()
