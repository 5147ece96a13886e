"""No automatic destruction: a guest the state store does not record as its own (a lost
state.db, another agent on the same libvirtd) is reported as an orphan and left running with
its disk; the agent holds (consumes no request) while orphans of its own node exist, until an
operator purges, releases or adopts them (adopted: an instance again, from the spec its
domain's metadata carries, without a restart); a normal delete still removes everything, and
a delete cut short after its tombstone is finished by the restarted agent.  What holds is
read from libvirt and the disk, not only from the agent."""
import os
import re
import uuid

import libvirt
import pytest

from harness import Cluster, wait_for
from nodes import S, network_id

FAST = "[agent]\nreconcile_interval = 5\n"


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, nodes=("n1", "n2"))
    try:
        yield c
    finally:
        c.close()


def orphans(agent):
    status, body = agent.get_json("/v1/orphans")
    assert status == 200, body
    return {o["uuid"]: o for o in body["orphans"]}, body


def listed_or_gone(node, agent, inst):
    """The guest listed as an orphan, or (what the agent did before orphans existed) its
    domain gone: either ends the wait, and the test then checks the world."""
    if not node.has_domain(inst):
        return True
    status, body = agent.get_json("/v1/orphans")
    return status == 200 and any(o["uuid"] == inst for o in body["orphans"])


def metric(agent, name):
    _, text = agent.get("/metrics")
    m = re.search(rf"^{name} (-?[0-9.]+)$", text, re.M)
    return float(m.group(1)) if m else None


def lose_state_db(node):
    """The agent restarted on an empty state store, its guests still running."""
    node.agent.stop()
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(node.env.state_dir, "state.db" + suffix)
        if os.path.exists(path):
            os.unlink(path)
    node.start()


def adopt(node, agent, inst):
    return node.cluster.nodectl("--admin-socket", agent.socket, "adopt", inst)


def set_instance_metadata(dom, element):
    """Replaces the agent's metadata element of a domain (live and persistent), as an older
    agent or an operator's hand could have left it.  libvirt takes the element without its
    namespace and puts it back into it."""
    bare = re.sub(r'\s+xmlns:na="[^"]*"', "", element.replace("na:", ""))
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, bare, "na", "urn:nodeagent:instance:1",
                    libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def send_create(node, inst, rid, ip):
    """A create sent without waiting for its answer."""
    mac = "52:54:00:" + os.urandom(3).hex(":")
    node.cluster.nodectl(
        "create", "--uuid", inst, "--name", "later", "--tenant", "t1", "--vcpus", "1",
        "--memory-mib", "256", "--disk-gib", "1", "--image-id", "guest", "--image-url",
        node.images.url + "guest.qcow2", "--image-sha256", node.images.guest_sha,
        "--image-format", "qcow2", "--hostname", "later", "--request-id", rid,
        "--nic", f"port={uuid.uuid4()},network={network_id(7)},vni=7,mac={mac},ip={ip}/24,"
        "gateway=10.0.0.1,mtu=1450", check=0)


def test_lost_state_db_keeps_the_guest_and_holds_until_purged(node):
    node.start(extra_config=FAST)
    inst, last = node.create("keep", ip="10.0.0.30")
    assert last["kind"] == "DONE", last
    disk = os.path.join(node.dir(inst), "disk")
    assert os.path.exists(disk)

    lose_state_db(node)

    wait_for(lambda: listed_or_gone(node, node.agent, inst), 60, "the guest listed as an orphan")
    # The world: the guest runs, its directory and disk are where they were.
    assert node.has_domain(inst) and node.state(inst) == S["running"]
    assert os.path.exists(disk)
    found, body = orphans(node.agent)
    o = found[inst]
    assert o["why"] == "other_store" and o["node_id"] == "n1" and o["holds"]
    assert o["name"] == "keep" and o["tenant"] == "t1" and o["has_domain"] and o["has_dir"]
    assert o["store_id"] != body["store_id"] and body["holding"]
    # The world: the guest runs, its directory and disk are where they were.
    assert node.state(inst) == S["running"]
    assert os.path.exists(disk)
    assert not node.agent.checks()["orphans"]
    assert metric(node.agent, "nodeagent_orphans") == 1
    assert metric(node.agent, "nodeagent_hold") == 1
    reported = node.cluster.events(instance_uuid=inst, kind="ORPHAN")
    assert len(reported) == 1, reported

    # Held: a create sent now is not taken (it waits on the bus).
    later = str(uuid.uuid4())
    send_create(node, later, "held-create", "10.0.0.31")
    wait_for(lambda: (metric(node.agent, "nodeagent_bus_consumer_lag") or 0) >= 1, 60,
             "the held create to be seen on the node topic, not consumed")
    assert node.agent.get("/v1/requests/held-create")[0] == 404
    assert not node.has_domain(later)
    r = node.cluster.nodectl("--admin-socket", node.agent.socket, "orphans", check=0)
    assert inst in r.stdout and "HOLDS" in r.stdout

    node.cluster.nodectl("--admin-socket", node.agent.socket, "purge", inst, check=0)
    assert not node.has_domain(inst) and not os.path.exists(node.dir(inst))
    wait_for(lambda: node.agent.checks()["orphans"], 30, "the hold to end")
    done = wait_for(lambda: [e for e in node.cluster.events(request_id="held-create")
                             if e["kind"] in ("DONE", "FAILED")], 300, "the held create's answer",
                    interval=1)
    assert done[-1]["kind"] == "DONE", done
    assert node.state(later) == S["running"]
    # Reported once, not on every pass (reconciliation ran every 5 s meanwhile).
    assert len(node.cluster.events(instance_uuid=inst, kind="ORPHAN")) == 1


def test_a_second_agent_on_the_same_libvirtd_leaves_the_first_ones_guest(node, tmp_path):
    node.start(extra_config=FAST)
    inst, last = node.create("first", ip="10.0.0.40")
    assert last["kind"] == "DONE", last

    other_state = os.path.join(node.env.dir, "state-n2")
    os.makedirs(other_state)
    second = node.cluster.agent("n2", virtenv=node.env,
                                extra_config=FAST + "[network]\nenabled = false\n")
    with open(second.config) as f:
        text = f.read()
    with open(second.config, "w") as f:
        f.write(text.replace(f"state_dir = {node.env.state_dir}\n", f"state_dir = {other_state}\n"))
    second.start()

    wait_for(lambda: listed_or_gone(node, second, inst), 60, "the second agent to see an orphan")
    assert node.has_domain(inst) and node.state(inst) == S["running"]
    o = orphans(second)[0][inst]
    assert o["why"] == "other_node" and o["node_id"] == "n1" and not o["holds"]
    assert not o["has_dir"]
    assert second.checks()["orphans"]
    assert node.state(inst) == S["running"]
    assert os.path.exists(os.path.join(node.dir(inst), "disk"))
    assert inst not in orphans(node.agent)[0]
    # Another node's guest is not the second agent's to adopt: refused, saying why, untouched.
    r = adopt(node, second, inst)
    assert r.returncode != 0 and "belongs to node n1" in r.stderr, r
    assert orphans(second)[0][inst]["node_id"] == "n1"
    assert re.search(r'<na:owner node="n1"', node.dom(inst).XMLDesc(0))
    second.stop()


def test_adopt_makes_the_orphan_an_instance_again_without_a_restart(node):
    node.start(extra_config=FAST)
    mac, port = "52:54:00:" + os.urandom(3).hex(":"), str(uuid.uuid4())
    inst, last = node.create("adoptee", ip="10.0.0.60", mac=mac, port=port)
    assert last["kind"] == "DONE", last
    pid = node.qemu_pid(inst)

    lose_state_db(node)
    wait_for(lambda: listed_or_gone(node, node.agent, inst), 60, "the guest listed as an orphan")
    found, body = orphans(node.agent)
    assert found[inst]["holds"] and found[inst]["has_spec"] and body["holding"]
    store_id = body["store_id"]
    assert node.agent.get_json(f"/v1/instances/{inst}")[0] == 404

    # Not an orphan: refused, saying so; nothing else changes.
    stranger = str(uuid.uuid4())
    r = adopt(node, node.agent, stranger)
    assert r.returncode != 0 and "not a current orphan" in r.stderr, r
    assert orphans(node.agent)[1]["holding"]

    # Held: a create sent now waits on the bus.
    later = str(uuid.uuid4())
    send_create(node, later, "held-by-orphan", "10.0.0.61")
    wait_for(lambda: (metric(node.agent, "nodeagent_bus_consumer_lag") or 0) >= 1, 60,
             "the held create to be seen on the node topic, not consumed")
    assert node.agent.get("/v1/requests/held-by-orphan")[0] == 404

    # A domain whose metadata carries no spec (an older agent's) cannot be adopted: refused,
    # saying why.  Then the metadata as the agent wrote it again.
    dom = node.dom(inst)
    written = re.search(r"<na:instance .*</na:instance>", dom.XMLDesc(0), re.S).group(0)
    set_instance_metadata(dom, re.sub(r"\s*<na:spec [^>]*>[^<]*</na:spec>", "", written))
    wait_for(lambda: not orphans(node.agent)[0][inst]["has_spec"], 60,
             "reconciliation to see the domain without a spec")
    r = adopt(node, node.agent, inst)
    assert r.returncode != 0 and "carries no instance spec" in r.stderr, r
    assert inst in orphans(node.agent)[0] and orphans(node.agent)[1]["holding"]
    set_instance_metadata(dom, written)
    wait_for(lambda: orphans(node.agent)[0][inst]["has_spec"], 60,
             "reconciliation to see the spec again")

    r = adopt(node, node.agent, inst)
    assert r.returncode == 0 and f"adopted {inst}" in r.stdout, r
    # The world: the same QEMU process runs the guest, and the domain names its new owner
    # (this node, this store) in its persistent and in its live definition.
    assert node.state(inst) == S["running"] and node.qemu_pid(inst) == pid
    owner = f'<na:owner node="n1" store="{store_id}"/>'
    assert owner in node.dom(inst).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert owner in node.dom(inst).XMLDesc(0)
    status, shown = node.agent.get_json(f"/v1/instances/{inst}")
    assert status == 200, shown
    assert shown["state"] == "RUNNING" and shown["desired_state"] == "RUNNING", shown
    assert shown["name"] == "adoptee" and shown["tenant_id"] == "t1"
    assert shown["nics"][0]["mac"] == mac and shown["nics"][0]["port_id"] == port
    assert shown["nics"][0]["ips"] == ["10.0.0.60/24"], shown
    assert str(shown["uid"]) == node.proc_status(pid)["Uid"].split()[0], shown
    assert inst not in orphans(node.agent)[0]
    changed = [e for e in node.cluster.events(instance_uuid=inst, kind="STATE_CHANGED")
               if "adopted" in e.get("message", "")]
    assert changed and changed[-1]["state"] == "RUNNING", changed

    # The hold ends and the held create proceeds.
    wait_for(lambda: node.agent.checks()["orphans"], 30, "the hold to end")
    done = wait_for(lambda: [e for e in node.cluster.events(request_id="held-by-orphan")
                             if e["kind"] in ("DONE", "FAILED")], 300, "the held create's answer",
                    interval=1)
    assert done[-1]["kind"] == "DONE", done

    # An instance like any other: stop, start and delete work on it.
    assert node.request("stop", inst, check=0)["kind"] == "DONE"
    assert node.state(inst) == S["shutoff"]
    assert node.request("start", inst, check=0)["kind"] == "DONE"
    assert node.state(inst) == S["running"] and node.qemu_pid(inst) != pid
    assert node.request("delete", inst, check=0)["kind"] == "DONE"
    assert not node.has_domain(inst) and not os.path.exists(node.dir(inst))
    assert node.state(later) == S["running"]


def test_delete_removes_domain_and_disk(node):
    node.start(extra_config=FAST)
    inst, _ = node.create("gone", ip="10.0.0.50")
    assert node.request("delete", inst, check=0)["kind"] == "DONE"
    assert not node.has_domain(inst) and not os.path.exists(node.dir(inst))


def test_delete_killed_after_its_tombstone_is_finished_at_restart(node):
    node.start(extra_config=FAST)
    inst, _ = node.create("half", ip="10.0.0.51")
    node.agent.stop()
    node.start(env={"NODEAGENT_FAILPOINTS": "delete.tombstoned=kill"})
    node.cluster.nodectl("delete", inst, "--request-id", "del-1", check=0)
    wait_for(lambda: node.agent.proc.poll() is not None, 120, "the agent killed at the failpoint")
    assert "failpoint=delete.tombstoned" in node.agent.logs()
    assert node.has_domain(inst)  # killed before anything was undefined

    node.start(env={})
    wait_for(lambda: not node.has_domain(inst) and not os.path.exists(node.dir(inst)), 120,
             "the restarted agent to finish the delete", interval=0.5)
    done = wait_for(lambda: [e for e in node.cluster.events(request_id="del-1")
                             if e["kind"] == "DONE"], 60, "the delete's DONE")
    assert done
    assert inst not in orphans(node.agent)[0]
