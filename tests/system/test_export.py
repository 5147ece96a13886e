"""Snapshot to image (issue 13, item 3): snapshot_export flattens an instance's disk into a
standalone qcow2, uploads it by HTTP PUT to the test image server and/or publishes it into the
node's image cache; a create of that image boots the exported disk's content.

One guest is booted for the marker and one for the boot of the exported image; the rest
checks files and refusals.
"""
import json
import os
import subprocess
import uuid

from harness import wait_for
from guests import sha256_file
from test_network import Guest

MARK_SECTOR = 1 << 20  # 512 MiB into the 1 GiB disk: far past the image's own bytes


def write_marker(marker):
    return (f'echo {marker} | dd of=/dev/vda bs=512 seek={MARK_SECTOR} conv=fsync 2>/dev/null;'
            f' echo "@@w=$?@@"')


def read_marker(marker):
    return (f'dd if=/dev/vda bs=512 skip={MARK_SECTOR} count=1 2>/dev/null | grep -q {marker};'
            f' echo "@@r=$?@@"')


class ImageGuest(Guest):
    """A guest created from an image URL and sha256 (Guest creates the test image)."""

    def __init__(self, node, name, ip, vni, url, sha):
        self.node, self.name, self.ip, self.vni, self.ip6 = node, name, ip, vni, None
        self.port = str(uuid.uuid4())
        self.mac = "52:54:00:" + os.urandom(3).hex(":")
        self.inst, last = node.create(name, ip=ip, vni=vni, mac=self.mac, port=self.port,
                                      url=url, sha=sha, sg=[node.open_group()])
        assert last["kind"] == "DONE", last


def qemu_img_info(path):
    r = subprocess.run(["qemu-img", "info", "--output=json", path], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def test_export_uploads_and_publishes_an_image_that_boots(node):
    node.start()
    src = Guest(node, "exp-src", "10.0.0.5", 100).ready()
    marker = "nodeagent-export-" + uuid.uuid4().hex[:12]
    assert src.run([write_marker(marker)], ["w"]) == {"w": 0}

    # The disk of a running guest is not consistent as it is: a snapshot is needed.
    r = node.request("snapshot-export", src.inst, "--publish")
    assert r["kind"] == "FAILED" and r["error"]["code"] == "CONFLICT", r
    assert "STOPPED" in r["error"]["message"], r
    # Nowhere to put it.
    r = node.request("snapshot-export", src.inst)
    assert r["kind"] == "FAILED" and r["error"]["field"] == "snapshot_export.upload_url", r
    # Only http(s).
    r = node.request("snapshot-export", src.inst, "--upload-url", "file:///etc/shadow")
    assert r["kind"] == "FAILED" and r["error"]["code"] == "INVALID_ARGUMENT", r

    r = node.request("stop", src.inst, "--force")
    assert r["kind"] == "DONE" and r["state"] == "STOPPED", r
    url = node.images.url + "uploads/exported.qcow2"
    r = node.request("snapshot-export", src.inst, "--upload-url", url + "?X-Sig=secret")
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

    # A create of the uploaded image boots the exported disk, marker and all.
    copy = ImageGuest(node, "exp-copy", "10.0.0.6", 100, url, made["sha256"]).ready()
    assert copy.run([read_marker(marker)], ["r"]) == {"r": 0}

    # Published: the image is in the cache under its sha256, and a create names it with a
    # URL that serves nothing.
    r = node.request("snapshot-export", src.inst, "--publish")
    assert r["kind"] == "DONE", r
    assert r["image_export"]["published"] is True, r
    assert r["image_export"]["sha256"] == made["sha256"]  # the same disk, the same bytes
    cached = os.path.join(node.env.state_dir, "images", made["sha256"])
    assert oct(os.stat(cached).st_mode & 0o777) == "0o440"
    inst, last = node.create("exp-cached", ip="10.0.0.7", url=node.images.url + "nothing-here",
                             sha=made["sha256"])
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    assert node.images.stats()["requests"].get("/nothing-here", 0) == 0

    # Killed between its upload and its publish phase: the restarted agent resumes at publish
    # (no second flatten or upload) and the request ends once, DONE, with nothing staged.
    node.agent.stop()
    node.start(env={"NODEAGENT_FAILPOINTS": "snapshot_export.publish=kill@exp-crash"})
    node.send("snapshot-export", src.inst, "--publish", "--upload-url",
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
