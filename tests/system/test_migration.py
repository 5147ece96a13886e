"""Live migration between two test hosts (deploy/hosts.py: each its own libvirtd and OVS in a
namespace of its own, DESIGN.md's test facts): an agent on each, known to the other from its
signed announcements; the source's and the destination's recorded jobs exchange signed peer
messages on the devbus; libvirt migrates peer to peer with the disk's top layer copied over
UNIX sockets in a directory both hosts see.  What the guest keeps is asked of the guest (its
console); what is left on a node is read from libvirt, the instance directory and the agent.
One guest, booted once, serves every case."""
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from harness import wait_for
from nodes import Node
from test_network import Guest

MARK_SECTOR = 409600  # 200 MiB into the 1 GiB disk: past the base image's data


# libvirt refuses a peer-to-peer destination URI without a server name (as local), and a
# server name with the unix transport: the source's libvirtd reaches the destination's UNIX
# socket through the ext transport, a relay program that connects to it.
RELAY = """#!/usr/bin/python3
import os, selectors, socket
s = socket.socket(socket.AF_UNIX)
s.connect(%r)
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                s.shutdown(socket.SHUT_WR)
                sel.unregister(0)
                continue
            s.sendall(data)
        else:
            data = s.recv(65536)
            if not data:
                raise SystemExit(0)
            os.write(1, data)
"""


def peer_uri(host, directory):
    """The host's libvirtd as the other host's libvirtd reaches it."""
    relay = os.path.join(directory, f"connect-h{host.index}")
    with open(relay, "w") as f:
        f.write(RELAY % host.env.libvirt_sock)
    os.chmod(relay, 0o755)
    return f"qemu+ext://h{host.index}/system?command={relay}"


@pytest.fixture
def two_nodes(tmp_path, images):
    from hosts import Hosts
    from harness import Cluster
    hosts = Hosts(tempfile.mkdtemp(prefix="nodeagent-hosts-"), 2)
    sockets = tempfile.mkdtemp(prefix="nodeagent-mig-")
    os.chmod(sockets, 0o1777)  # both hosts' QEMU and libvirtd reach it
    cluster = Cluster(tmp_path, nodes=("h1", "h2"))
    try:
        hosts.start()
        nodes = [Node(cluster, h.env, images, node_id=f"h{h.index}", extra_config=(
            f"[network]\ntunnel_endpoint = {h.underlay_ip}\nannounce_interval = 1\n"
            "[hypervisor]\ncpu_mode = custom\ncpu_model = qemu64\nmachine = pc-i440fx-7.2\n"
            f"[migration]\nlibvirt_uri = {peer_uri(h, sockets)}\nsocket_dir = {sockets}\n")).start()
            for h in hosts]
        yield hosts, nodes
    finally:
        cluster.close()
        hosts.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def peers_of(node):
    _, body = node.agent.get_json("/v1/peers")
    return {p["node_id"] for p in body["peers"]}


def instance_view(node, inst):
    status, body = node.agent.get(f"/v1/instances/{inst}")
    return status, body


def terminal(node, rid, timeout=600):
    got = []
    wait_for(lambda: got.extend(node.terminal_events(rid)) or got, timeout,
             f"the terminal event of {rid}", interval=1)
    return got[0]


def used(node):
    """The node's usage as its agent reports it ({resource class: used})."""
    _, cap = node.agent.get_json("/v1/capacity")
    return {i["resource_class"]: i["used"] for i in cap["inventories"]}


def assert_untouched_on(node, inst):
    """Nothing of inst on node: no domain, no directory, no record."""
    assert not node.has_domain(inst)
    assert not os.path.exists(node.dir(inst))
    assert instance_view(node, inst)[0] == 404


def test_a_guest_migrates_with_its_disk_and_a_cancel_or_refusal_changes_nothing(two_nodes):
    hosts, (n1, n2) = two_nodes
    wait_for(lambda: "h2" in peers_of(n1) and "h1" in peers_of(n2), 60, "the peers to know each other")
    n2.open_group()  # the guest's security group, as the control plane puts it on every node
    g = Guest(n1, "mig", "10.0.0.5", 400)
    g.ready(timeout=300)
    inst = g.inst

    # Refusals: each with its code, nothing changed on either node.
    last = n1.request("migrate", inst, "--to", "h9")
    assert last["kind"] == "FAILED" and last["error"]["code"] == "UNAVAILABLE", last
    assert "not a live peer" in last["error"]["message"]
    last = n1.request("migrate", inst, "--to", "h1")
    assert last["kind"] == "FAILED" and last["error"]["code"] == "INVALID_ARGUMENT", last
    last = n1.request("stop", inst)
    assert last["kind"] == "DONE", last
    last = n1.request("migrate", inst, "--to", "h2")
    assert last["kind"] == "FAILED" and last["error"]["code"] == "CONFLICT", last
    assert "STOPPED" in last["error"]["message"]
    assert_untouched_on(n2, inst)
    last = n1.request("start", inst)
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    g.ready(timeout=300)  # booted again: the console shows ready once more
    n1.wait_ready(inst, "mig", g.ip, count=2, timeout=300)

    # A marker on the disk, written through the console.
    mark = "MARK-" + uuid.uuid4().hex[:12]
    r = g.run([f"printf '{mark}' | dd of=/dev/vda bs=512 seek={MARK_SECTOR} conv=fsync "
               f"2>/dev/null; echo \"@@w=$?@@\""], ["w"])
    assert r["w"] == 0

    # A slow migration (1 MiB/s), a second migrate refused while it runs, then a cancel.
    slow = str(uuid.uuid4())
    n1.send("migrate", inst, "--to", "h2", "--bandwidth-mib-s", "1", request_id=slow)
    wait_for(lambda: any(e["kind"] == "PROGRESS" and e.get("message", "").startswith("migrating")
                         for e in n1.cluster.events(request_id=slow)), 300,
             "the slow migration's copy to report progress", interval=1)
    assert n2.has_domain(inst)  # the incoming guest, paused until the commit point
    assert n2.state(inst) == 3  # VIR_DOMAIN_PAUSED
    last = n1.request("migrate", inst, "--to", "h2", timeout=120)
    assert last["kind"] == "FAILED" and last["error"]["code"] == "CONFLICT", last
    assert "MIGRATING" in last["error"]["message"]
    last = n1.request("cancel-migration", inst, timeout=120)
    assert last["kind"] == "DONE", last
    ev = terminal(n1, slow)
    assert ev["kind"] == "FAILED" and ev["error"]["code"] == "CANCELLED", ev
    wait_for(lambda: not n2.has_domain(inst) and not os.path.exists(n2.dir(inst))
             and instance_view(n2, inst)[0] == 404, 120, "node 2 to be clean after the cancel")
    assert used(n2) == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}, used(n2)
    assert n1.state(inst) == 1  # VIR_DOMAIN_RUNNING: the guest never stopped on node 1
    _, body = n1.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "RUNNING", body

    # The migration: on node 2 with the same uuid, MAC and address, and the marker.
    last = n1.request("migrate", inst, "--to", "h2", timeout=600)
    assert last["kind"] == "DONE", last
    wait_for(lambda: [e for e in n2.cluster.events(instance_uuid=inst)
                      if e["request_kind"] == "migration_prepare" and e["kind"] == "DONE"],
             120, "node 2 to resume the guest")
    assert n2.state(inst) == 1
    xml = n2.dom(inst).XMLDesc()
    assert g.mac in xml and n2.dom(inst).UUIDString() == inst
    _, body = n2.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "RUNNING", body
    g.node = n2
    r = g.run([f"dd if=/dev/vda bs=512 skip={MARK_SECTOR} count=1 2>/dev/null | "
               f"grep -q {mark}; echo \"@@r=$?@@\"",
               f"ip -4 addr show eth0 | grep -q 'inet {g.ip}/'; echo \"@@ip=$?@@\""],
              ["r", "ip"])
    assert r == {"r": 0, "ip": 0}, r
    # Nothing left on node 1: domain, directory, record, claim, port; node 2 holds the claim.
    assert_untouched_on(n1, inst)
    assert used(n1) == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}, used(n1)
    assert used(n2) == {"VCPU": 1, "MEMORY_MB": 256, "DISK_GB": 1}, used(n2)
    ports = n1.env.vsctl("--bare", "--columns=name", "find", "Interface",
                         f"external_ids:iface-id={g.port}").strip()
    assert ports == "", ports

    # Back to node 1, whose agent dies (SIGKILL) at the commit point: the source's job is over
    # and its domain gone, node 1 has the guest paused and its job recorded in the `resume`
    # phase.  Restarted, it resumes the guest: one copy, running, on node 1.
    n1.agent.stop()
    n1.start(env={"NODEAGENT_FAILPOINTS": "migration_prepare.resume=kill"})
    wait_for(lambda: "h2" in peers_of(n1) and "h1" in peers_of(n2), 60, "the peers again")
    back = str(uuid.uuid4())
    n2.send("migrate", inst, "--to", "h1", request_id=back)
    n1.wait_killed(timeout=300)
    assert terminal(n2, back)["kind"] == "DONE"
    assert not n2.has_domain(inst) and n1.state(inst) == 3  # paused: nobody resumed it yet
    n1.start(env={"NODEAGENT_FAILPOINTS": ""})
    wait_for(lambda: n1.state(inst) == 1 and instance_view(n1, inst)[0] == 200
             and n1.agent.get_json(f"/v1/instances/{inst}")[1]["state"] == "RUNNING", 120,
             "node 1 to resume the guest after its restart")
    assert not n2.has_domain(inst) and not os.path.exists(n2.dir(inst))
    assert instance_view(n2, inst)[0] == 404
    g.node = n1
    r = g.run([f"dd if=/dev/vda bs=512 skip={MARK_SECTOR} count=1 2>/dev/null | "
               f"grep -q {mark}; echo \"@@r2=$?@@\""], ["r2"])
    assert r["r2"] == 0

    # The source's agent dies (SIGKILL) at the `perform` boundary: the destination prepared,
    # libvirt has not started.  Restarted, the source cannot go on (the destination's answer
    # is not recorded), fails the migration and tells the destination to undo: the guest
    # runs on in node 1, node 2 is clean.
    n1.agent.stop()
    n1.start(env={"NODEAGENT_FAILPOINTS": "migrate.perform=kill"})
    wait_for(lambda: "h2" in peers_of(n1), 60, "node 1 to know node 2 again")
    cut = str(uuid.uuid4())
    n1.send("migrate", inst, "--to", "h2", request_id=cut)
    n1.wait_killed(timeout=300)
    assert n1.state(inst) == 1 and n2.has_domain(inst) is False and os.path.exists(n2.dir(inst))
    n1.start(env={"NODEAGENT_FAILPOINTS": ""})
    ev = terminal(n1, cut)
    assert ev["kind"] == "FAILED" and ev["error"]["code"] == "CANCELLED", ev
    wait_for(lambda: not os.path.exists(n2.dir(inst)) and instance_view(n2, inst)[0] == 404,
             120, "node 2 to undo what it prepared")
    assert n1.state(inst) == 1
    assert n1.agent.get_json(f"/v1/instances/{inst}")[1]["state"] == "RUNNING"

    # The source's agent dies at the `handover` boundary: libvirt's migration completed (the
    # domain is gone from node 1, paused on node 2), the finish not yet sent.  Restarted, the
    # source sends it: node 2 resumes the guest, node 1 keeps nothing.
    n1.agent.stop()
    n1.start(env={"NODEAGENT_FAILPOINTS": "migrate.handover=kill"})
    wait_for(lambda: "h2" in peers_of(n1), 60, "node 1 to know node 2 again")
    late = str(uuid.uuid4())
    n1.send("migrate", inst, "--to", "h2", request_id=late)
    n1.wait_killed(timeout=300)
    assert not n1.has_domain(inst) and n2.state(inst) == 3
    n1.start(env={"NODEAGENT_FAILPOINTS": ""})
    assert terminal(n1, late)["kind"] == "DONE"
    wait_for(lambda: n2.state(inst) == 1
             and n2.agent.get_json(f"/v1/instances/{inst}")[1]["state"] == "RUNNING", 120,
             "node 2 to resume the guest")
    assert_untouched_on(n1, inst)
    assert used(n1) == {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}, used(n1)
