"""Instance lifecycle on a real libvirtd and QEMU (TCG), through the bus: creates that end
in a booted guest, every power operation, rebuild, resize, delete, crashes of the agent and
of libvirtd, hostile images, per-guest confinement, concurrency.

Assertions read libvirt (python3-libvirt), the guest's console, the files, qemu-img and
/proc; never only the agent's word."""
import json
import os
import signal
import struct
import subprocess
import tempfile
import uuid

import libvirt
import pytest

from harness import wait_for
from nodes import S, Node


# --- tests ---------------------------------------------------------------------------------

def test_create_boots_the_guest_and_every_power_operation_changes_the_domain(node):
    node.start()
    inst, last = node.create("vm1", ip="10.0.0.5")
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    node.wait_ready(inst, "vm1", "10.0.0.5")
    assert node.state(inst) == S["running"]

    def op(*args, want_state, libvirt_state):
        last = node.request(*args, inst, check=0)
        assert last["kind"] == "DONE", last
        assert last["state"] == want_state, last
        assert node.state(inst) == libvirt_state
        _, body = node.agent.get_json(f"/v1/instances/{inst}")
        assert body["state"] == want_state

    op("pause", want_state="PAUSED", libvirt_state=S["paused"])
    op("resume", want_state="RUNNING", libvirt_state=S["running"])
    op("stop", "--shutdown-timeout", "60", want_state="STOPPED", libvirt_state=S["shutoff"])
    assert not node.dom(inst).hasManagedSaveImage()
    op("start", want_state="RUNNING", libvirt_state=S["running"])
    node.wait_ready(inst, "vm1", "10.0.0.5", count=2)
    op("reboot", want_state="RUNNING", libvirt_state=S["running"])
    node.wait_ready(inst, "vm1", "10.0.0.5", count=3)
    op("reboot", "--hard", want_state="RUNNING", libvirt_state=S["running"])
    node.wait_ready(inst, "vm1", "10.0.0.5", count=4)
    op("suspend", want_state="SUSPENDED", libvirt_state=S["shutoff"])
    assert node.dom(inst).hasManagedSaveImage()
    op("resume", want_state="RUNNING", libvirt_state=S["running"])
    assert not node.dom(inst).hasManagedSaveImage()
    # Restored from memory, not booted again.
    assert node.console(inst).count("nodeagent-guest: ready vm1 10.0.0.5") == 4


def test_rebuild_and_resize(node):
    node.start()
    inst, _ = node.create("vm2", ip="10.0.0.6")
    node.wait_ready(inst, "vm2", "10.0.0.6")

    last = node.request("resize", inst, "--vcpus", "2", "--memory-mib", "384", "--disk-gib", "2",
                        check=0)
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    info = node.dom(inst).info()  # state, maxMem KiB, mem, vcpus, cpu time
    assert info[1] == 384 * 1024 and info[3] == 2
    disk = os.path.join(node.dir(inst), "disk")
    qi = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk],
                                   capture_output=True, text=True, check=True).stdout)
    assert qi["virtual-size"] == 2 << 30
    node.wait_ready(inst, "vm2", "10.0.0.6", count=2)

    last = node.request("resize", inst, "--vcpus", "1", "--memory-mib", "256", "--disk-gib", "1",
                        check=1)
    assert last["error"]["code"] == "INVALID_ARGUMENT"
    assert last["error"]["field"] == "resize.flavor.root_disk_gib"

    # Rebuild: a new disk on another image, same identity.
    url, sha = node.images.variant_guest("guest-rebuild.qcow2")
    last = node.request("rebuild", inst, "--image-id", "guest-r", "--image-url", url,
                        "--image-sha256", sha, "--image-format", "qcow2", check=0)
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    qi = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk],
                                   capture_output=True, text=True, check=True).stdout)
    assert qi["backing-filename"].endswith("/" + sha)
    assert qi["virtual-size"] == 2 << 30  # the resized flavor stays
    node.wait_ready(inst, "vm2", "10.0.0.6", count=3)
    assert node.dom(inst).UUIDString() == inst
    assert node.image_users(sha) == [inst]
    assert node.image_users(node.images.guest_sha) == []


def test_delete_leaves_no_domain_file_or_image_user(node):
    node.start()
    inst, _ = node.create("vm3", ip="10.0.0.7")
    assert node.image_users(node.images.guest_sha) == [inst]
    last = node.request("delete", inst, check=0)
    assert last["kind"] == "DONE" and last["state"] == "DELETED", last
    assert not node.has_domain(inst)
    assert not os.path.exists(node.dir(inst))
    assert node.image_users(node.images.guest_sha) == []
    assert node.agent.get(f"/v1/instances/{inst}")[0] == 404
    # Deleting it again is done, not an error.
    assert node.request("delete", inst, check=0)["kind"] == "DONE"


def test_guest_that_powers_itself_off_is_reported_stopped(node):
    node.start()
    inst, _ = node.create("vm4", ip="10.0.0.8")
    node.wait_ready(inst, "vm4", "10.0.0.8")
    # The guest's console is a root shell on its serial pty (in the host's own devpts).
    # QEMU reads a pty only while a client holds it open, which it notices within a second.
    pty = node.dom(inst).XMLDesc().split("<source path='")[1].split("'")[0]
    writer = subprocess.Popen(node.env.nsenter() + [
        "sh", "-c", f"exec 3>{pty}; sleep 2; date +%s.%N; printf '\\npoweroff -f\\n' >&3; sleep 3"],
        stdout=subprocess.PIPE, text=True)
    t0 = float(writer.stdout.readline())
    writer.wait(30)

    def stopped_event():
        for e in node.cluster.events(instance_uuid=inst, kind="STATE_CHANGED"):
            if e.get("state") == "STOPPED":
                return e
        return None
    ev = wait_for(stopped_event, 60, "a STATE_CHANGED STOPPED event", interval=0.2)
    print(f"guest power-off to STATE_CHANGED event: {ev['time_ms'] / 1000 - t0:.3f} s")
    assert "powered itself off" in ev["message"]
    assert node.state(inst) == S["shutoff"]
    _, body = node.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "STOPPED"


def test_agent_restart_adopts_running_guests_without_restarting_them(node):
    node.start()
    a, _ = node.create("vm5", ip="10.0.0.9")
    b, _ = node.create("vm6", ip="10.0.0.10")
    pids = {i: node.qemu_pid(i) for i in (a, b)}
    assert node.agent.stop() == 0
    node.start()
    for i in (a, b):
        assert node.qemu_pid(i) == pids[i]
        assert node.state(i) == S["running"]
        _, body = node.agent.get_json(f"/v1/instances/{i}")
        assert body["state"] == "RUNNING"
    assert not [e for e in node.cluster.events(kind="STATE_CHANGED")
                if e["instance_uuid"] in (a, b)]


@pytest.mark.parametrize("failpoint", ["create.disk_made", "create.defined"])
def test_kill9_in_the_middle_of_a_create_completes_it_once(node, failpoint):
    node.start(env={"NODEAGENT_FAILPOINTS": f"{failpoint}=kill"})
    inst = str(uuid.uuid4())
    sender = subprocess.Popen(
        [os.path.join(os.environ.get("NODEAGENT_BUILD", "build/release"), "nodectl"),
         "--bootstrap", node.cluster.devbus.bootstrap, "--prefix", node.cluster.prefix,
         "--node", "n1", "create", "--uuid", inst, "--name", "vm7", "--tenant", "t1",
         "--vcpus", "1", "--memory-mib", "256", "--disk-gib", "1", "--image-id", "guest",
         "--image-url", node.images.url + "guest.qcow2", "--image-sha256",
         node.images.guest_sha, "--image-format", "qcow2", "--hostname", "vm7",
         "--request-id", "create-once"], stdout=subprocess.DEVNULL)
    assert sender.wait(60) == 0
    wait_for(lambda: node.agent.proc.poll() is not None, 120, "the agent killed at the failpoint")
    assert node.agent.proc.returncode == -signal.SIGKILL

    node.start()
    done = wait_for(lambda: [e for e in node.cluster.events(request_id="create-once")
                             if e["kind"] in ("DONE", "FAILED") and not e["replayed"]],
                    180, "the create's terminal event")
    assert [e["kind"] for e in done] == ["DONE"], done
    node.wait_ready(inst, "vm7", "none")
    assert node.state(inst) == S["running"]
    assert [d.UUIDString() for d in node.conn.listAllDomains()] == [inst]
    assert os.listdir(os.path.join(node.env.state_dir, "instances")) == [inst]
    assert node.agent.logs().count('msg="executing request" request_id="create-once"') == 2


def test_create_resumed_on_a_domain_left_paused_by_its_start_ends_running(node):
    """Defect (b) of issue 11.  The agent dies after defining the domain; libvirt's start of
    it, cut short, leaves it active but paused (here made so exactly: started paused).  The
    resumed create must end with the guest running, not report DONE with PAUSED."""
    node.start(env={"NODEAGENT_FAILPOINTS": "create.defined=kill"})
    inst = str(uuid.uuid4())
    node.send(*node.create_args("vmp", inst, ip="10.0.0.15"), request_id="create-paused")
    node.wait_killed()
    node.dom(inst).createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    assert node.state(inst) == S["paused"]

    node.start()
    done = wait_for(lambda: node.terminal_events("create-paused"), 180,
                    "the create's terminal event")
    assert [(e["kind"], e["state"]) for e in done] == [("DONE", "RUNNING")], done
    assert node.state(inst) == S["running"]
    _, body = node.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "RUNNING"
    node.wait_ready(inst, "vmp", "10.0.0.15")


def test_libvirtd_killed_and_restarted_the_agent_reconnects(node):
    node.start()
    inst, _ = node.create("vm8", ip="10.0.0.11")
    os.kill(node.env.pid("libvirtd"), signal.SIGKILL)
    wait_for(lambda: not node.agent.checks()["libvirt"], 30, "the agent to see libvirt gone")
    node.env.restart_libvirtd()
    wait_for(lambda: node.agent.checks()["libvirt"], 60, "the agent to reconnect")
    node.conn = libvirt.open(node.env.uri)
    last = node.request("pause", inst, check=0)
    assert last["kind"] == "DONE" and node.state(inst) == S["paused"]


def qcow2_header(size, l1_offset=0x30000, l1_size=None, backing=None, version=3):
    """A small qcow2 v3 image made by qemu-img, with fields overwritten."""
    path = tempfile.mktemp(suffix=".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
    data = bytearray(open(path, "rb").read())
    os.unlink(path)
    struct.pack_into(">Q", data, 24, size)
    if l1_size is not None:
        struct.pack_into(">I", data, 36, l1_size)
    struct.pack_into(">Q", data, 40, l1_offset)
    return bytes(data)


def qemu_img_made(*args):
    path = tempfile.mktemp(suffix=".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *args, path, "64M"],
                   check=True, capture_output=True)
    data = open(path, "rb").read()
    os.unlink(path)
    return data


@pytest.mark.parametrize("case", ["backing_shadow", "data_file", "l1_past_eof", "size_2_62",
                                  "sha_mismatch", "truncated"])
def test_hostile_images_are_refused_and_nothing_is_created(cluster, virtenv, images, case):
    node = Node(cluster, virtenv, images, extra_config="[image_cache]\nretries = 1\n").start()
    if case == "backing_shadow":
        url, sha = images.add("shadow.qcow2", qemu_img_made("-b", "/etc/shadow", "-F", "raw"))
        want = "backing file"
    elif case == "data_file":
        url, sha = images.add("datafile.qcow2", qemu_img_made("-o", "data_file=/tmp/nodeagent-x"))
        want = "data file"
    elif case == "l1_past_eof":
        url, sha = images.add("l1.qcow2", qcow2_header(64 << 20, l1_offset=1 << 40))
        want = "L1"
    elif case == "size_2_62":
        url, sha = images.add("huge.qcow2", qcow2_header(1 << 62))
        want = "virtual size"
    elif case == "sha_mismatch":
        url, sha = images.url + "guest.qcow2", "0" * 64
        want = "sha256"
    else:
        url, sha = images.url + "_/truncate/guest.qcow2", images.guest_sha
        want = "received"
    inst, last = node.create("bad", url=url, sha=sha, check=1)
    assert last["kind"] == "FAILED"
    assert last["error"]["code"] == "IMAGE", last
    assert want.lower() in last["error"]["message"].lower(), last["error"]["message"]
    assert not node.has_domain(inst)
    assert not os.path.exists(node.dir(inst))
    assert node.agent.get(f"/v1/instances/{inst}")[0] == 404
    published = [f for f in os.listdir(os.path.join(node.env.state_dir, "images"))
                 if not f.startswith(".")]
    assert sha not in published


def test_hostile_names_are_refused(node):
    node.start()
    for args, field in ((("--name", "../etc"), "create.spec.name"),
                        (("--name", "a/b"), "create.spec.name")):
        inst = str(uuid.uuid4())
        last = node.request("create", "--uuid", inst, *args, "--tenant", "t1", "--vcpus", "1",
                            "--memory-mib", "256", "--disk-gib", "1", "--image-id", "guest",
                            "--image-url", node.images.url + "guest.qcow2", "--image-sha256",
                            node.images.guest_sha, "--image-format", "qcow2", "--hostname", "h",
                            check=1)
        assert last["error"]["field"] == field
    last = node.request("delete", "../../x", check=1)
    assert last["error"]["field"] == "delete.instance_uuid"
    assert node.conn.listAllDomains() == []


def test_overlays_agree_with_qemu_img(node):
    node.start()
    inst, _ = node.create("vm9", ip="10.0.0.12", disk=3)
    disk = os.path.join(node.dir(inst), "disk")
    check = subprocess.run(["qemu-img", "check", "-U", disk], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 3 << 30
    assert info["backing-filename"] == os.path.join(node.env.state_dir, "images",
                                                    node.images.guest_sha)
    assert info["backing-filename-format"] == "qcow2"


def test_guests_run_as_their_own_uids_and_cannot_read_each_other(node):
    node.start()
    a, _ = node.create("vma", ip="10.0.0.13")
    b, _ = node.create("vmb", ip="10.0.0.14")
    uids = {}
    for i in (a, b):
        st = node.proc_status(node.qemu_pid(i))
        real, eff, saved, fs = (int(x) for x in st["Uid"].split())
        assert real == eff == saved == fs != 0
        assert st["Seccomp"].strip() == "2"  # QEMU's sandbox is on
        uids[i] = real
    assert uids[a] != uids[b]
    gid = os.stat(node.dir(a)).st_gid
    for me, other in ((a, b), (b, a)):
        r = subprocess.run(["setpriv", f"--reuid={uids[me]}", f"--regid={gid}",
                            "--clear-groups", "cat", os.path.join(node.dir(other), "disk")],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "Permission denied" in r.stderr
        own = subprocess.run(["setpriv", f"--reuid={uids[me]}", f"--regid={gid}",
                              "--clear-groups", "head", "-c", "16",
                              os.path.join(node.dir(me), "disk")], capture_output=True)
        assert own.returncode == 0


def test_ten_creates_at_once_run_concurrently_and_share_one_download(cluster, virtenv, images):
    node = Node(cluster, virtenv, images, extra_config="[agent]\nworkers = 12\n").start()
    url = images.copy_guest("shared.qcow2")
    insts = [str(uuid.uuid4()) for _ in range(10)]
    senders = []
    for i, inst in enumerate(insts):
        senders.append(subprocess.Popen(
            [os.path.join(os.environ.get("NODEAGENT_BUILD", "build/release"), "nodectl"),
             "--bootstrap", cluster.devbus.bootstrap, "--prefix", cluster.prefix, "--node", "n1",
             "create", "--uuid", inst, "--name", f"c{i}", "--tenant", "t1", "--vcpus", "1",
             "--memory-mib", "128", "--disk-gib", "1", "--image-id", "shared", "--image-url",
             url, "--image-sha256", images.guest_sha, "--image-format", "qcow2",
             "--hostname", f"c{i}", "--request-id", f"c-{i}"], stdout=subprocess.DEVNULL))
    for s in senders:
        assert s.wait(60) == 0
    def ended():
        evs = [e for e in cluster.events() if e["request_id"].startswith("c-")]
        return evs if len({e["request_id"] for e in evs if e["kind"] in ("DONE", "FAILED")}) == 10 else None
    try:
        evs = wait_for(ended, 300, "ten terminal events", interval=1)
    except AssertionError:
        kinds = [(e["request_id"], e["kind"], e.get("message", "")) for e in cluster.events()
                 if e["request_id"].startswith("c-")]
        raise AssertionError(f"not all ten creates ended; events: {kinds}\nagent log tail:\n"
                             + "\n".join(node.agent.logs().splitlines()[-60:]))
    failed = [(e["request_id"], e.get("message")) for e in evs if e["kind"] == "FAILED"]
    assert not failed
    # On the bus, every request's PROGRESS events come before its terminal event.
    for rid in {e["request_id"] for e in evs}:
        mine = [e for e in evs if e["request_id"] == rid]
        end = next(e["offset"] for e in mine if e["kind"] in ("DONE", "FAILED"))
        late = [e["message"] for e in mine if e["kind"] == "PROGRESS" and e["offset"] > end]
        assert not late, (rid, late)
    logs = node.agent.logs().splitlines()
    first_done = next(i for i, l in enumerate(logs) if 'msg="request done"' in l and "kind=create" in l)
    started = [l for l in logs[:first_done] if 'msg="executing request"' in l and "kind=create" in l]
    assert len(started) == 10, "all ten creates started before the first one finished"
    assert images.stats()["requests"].get("/shared.qcow2", 0) == 1
    for inst in insts:
        assert node.state(inst) == S["running"]
