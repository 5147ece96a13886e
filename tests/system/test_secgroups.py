"""Security groups: real guests (TCG) on one and on two test hosts, the agent's conntrack
stage in the bridge.  What a guest reaches is asked of the guests (busybox nc on their
consoles: a listener that echoes, a client that must get its line back); what the bridge
holds is read with ovs-ofctl, what conntrack holds with ovs-appctl dpctl/dump-conntrack."""
import os
import re

from harness import wait_for
from test_network import Guest, flows, iface_of, in_ns
from test_tunnels import tunnel_ports, two_nodes  # noqa: F401 (the fixture)

DB_RULES = ["dir=ingress,ethertype=ipv4,proto=tcp,ports=22",
            "dir=ingress,ethertype=ipv4,proto=tcp,ports=5432,group=db",
            "dir=egress,ethertype=ipv4"]
CLIENT_RULES = ["dir=egress,ethertype=ipv4"]


def listen(*ports):
    """Console lines that start an echo server on each port."""
    return [f"nc -ll -p {p} -e /bin/cat >/dev/null 2>&1 &" for p in ports] + [
        'echo "@@listening=0@@"']


def tcp(ip, port, mark):
    """A console line: 0 when a line sent to ip:port comes back (connected, replies flow)."""
    return (f'R=$(echo hi{port} | timeout 10 nc {ip} {port} 2>/dev/null); '
            f'[ "$R" = hi{port} ]; echo "@@{mark}=$?@@"')


def stream(ip, port):
    """A console line: a connection to ip:port that sends a line every 0.2 s for as long as it
    lives, the echoes counted in /tmp/echoes."""
    return (f"(while :; do echo tick; sleep 0.2; done) | nc {ip} {port} >/tmp/echoes "
            f"2>/dev/null &")


def echoes(guest):
    r = guest.run(['echo "@@n=$(wc -l </tmp/echoes)@@"'], ["n"])
    return r["n"]


def conntrack(node, zone):
    """The node's conntrack entries in zone (ovs-vswitchd's userspace table)."""
    ctl = os.path.join(node.env.ovs_rundir, "ovs-vswitchd.ctl")
    out = in_ns(node, "ovs-appctl", "-t", ctl, "dpctl/dump-conntrack", f"zone={zone}").stdout
    return [line for line in out.splitlines() if line.strip()]


def to_port(entries, port):
    return [e for e in entries if f"dport={port})" in e.split("reply=")[0]]


def test_22_from_the_world_5432_from_the_group_and_a_removed_rule_cuts(node):
    node.start()
    assert node.put_group("db", DB_RULES)["kind"] == "DONE"
    assert node.put_group("client", CLIENT_RULES)["kind"] == "DONE"
    a = Guest(node, "sg-a", "10.0.0.5", 100, sg=["db"])       # the server
    b = Guest(node, "sg-b", "10.0.0.6", 100, sg=["db"])       # a member of its group
    c = Guest(node, "sg-c", "10.0.0.7", 100, sg=["client"])   # an outsider
    d = Guest(node, "sg-d", "10.0.0.8", 100, sg=None)         # the default group
    for g in (a, b, c, d):
        g.ready(timeout=300)
    assert a.run(listen(22, 5432, 8080), ["listening"]) == {"listening": 0}
    assert d.run(listen(80), ["listening"]) == {"listening": 0}

    # The outsider reaches 22, not 5432; the member both; nobody 8080 (no rule).
    r = c.run([tcp(a.ip, 22, "c22"), tcp(a.ip, 5432, "c5432")], ["c22", "c5432"])
    assert r == {"c22": 0, "c5432": 1}, r
    r = b.run([tcp(a.ip, 22, "b22"), tcp(a.ip, 5432, "b5432"), tcp(a.ip, 8080, "b8080")],
              ["b22", "b5432", "b8080"])
    assert r == {"b22": 0, "b5432": 0, "b8080": 1}, r
    # The default: D connects out (and gets its replies), nothing connects in.
    r = d.run([tcp(a.ip, 22, "d22")], ["d22"])
    assert r == {"d22": 0}, r
    r = b.run([tcp(d.ip, 80, "b80")], ["b80"])
    assert r == {"b80": 1}, r
    _, zone_a = iface_of(node, a.port)

    # A connection from the member to 5432 that stays open; the rule goes: the connection is
    # marked (ct_mark=1) and its echoes stop, while 22 still works.
    b.run([stream(a.ip, 5432), 'echo "@@started=0@@"'], ["started"])
    n0 = echoes(b)
    wait_for(lambda: echoes(b) > n0, 60, "echoes over the open connection to 5432")
    assert [e for e in to_port(conntrack(node, zone_a), 5432) if "ESTABLISHED" in e]
    assert node.put_group("db", [DB_RULES[0], DB_RULES[2]])["kind"] == "DONE"
    wait_for(lambda: [e for e in to_port(conntrack(node, zone_a), 5432) if "mark=1" in e], 30,
             "the connection to 5432 marked as cut")
    n1 = echoes(b)
    n2 = echoes(b)
    assert echoes(b) == n2, (n1, n2)
    r = c.run([tcp(a.ip, 22, "c22"), tcp(a.ip, 5432, "c5432")], ["c22", "c5432"])
    assert r == {"c22": 0, "c5432": 1}, r

    # The rule back; then the outsider's address joins the group: one flow comes (its
    # address's clause), nothing else moves, and 5432 opens to it.
    assert node.put_group("db", DB_RULES)["kind"] == "DONE"
    wait_for(lambda: [f for f in flows(node) if "tp_dst=5432" in f], 30, "the 5432 rule back")
    before = set(flows(node))
    assert node.put_group("db", DB_RULES, members=[c.ip])["kind"] == "DONE"
    wait_for(lambda: set(flows(node)) != before, 30, "the new member's flow")
    after = set(flows(node))
    assert not before - after, before - after
    added = after - before
    assert len(added) == 1 and f"nw_src={c.ip}" in next(iter(added)), added
    r = c.run([tcp(a.ip, 5432, "c5432")], ["c5432"])
    assert r == {"c5432": 0}, r

    # ICMP by type: a rule for timestamp requests (13) does not let pings (8) in; one for
    # echo requests with code 0 does, and their replies come back.
    def ping_a(mark):
        return c.run([f'ping -c 2 -w 4 {a.ip} >/dev/null 2>&1; echo "@@{mark}=$?@@"'], [mark])
    for icmp, expect in (("13", 1), ("8/0", 0)):
        rules = DB_RULES + [f"dir=ingress,ethertype=ipv4,proto=icmp,icmp={icmp}"]
        assert node.put_group("db", rules, members=[c.ip])["kind"] == "DONE"
        match = "icmp_type=" + icmp.replace("/", ",icmp_code=")
        wait_for(lambda: [f for f in flows(node) if match in f], 30, f"the rule for ICMP {icmp}")
        assert ping_a("icmp") == {"icmp": expect}, icmp


def test_restarts_keep_established_connections_and_the_flows(node):
    node.start()
    assert node.put_group("db", DB_RULES)["kind"] == "DONE"
    a = Guest(node, "sgr-a", "10.0.0.5", 100, sg=["db"])
    b = Guest(node, "sgr-b", "10.0.0.6", 100, sg=["db"])
    for g in (a, b):
        g.ready(timeout=300)
    assert a.run(listen(5432), ["listening"]) == {"listening": 0}
    b.run([stream(a.ip, 5432), 'echo "@@started=0@@"'], ["started"])
    n = echoes(b)
    wait_for(lambda: echoes(b) > n, 60, "echoes over the open connection")
    before = flows(node)
    for what in ("ovs-vswitchd", "agent"):
        if what == "agent":
            node.agent.stop()
            node.start()
        else:
            node.env.restart_ovs(what)
        wait_for(lambda: flows(node) == before, 60, f"the same flows after restarting {what}",
                 interval=0.2)
        n = echoes(b)
        wait_for(lambda: echoes(b) > n, 90, f"echoes again after restarting {what}")
        assert flows(node) == before, what

    # The client's interface leaves the bridge while no agent runs (as when libvirt unplugs a
    # guest that died): the agent's start finds the zone in the bridge's record
    # (external_ids:nodeagent-ct-zones) and flushes it; the server's zone stays.
    tap_b, zone_b = iface_of(node, b.port)
    _, zone_a = iface_of(node, a.port)
    def recorded():
        return node.env.vsctl("get", "Bridge", node.env.bridge,
                              "external_ids:nodeagent-ct-zones").strip().strip('"')
    assert sorted(int(z) for z in recorded().split(",")) == sorted([zone_a, zone_b]), recorded()
    assert conntrack(node, zone_b)
    node.agent.stop()
    node.env.vsctl("del-port", tap_b)
    assert conntrack(node, zone_b)  # nothing else flushes it
    node.start()
    wait_for(lambda: not conntrack(node, zone_b), 30, f"conntrack zone {zone_b} to be empty")
    assert re.search(rf'conntrack zone flushed".*zone={zone_b}\b', node.agent.logs())
    wait_for(lambda: recorded() == str(zone_a), 30, "the record to lose the client's zone")

    # The server goes: its zone's connections go with it (an established TCP entry would
    # otherwise stay for a day, for the next interface with its port number).
    assert to_port(conntrack(node, zone_a), 5432)
    assert node.request("delete", a.inst, check=0)["kind"] == "DONE"
    wait_for(lambda: not conntrack(node, zone_a), 30, f"conntrack zone {zone_a} to be empty")
    assert re.search(rf'conntrack zone flushed".*zone={zone_a}\b', node.agent.logs())


def test_a_member_on_another_node_reaches_5432_across_the_tunnel(two_nodes):  # noqa: F811
    hosts, (n1, n2), _ = two_nodes
    member, outsider = "10.0.0.16", "10.0.0.17"
    assert n1.put_group("db", DB_RULES, members=[member])["kind"] == "DONE"
    assert n2.put_group("client", CLIENT_RULES)["kind"] == "DONE"
    a = Guest(n1, "sgt-a", "10.0.0.15", 320, sg=["db"])
    b = Guest(n2, "sgt-b", member, 320, sg=["client"])
    c = Guest(n2, "sgt-c", outsider, 320, sg=["client"])
    for g in (a, b, c):
        g.ready(timeout=300)
    wait_for(lambda: tunnel_ports(n1) and tunnel_ports(n2), 60, "a tunnel port on each node")
    assert a.run(listen(22, 5432), ["listening"]) == {"listening": 0}
    r = b.run([tcp(a.ip, 22, "b22"), tcp(a.ip, 5432, "b5432")], ["b22", "b5432"])
    assert r == {"b22": 0, "b5432": 0}, r
    r = c.run([tcp(a.ip, 22, "c22"), tcp(a.ip, 5432, "c5432")], ["c22", "c5432"])
    assert r == {"c22": 0, "c5432": 1}, r
    # Unsolicited inbound to the clients (the default of their group: no ingress rule).
    assert b.run(listen(7), ["listening"]) == {"listening": 0}
    r = a.run([tcp(b.ip, 7, "a7")], ["a7"])
    assert r == {"a7": 1}, r


def test_requests_are_checked_and_a_group_in_use_stays(node):
    node.start()
    # A rule's bad field is named; nothing is recorded.
    last = node.put_group("bad", ["dir=ingress,ethertype=ipv4,proto=tcp,ports=90-80"], check=1)
    assert last["error"]["field"] == "security_group_put.group.rules[0].port_range_max", last
    # A NIC may only name a group that is on the node.
    inst, last = node.create("sgv-a", sg=["nope"], check=1)
    assert last["error"]["code"] == "NOT_FOUND", last
    assert last["error"]["field"] == "create.spec.nics[0].security_groups[0]", last
    assert node.put_group("db", DB_RULES)["kind"] == "DONE"
    a = Guest(node, "sgv-b", "10.0.0.5", 100, sg=["db"])
    last = node.request("security-group-delete", "db", check=1)
    assert last["error"]["code"] == "CONFLICT", last
    # The port leaves the group: its flows lose the group's rules; then the group can go.
    _, ofport = iface_of(node, a.port)
    mine = f"table=20, priority=100,reg7={ofport:#x} "
    assert [f for f in flows(node) if mine in f]
    last = node.request("port-security-groups", a.port, check=0)
    assert last["kind"] == "DONE" and last["instance_uuid"] == a.inst, last
    wait_for(lambda: not [f for f in flows(node) if mine in f], 30, "the port's ingress rules to go")
    assert node.request("security-group-delete", "db", check=0)["kind"] == "DONE"
    assert node.request("security-group-delete", "db", check=0)["kind"] == "DONE"  # idempotent
    # A restart keeps what the store recorded: the port without groups, db gone.
    node.agent.stop()
    node.start()
    last = node.request("port-security-groups", a.port, "--group", "db", check=1)
    assert last["error"]["field"] == "port_security_groups.security_groups[0]", last
