"""Rebuild and resize never lose or redirect an instance's disk (issue 10, item 4), on a
real libvirtd and QEMU (TCG):

- a rebuild whose define fails keeps the old disk (the same inode, on the same base), leaves
  no half-made disk behind, and the guest runs again on it;
- a resize takes the base from the instance's record, not from the overlay's header (which
  the guest's uid can write): a header that names another file is refused and the domain
  keeps backing on the recorded image.

Assertions read the files, qemu-img and libvirt's domain XML."""
import json
import os
import subprocess
import xml.etree.ElementTree as ET

from nodes import S


def backing_of(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out).get("backing-filename")


def domain_backing(node, inst):
    root = ET.fromstring(node.dom(inst).XMLDesc(0))
    src = root.find("./devices/disk[@device='disk']/backingStore/source")
    return src.get("file") if src is not None else None


def test_a_rebuild_that_fails_to_define_keeps_the_old_disk(node):
    node.start(env={"NODEAGENT_FAILPOINTS": "rebuild.define=fail"})
    inst, last = node.create("vm1", ip="10.0.0.5")
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    node.wait_ready(inst, "vm1", "10.0.0.5")
    disk = os.path.join(node.dir(inst), "disk")
    before = os.stat(disk)
    base = backing_of(disk)
    assert base.endswith("/" + node.images.guest_sha)
    assert domain_backing(node, inst) == base

    # The rebuild fails where the domain is defined on the new disk.
    url, sha = node.images.variant_guest("guest-rebuild.qcow2")
    last = node.request("rebuild", inst, "--image-id", "guest-r", "--image-url", url,
                        "--image-sha256", sha, "--image-format", "qcow2", check=1)
    assert last["kind"] == "FAILED", last
    after = os.stat(disk)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert backing_of(disk) == base
    assert not os.path.exists(disk + ".next")
    assert domain_backing(node, inst) == base
    # It runs again, on the old disk, as it did before the rebuild.
    assert node.state(inst) == S["running"]
    node.wait_ready(inst, "vm1", "10.0.0.5", count=2)
    _, body = node.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "RUNNING"
    assert node.image_users(node.images.guest_sha) == [inst]


def test_a_resize_uses_the_recorded_base_not_the_overlay_header(node, tmp_path):
    node.start()
    inst, last = node.create("vm2", ip="10.0.0.6")
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    disk = os.path.join(node.dir(inst), "disk")
    base = backing_of(disk)
    # The guest's uid may rewrite its overlay's header: a resize must not believe it.
    last = node.request("stop", inst, "--shutdown-timeout", "60", check=0)
    assert last["kind"] == "DONE" and last["state"] == "STOPPED", last
    secret = tmp_path / "not-a-base"
    secret.write_bytes(b"\0" * 65536)
    os.chmod(secret, 0o600)
    subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", str(secret), "-F", "raw",
                    disk], check=True)
    last = node.request("resize", inst, "--vcpus", "1", "--memory-mib", "256", "--disk-gib",
                        "2", check=1)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "STORAGE", last
    assert domain_backing(node, inst) == base
    assert node.state(inst) == S["shutoff"]

    # With the header as the agent wrote it, the resize goes through on the recorded base.
    subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", base, "-F", "qcow2", disk],
                   check=True)
    last = node.request("resize", inst, "--vcpus", "1", "--memory-mib", "256", "--disk-gib",
                        "2", check=0)
    assert last["kind"] == "DONE" and last["state"] == "STOPPED", last
    assert domain_backing(node, inst) == base
    qi = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk],
                                   capture_output=True, text=True, check=True).stdout)
    assert qi["virtual-size"] == 2 << 30
