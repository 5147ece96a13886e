"""IPv6 in tenant networks: dual-stack guests configured from the config drive talk over IPv6
on one node and across a tunnel; a guest cannot send from another's address, advertise
another's address in Neighbor Discovery, or send Router Advertisements.

What a guest sends is asked of the guest itself (ping6 on its console) or, for frames a
busybox guest cannot make (a Router Advertisement, a forged Neighbor Advertisement), written
into the guest's own network device by QEMU: a filter-redirector on the NIC's netdev (added
through the QEMU monitor) passes frames read from a socket on to the tap, as if the guest
had sent them.  What reaches another guest is read off that guest's tap by a raw socket."""
import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
import uuid

import libvirt_qemu

from harness import wait_for
from test_network import Guest, flows, iface_of, in_ns, ping
from test_tunnels import tunnel_ports, two_nodes  # noqa: F401 (fixture)

PREFIX = "fd00:0:0:64::"

# IPv6 frames on a device of the test host (either direction), by a raw socket:
# "ip6 <src MAC> <src IP> <ICMPv6 type or -> <ND target or ->", one line each.
CAPTURE6 = r"""
import socket, struct, sys, time
dev, seconds = sys.argv[1], float(sys.argv[2])
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
    if len(f) < 54 or f[12:14] != b"\x86\xdd":
        continue
    src = socket.inet_ntop(socket.AF_INET6, f[22:38])
    kind, target = "-", "-"
    if f[20] == 58:
        kind = str(f[54])
        if f[54] in (135, 136) and len(f) >= 78:
            target = socket.inet_ntop(socket.AF_INET6, f[62:78])
    print("ip6", f[6:12].hex(":"), src, kind, target, flush=True)
"""

# Connects to QEMU's abstract socket argv[1] and writes each frame (hex, argv[2:]) in the
# redirector's framing: a 4-byte big-endian length, then the buffer, which the tap backend
# takes as the NIC's: a virtio-net header (12 bytes, all zero: no offloads) and the frame.
INJECT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0" + sys.argv[1])
for h in sys.argv[2:]:
    buf = bytes(12) + bytes.fromhex(h)
    s.sendall(len(buf).to_bytes(4, "big") + buf)
s.close()
"""


class Capture6:
    def __init__(self, node, dev, seconds):
        self.proc = subprocess.Popen(node.env.nsenter() + ["/usr/bin/python3", "-c", CAPTURE6,
                                                           dev, str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def frames(self):
        out, _ = self.proc.communicate(timeout=120)
        return [tuple(line.split()) for line in out.splitlines()]


def link_local(mac):
    """fe80:: and the modified EUI-64 of mac, as Linux makes it."""
    b = bytearray(bytes.fromhex(mac.replace(":", "")))
    b[0] ^= 2
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + b[:3] + b"\xff\xfe" + b[3:]))


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def icmp6_frame(src_mac, dst_mac, src, dst, body):
    """An Ethernet frame with an ICMPv6 message (hop limit 255, checksum filled in)."""
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    pseudo = s + d + struct.pack("!I3xB", len(body), 58) + body
    if len(pseudo) % 2:
        pseudo += b"\0"
    c = sum(struct.unpack(f"!{len(pseudo) // 2}H", pseudo))
    while c >> 16:
        c = (c & 0xFFFF) + (c >> 16)
    body = body[:2] + struct.pack("!H", ~c & 0xFFFF) + body[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + s + d
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x86\xdd" + ip6 + body


def neighbor_advert(mac, src, target):
    """An unsolicited NA (override) of target naming mac, from src to all nodes."""
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ipaddress.IPv6Address(target).packed
    body += bytes([2, 1]) + mac_bytes(mac)
    return icmp6_frame(mac, "33:33:00:00:00:01", src, "ff02::1", body)


def router_advert(mac, src):
    """A Router Advertisement offering itself as default router and a prefix to autoconf."""
    body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    body += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0)
    body += ipaddress.IPv6Address("2001:db8:bad::").packed
    body += bytes([1, 1]) + mac_bytes(mac)
    return icmp6_frame(mac, "33:33:00:00:00:01", src, "ff02::1", body)


def echo_request(mac, dst_mac, src, dst):
    body = struct.pack("!BBHHH", 128, 0, 0, 0x4E41, 1) + b"nodeagent"
    return icmp6_frame(mac, dst_mac, src, dst, body)


def inject_as(guest, frames):
    """Writes frames into guest's NIC as if the guest had sent them (see the module doc)."""
    dom = guest.node.dom(guest.inst)
    alias = re.search(r"<interface type='[^']+'>.*?<alias name='([^']+)'/>",
                      dom.XMLDesc(), re.S).group(1)
    name = "na-inject-" + uuid.uuid4().hex[:12]
    chardev = {"execute": "chardev-add", "arguments": {"id": name, "backend": {
        "type": "socket", "data": {"addr": {"type": "unix", "data": {
            "path": name, "abstract": True}}, "server": True, "wait": False}}}}
    redirector = {"execute": "object-add", "arguments": {
        "qom-type": "filter-redirector", "id": name + "-f", "netdev": "host" + alias,
        "queue": "rx", "indev": name}}
    for cmd in (chardev, redirector):
        reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(cmd), 0))
        assert "return" in reply, reply
    subprocess.run(guest.node.env.nsenter() + ["/usr/bin/python3", "-c", INJECT, name]
                   + [f.hex() for f in frames], check=True, timeout=60)


def ping6(addr, mark, dev=None):
    via = f"-I {dev} " if dev else ""
    return f'ping6 -c 2 -w 6 {via}{addr} >/dev/null 2>&1; echo "@@{mark}=$?@@"'


def test_two_guests_talk_over_ipv6_and_no_one_hears_spoofed_nd_or_router_adverts(node):
    node.start()
    a = Guest(node, "v6-a", "10.0.0.5", 100, ip6=PREFIX + "5")
    b = Guest(node, "v6-b", "10.0.0.6", 100, ip6=PREFIX + "6")
    # A's IPv6 address, spelled another way, is taken in the network; a link-local one is
    # never a NIC's.  Neither create boots anything.
    for ip6, field in (("fd00:0000:0:64:0::5", "create.spec.nics[0].ips[1]"),
                       ("fe80::5", "create.spec.nics[0].ips[1]")):
        inst = str(uuid.uuid4())
        last = node.create("v6-dup", ip="10.0.0.7", vni=100, ip6=ip6, inst=inst, check=None)[1]
        assert last["kind"] == "FAILED", last
        assert last["error"]["code"] == "INVALID_ARGUMENT", last
        assert last["error"]["field"] == field, last
        assert not node.has_domain(inst)
    a.ready(timeout=300)  # two guests booting at once under TCG on a shared machine
    b.ready(timeout=300)
    r = a.run([ping6(b.ip6, "a_b"), ping6(link_local(b.mac), "a_b_ll", dev="eth0"),
               ping(b.ip, "a_b_v4")], ["a_b", "a_b_ll", "a_b_v4"])
    assert r == {"a_b": 0, "a_b_ll": 0, "a_b_v4": 0}
    # Datagrams larger than the MTU (IP fragments, IPv4 and IPv6) pass both guests'
    # conntrack stages: OVS's userspace datapath reassembles them for conntrack.
    r = a.run([f'ping -c 2 -w 10 -s 30000 {b.ip} >/dev/null 2>&1; echo "@@big4=$?@@"',
               f'ping6 -c 2 -w 10 -s 30000 {b.ip6} >/dev/null 2>&1; echo "@@big6=$?@@"'],
              ["big4", "big6"])
    assert r == {"big4": 0, "big6": 0}, r
    r = b.run([ping6(a.ip6, "b_a"), "ip -6 route show default; echo \"@@route=$?@@\""],
              ["b_a", "route"])
    assert r["b_a"] == 0
    # The config drive's gateway6 became the default route.
    assert f"default via {PREFIX}1 dev eth0" in node.console(b.inst)

    # A sends from an address that is not its own: nothing reaches B; from its own, again.
    tap_b, _ = iface_of(node, b.port)
    tap_a, _ = iface_of(node, a.port)
    cap = Capture6(node, tap_b, 40)
    cap_a = Capture6(node, tap_a, 40)  # the injected frames did leave A
    other = PREFIX + "99"
    r = a.run(["echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad",
               f"ip -6 addr add {other}/64 dev eth0",
               f'ping6 -c 2 -w 6 -I {other} {b.ip6} >/dev/null 2>&1; echo "@@other=$?@@"',
               f"ip -6 addr del {other}/64 dev eth0", ping6(b.ip6, "own")], ["other", "own"])
    assert r == {"other": 1, "own": 0}
    # Frames the guest's kernel would not send, written into its NIC: a Router
    # Advertisement from its link-local address, a Neighbor Advertisement of B's address
    # from A's own address, a ping from another address; then the same NA of A's own
    # address and a ping from it, which must arrive (so the capture could see the others).
    ll_a = link_local(a.mac)
    inject_as(a, [router_advert(a.mac, ll_a),
                  neighbor_advert(a.mac, a.ip6, b.ip6),
                  neighbor_advert(a.mac, b.ip6, b.ip6),
                  neighbor_advert(a.mac, ll_a, link_local(b.mac)),
                  echo_request(a.mac, b.mac, other, b.ip6),
                  neighbor_advert(a.mac, a.ip6, a.ip6),
                  echo_request(a.mac, b.mac, a.ip6, b.ip6)])
    frames = cap.frames()
    sent = cap_a.frames()
    assert ("ip6", a.mac, ll_a, "134", "-") in sent, sent
    assert ("ip6", a.mac, a.ip6, "136", b.ip6) in sent, sent
    assert ("ip6", a.mac, a.ip6, "136", a.ip6) in frames, frames
    assert ("ip6", a.mac, a.ip6, "128", "-") in frames, frames
    assert not [f for f in frames if f[2] == other], frames
    assert not [f for f in frames if f[3] == "134"], frames
    assert not [f for f in frames if f[3] == "136" and f[1] == a.mac and f[4] != a.ip6], frames
    # B still reaches A, and took no route from the advertisement.
    r = b.run([ping6(a.ip6, "b_a_after"),
               f'ip -6 route show | grep -q 2001:db8:bad; echo "@@ra_route=$?@@"'],
              ["b_a_after", "ra_route"])
    assert r == {"b_a_after": 0, "ra_route": 1}

    table = flows(node)
    assert [f for f in table if "priority=110,icmp6,icmp_type=134" in f and "actions=drop" in f]
    _, ofport_a = iface_of(node, a.port)
    mine = [f for f in table if f"in_port={ofport_a}," in f and "ipv6_src" in f
            and "priority=100" in f]
    assert sorted(re.search(r"ipv6_src=([^,\s]+)", f).group(1) for f in mine) == sorted(
        [ll_a, a.ip6])

    # The host's side of the taps has no IPv6: the advertisement gave the test host neither an
    # address nor a route, and the host has no address of its own there for a guest to reach.
    for tap in (tap_a, tap_b):
        assert in_ns(node, "cat", f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6").stdout == "1\n"
        assert not in_ns(node, "ip", "-6", "addr", "show", "dev", tap).stdout.strip()
    host6 = in_ns(node, "ip", "-6", "addr").stdout + in_ns(node, "ip", "-6", "route").stdout
    assert "2001:db8:bad" not in host6, host6

    # IPv6 multicast other than Neighbor Discovery passes the receiver's ingress ACL: A's echo
    # request to all nodes reaches B while B's group ("open") lets IPv6 in, and no longer once
    # B's group has no IPv6 ingress rule, while A's Neighbor Advertisement still does.
    def to_b_from_a(frames):
        cap = Capture6(node, tap_b, 15)
        inject_as(a, frames)
        return [f[3] for f in cap.frames() if f[1] == a.mac and f[2] == a.ip6]
    all_nodes = echo_request(a.mac, "33:33:00:00:00:01", a.ip6, "ff02::1")
    assert "128" in to_b_from_a([all_nodes])
    closed = ["dir=ingress,ethertype=ipv4", "dir=egress,ethertype=ipv4",
              "dir=egress,ethertype=ipv6"]
    assert node.put_group("v6-closed", closed)["kind"] == "DONE"
    last = node.request("port-security-groups", b.port, "--group", "v6-closed", check=0)
    assert last["kind"] == "DONE", last
    _, of_b = iface_of(node, b.port)

    def b_ingress_rules():
        return [f.split("actions=")[1].count("conjunction(") for f in flows(node)
                if f"table=20, priority=100,reg7={of_b:#x} " in f]
    wait_for(lambda: b_ingress_rules() == [1], 30, "B's ingress rules to be IPv4's alone")
    seen = to_b_from_a([neighbor_advert(a.mac, a.ip6, a.ip6), all_nodes])
    assert "136" in seen and "128" not in seen, seen


def test_ipv6_across_the_tunnel(two_nodes):  # noqa: F811
    hosts, (n1, n2), _ = two_nodes
    a = Guest(n1, "v6t-a", "10.0.0.5", 300, ip6=PREFIX + "5")
    b = Guest(n2, "v6t-b", "10.0.0.6", 300, ip6=PREFIX + "6")
    a.ready(timeout=300)
    b.ready(timeout=300)
    wait_for(lambda: tunnel_ports(n1) and tunnel_ports(n2), 60, "a tunnel port on each node")
    r = a.run([ping6(b.ip6, "a_b"), ping6(link_local(b.mac), "a_b_ll", dev="eth0"),
               f'ping -c 2 -w 10 -s 30000 {b.ip} >/dev/null 2>&1; echo "@@big4=$?@@"',
               f'ping6 -c 2 -w 10 -s 30000 {b.ip6} >/dev/null 2>&1; echo "@@big6=$?@@"'],
              ["a_b", "a_b_ll", "big4", "big6"])
    assert r == {"a_b": 0, "a_b_ll": 0, "big4": 0, "big6": 0}, r  # fragments too
    r = b.run([ping6(a.ip6, "b_a")], ["b_a"])
    assert r == {"b_a": 0}
