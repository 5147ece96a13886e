"""Copies of an instance's disk (issue 13, items 2 and 3): clone makes a new instance whose
disk is a point-in-time copy of a running or stopped source's; snapshot_export flattens the
disk into a standalone qcow2, uploads it by HTTP PUT to the test image server and/or
publishes it into the node's image cache, and a create of that image boots its content.

One source guest carries the markers (written on its disk through its console); a live
clone, a cold clone and a create of the exported image are booted to read them.  One test,
so that the source boots once.
"""
import json
import os
import subprocess
import uuid

from harness import wait_for
from guests import sha256_file
from test_network import Guest

MARK_SECTOR = 1 << 20  # 512 MiB into the 1 GiB disk: far past the image's own bytes


def write_marker(marker, slot=0, mark="w"):
    return (f'echo {marker} | dd of=/dev/vda bs=512 seek={MARK_SECTOR + slot} conv=fsync'
            f' 2>/dev/null; echo "@@{mark}=$?@@"')


def read_marker(marker, slot=0, mark="r"):
    return (f'dd if=/dev/vda bs=512 skip={MARK_SECTOR + slot} count=1 2>/dev/null |'
            f' grep -q {marker}; echo "@@{mark}=$?@@"')


def ping(ip, mark):
    return f'ping -c 2 -w 4 {ip} >/dev/null 2>&1; echo "@@{mark}=$?@@"'


class ImageGuest(Guest):
    """A guest created from an image URL and sha256 (Guest creates the test image)."""

    def __init__(self, node, name, ip, vni, url, sha):
        self.node, self.name, self.ip, self.vni, self.ip6 = node, name, ip, vni, None
        self.port = str(uuid.uuid4())
        self.mac = "52:54:00:" + os.urandom(3).hex(":")
        self.inst, last = node.create(name, ip=ip, vni=vni, mac=self.mac, port=self.port,
                                      url=url, sha=sha, sg=[node.open_group()])
        assert last["kind"] == "DONE", last


class CloneGuest(Guest):
    """A clone of source (as it is, or at snapshot), with a new identity in network vni."""

    def __init__(self, node, source, name, ip, vni, snapshot=None):
        self.node, self.name, self.ip, self.vni, self.ip6 = node, name, ip, vni, None
        self.port = str(uuid.uuid4())
        self.mac = "52:54:00:" + os.urandom(3).hex(":")
        self.inst = str(uuid.uuid4())
        args = node.create_args(name, self.inst, ip=ip, vni=vni, mac=self.mac, port=self.port,
                                sg=[node.open_group()])
        assert args[0] == "create"
        args = ["clone", source] + args[1:] + (["--snapshot", snapshot] if snapshot else [])
        self.last = node.request(*args)


def qemu_img_info(path):
    r = subprocess.run(["qemu-img", "info", "--output=json", path], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def test_clones_and_exports_of_a_running_and_a_stopped_guest(node):
    node.start()
    src = Guest(node, "exp-src", "10.0.0.5", 100).ready()
    marker = "nodeagent-export-" + uuid.uuid4().hex[:12]
    assert src.run([write_marker(marker)], ["w"]) == {"w": 0}

    # A clone of the running source: a point-in-time copy; the source never stops.
    qemu_pid = node.qemu_pid(src.inst)
    live = CloneGuest(node, src.inst, "exp-live", "10.0.0.6", 100)
    assert live.last["kind"] == "DONE" and live.last["state"] == "RUNNING", live.last
    live.ready()
    assert node.qemu_pid(src.inst) == qemu_pid
    later = "nodeagent-later-" + uuid.uuid4().hex[:12]
    assert src.run([write_marker(later, slot=8)], ["w"]) == {"w": 0}
    assert live.run([read_marker(marker, mark="a"), read_marker(later, slot=8, mark="b")],
                    ["a", "b"]) == {"a": 0, "b": 1}
    # Two identities in one network: each answers at its own address.
    assert src.run([ping(live.ip, "s_l")], ["s_l"]) == {"s_l": 0}
    assert live.run([ping(src.ip, "l_s")], ["l_s"]) == {"l_s": 0}
    assert node.dom(live.inst).XMLDesc().count(live.mac) == 1
    # Refusals: no such source; another base image.
    nope = CloneGuest(node, str(uuid.uuid4()), "exp-nope", "10.0.0.9", 100)
    assert nope.last["kind"] == "FAILED" and nope.last["error"]["code"] == "NOT_FOUND", nope.last
    args = node.create_args("exp-other", str(uuid.uuid4()), ip="10.0.0.9", vni=100,
                            sha="0" * 64)
    r = node.request("clone", src.inst, *args[1:])
    assert r["kind"] == "FAILED" and r["error"]["field"] == "clone.spec.image.sha256", r

    # The disk of a running guest is not consistent as it is: a snapshot is needed.
    r = node.request("snapshot", "export", src.inst, "--publish")
    assert r["kind"] == "FAILED" and r["error"]["code"] == "CONFLICT", r
    assert "STOPPED" in r["error"]["message"], r
    # Nowhere to put it.
    r = node.request("snapshot", "export", src.inst)
    assert r["kind"] == "FAILED" and r["error"]["field"] == "snapshot_export.upload_url", r
    # Only http(s).
    r = node.request("snapshot", "export", src.inst, "--upload-url", "file:///etc/shadow")
    assert r["kind"] == "FAILED" and r["error"]["code"] == "INVALID_ARGUMENT", r

    r = node.request("stop", src.inst, "--force")
    assert r["kind"] == "DONE" and r["state"] == "STOPPED", r
    url = node.images.url + "uploads/exported.qcow2"
    r = node.request("snapshot", "export", src.inst, "--upload-url", url + "?X-Sig=secret")
    assert r["kind"] == "DONE" and r["state"] == "STOPPED", r
    made = r["image_export"]
    assert made["uploaded"] is True and made.get("published", False) is False, made
    progress = [e["message"] for e in node.cluster.events(request_id=r["request_id"])
                if e["kind"] == "PROGRESS"]
    assert any("flattening" in m for m in progress), progress
    assert any("upload" in m for m in progress), progress

    # The uploaded file: what the event says, standalone, and passes qemu-img check.
    path = os.path.join(node.images.root, "uploads", "exported.qcow2")
    assert sha256_file(path) == made["sha256"]
    assert os.path.getsize(path) == int(made["size_bytes"])
    info = qemu_img_info(path)
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    assert info["virtual-size"] == int(made["virtual_size_bytes"]) == 1 << 30
    subprocess.run(["qemu-img", "check", "-q", path], check=True)
    # Nothing stays staged, nothing entered the cache.
    staging = os.path.join(node.env.state_dir, "images", ".partial")
    assert not [n for n in os.listdir(staging) if n.startswith("export-")]
    assert not os.path.exists(os.path.join(node.env.state_dir, "images", made["sha256"]))

    # A create of the uploaded image boots the exported disk, and a clone of the stopped
    # source has its disk: both markers in each.
    copy = ImageGuest(node, "exp-copy", "10.0.0.7", 100, url, made["sha256"])
    cold = CloneGuest(node, src.inst, "exp-cold", "10.0.0.8", 100)
    assert cold.last["kind"] == "DONE" and cold.last["state"] == "RUNNING", cold.last
    for g in (copy, cold):
        g.ready()
        assert g.run([read_marker(marker, mark="a"), read_marker(later, slot=8, mark="b")],
                     ["a", "b"]) == {"a": 0, "b": 0}

    # Published: the image is in the cache under its sha256, and a create names it with a
    # URL that serves nothing.
    r = node.request("snapshot", "export", src.inst, "--publish")
    assert r["kind"] == "DONE", r
    assert r["image_export"]["published"] is True, r
    assert r["image_export"]["sha256"] == made["sha256"]  # the same disk, the same bytes
    cached = os.path.join(node.env.state_dir, "images", made["sha256"])
    assert oct(os.stat(cached).st_mode & 0o777) == "0o440"
    inst, last = node.create("exp-cached", ip="10.0.0.10", url=node.images.url + "nothing-here",
                             sha=made["sha256"])
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    assert node.images.stats()["requests"].get("/nothing-here", 0) == 0

    # Killed between its upload and its publish phase: the restarted agent resumes at publish
    # (no second flatten or upload) and the request ends once, DONE, with nothing staged.
    node.agent.stop()
    node.start(env={"NODEAGENT_FAILPOINTS": "snapshot_export.publish=kill@exp-crash"})
    node.send("snapshot", "export", src.inst, "--publish", "--upload-url",
              node.images.url + "uploads/again.qcow2", request_id="exp-crash")
    node.wait_killed()
    node.start()
    done = wait_for(lambda: node.terminal_events("exp-crash") or None, 180,
                    "the export's terminal event")
    assert [e["kind"] for e in done] == ["DONE"], done
    again = done[0]["image_export"]
    assert again["uploaded"] is True and again["published"] is True, again
    assert again["sha256"] == made["sha256"]
    logs = node.agent.logs()
    assert 'msg="resuming job" request_id="exp-crash"' in logs
    assert "phase=publish restart=redo" in logs
    assert node.images.stats()["requests"]["/uploads/again.qcow2"] == 1
    assert not [n for n in os.listdir(staging) if n.startswith("export-")]
