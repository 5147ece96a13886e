"""Reconciliation: what libvirt and the disk hold, compared with the agent's table.
Orphans (ours by their metadata, not recorded by the store) are reported and kept until an
operator purges them, foreign domains are left alone, changes made behind the agent's back
are reported.  tests/system/test_orphans.py has the lost-store and second-agent cases."""
import os
import subprocess
import uuid

from harness import wait_for
from nodes import S

FAST = "[agent]\nreconcile_interval = 5\n"


def state_changes(node, inst):
    return [e for e in node.cluster.events(instance_uuid=inst, kind="STATE_CHANGED")]


def test_orphan_domain_and_files_are_kept_until_purged_and_foreign_domains_kept(node):
    node.start(extra_config=FAST)
    inst, _ = node.create("keep", ip="10.0.0.20")
    ours = node.dom(inst).XMLDesc(0)

    # A domain carrying our metadata that no instance owns (say, a create whose clean-up
    # was cut short), and an instance directory with no instance.
    orphan = str(uuid.uuid4())
    node.conn.defineXML(_without_live_parts(ours.replace(inst, orphan)))
    stray_uuid = str(uuid.uuid4())
    stray = os.path.join(node.env.state_dir, "instances", stray_uuid)
    os.makedirs(stray)
    open(os.path.join(stray, "disk"), "w").close()

    # A domain that is not ours at all.
    foreign = str(uuid.uuid4())
    node.conn.defineXML(f"<domain type='qemu'><name>foreign</name><uuid>{foreign}</uuid>"
                        "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>"
                        "</domain>")

    def listed():
        _, body = node.agent.get_json("/v1/orphans")
        return {o["uuid"]: o for o in body["orphans"]}
    wait_for(lambda: {orphan, stray_uuid} <= set(listed()), 60, "both orphans listed",
             interval=0.5)
    found = listed()
    assert found[orphan]["why"] == "no_record" and found[orphan]["holds"]
    assert found[stray_uuid]["why"] == "dir_only" and not found[stray_uuid]["holds"]
    assert foreign not in found and inst not in found
    # Kept: nothing was removed.
    assert node.has_domain(orphan) and os.path.exists(os.path.join(stray, "disk"))
    assert node.has_domain(foreign)
    assert node.has_domain(inst) and node.state(inst) == S["running"]

    # The operator decides.
    for u in (orphan, stray_uuid):
        node.cluster.nodectl("--admin-socket", node.agent.socket, "purge", u, check=0)
    assert not node.has_domain(orphan) and not os.path.exists(stray)
    assert node.has_domain(foreign) and node.state(inst) == S["running"]
    removed = [e for e in node.cluster.events(kind="STATE_CHANGED") if e["state"] == "DELETED"]
    assert {e["instance_uuid"] for e in removed} >= {orphan}
    # Purge takes only current orphans.
    r = node.cluster.nodectl("--admin-socket", node.agent.socket, "purge", inst)
    assert r.returncode != 0 and "not a current orphan" in r.stderr
    assert node.state(inst) == S["running"]
    node.dom(foreign).undefine()


def _without_live_parts(xml):
    """The running domain's XML as a definition: libvirt ignores live-only parts on define,
    except an id attribute, which it refuses for a new domain."""
    return xml.replace(xml.split(">", 1)[0] + ">", "<domain type='qemu'>", 1)


def test_changes_behind_the_agents_back_are_reported(node):
    node.start(extra_config=FAST)
    inst, _ = node.create("vm", ip="10.0.0.21")

    node.dom(inst).suspend()  # paused outside the agent
    wait_for(lambda: any(e["state"] == "PAUSED" for e in state_changes(node, inst)), 30,
             "a STATE_CHANGED PAUSED event")
    _, body = node.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "PAUSED"

    subprocess.run(["virsh", "-c", node.env.uri, "destroy", inst], check=True,
                   capture_output=True)
    subprocess.run(["virsh", "-c", node.env.uri, "undefine", inst, "--managed-save"],
                   check=True, capture_output=True)
    wait_for(lambda: any(e["state"] == "ERROR" for e in state_changes(node, inst)), 30,
             "a STATE_CHANGED ERROR event for the missing domain")
    _, body = node.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "ERROR"
    # The instance can still be deleted cleanly.
    assert node.request("delete", inst, check=0)["kind"] == "DONE"
    assert not os.path.exists(node.dir(inst))
