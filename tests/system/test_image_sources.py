"""Image sources against the real agent on the bus, with a private libvirt host: what an image
URL may name and what a downloaded image may be (issue 10, item 1).

Every refusal is a create that fails before a domain is defined, so no guest boots (only the
shared-download case boots one, the create that must succeed).  Each refusal asserts the FAILED event's code (and field), that nothing was defined, created or published,
and, for the address check, the loopback image servers' request logs (/_/stats): a refused
connection never reaches the server.  The agent only ever connects to loopback here; the
link-local, private and unique-local refusals are unit-tested (tests/unit/test_address.c)."""
import json
import os
import socket
import subprocess
import tempfile
import uuid

import pytest

from harness import wait_for
from nodes import ImageServer, Node


@pytest.fixture(scope="module")
def images2():
    """A second image server, on 127.0.0.2: the only address the address-check tests allow."""
    s = ImageServer(bind="127.0.0.2")
    try:
        yield s
    finally:
        s.stop()


def requests_for(server, path):
    return server.stats()["requests"].get(path, 0)


def assert_nothing_made(node, inst, sha=None):
    assert not node.has_domain(inst)
    assert not os.path.exists(node.dir(inst))
    assert node.agent.get(f"/v1/instances/{inst}")[0] == 404
    if sha:
        published = [f for f in os.listdir(os.path.join(node.env.state_dir, "images"))
                     if not f.startswith(".")]
        assert sha not in published


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qcow2_backed_by_shadow():
    """A qcow2 whose backing file is /etc/shadow: what a probing tool would open."""
    path = tempfile.mktemp(suffix=".qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F",
                    "raw", path, "64M"], check=True, capture_output=True)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


def test_file_url_wrong_sha256_and_disguised_raw_are_refused(node):
    node.start()
    images = node.images

    # file:// names a file of the host, read as root: refused from the bus, before any
    # download, even with the right digest of a file that exists.
    local = os.path.join(images.root, "guest.qcow2")
    inst, last = node.create("file", url="file://" + local, sha=images.guest_sha, check=1)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "INVALID_ARGUMENT", last
    assert last["error"]["field"] == "create.spec.image.url", last
    assert "file URL" in last["error"]["message"], last
    assert_nothing_made(node, inst, images.guest_sha)

    # A wrong sha256: the event says what was expected, nothing about what was read.
    url = images.copy_guest("wrong-sha.qcow2")
    wrong = "ab" * 32
    inst, last = node.create("wrongsha", url=url, sha=wrong, check=1)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "IMAGE", last
    message = last["error"]["message"]
    assert "sha256 mismatch" in message and wrong in message, message
    assert requests_for(images, "/wrong-sha.qcow2") >= 1  # it was read
    assert images.guest_sha not in json.dumps(last), last
    assert str(os.path.getsize(local)) not in message, message
    assert_nothing_made(node, inst, wrong)

    # Declared raw, the bytes are a qcow2 with a backing file: refused, not published.
    url, sha = images.add("disguised.raw", qcow2_backed_by_shadow())
    inst, last = node.create("disguised", url=url, sha=sha, fmt="raw", check=1)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "IMAGE", last
    assert "declared raw is a qcow2 image" in last["error"]["message"], last
    assert_nothing_made(node, inst, sha)


def test_only_allowed_networks_are_reached_redirects_included(cluster, virtenv, images, images2):
    admin_port = free_port()
    node = Node(cluster, virtenv, images2, extra_config=(
        "[image_cache]\nallowed_networks = 127.0.0.2/32\nretries = 0\n"
        f"[admin]\nlisten = 127.0.0.1:{admin_port}\n"))
    try:
        check_allowed_networks(node, images, images2, admin_port)
    finally:
        if node.conn:
            node.conn.close()


def check_allowed_networks(node, images, images2, admin_port):
    node.start()

    # 127.0.0.2 is reached: a missing file there is the server's 404.
    inst, last = node.create("allowed", url=images2.url + "missing.qcow2", check=1)
    assert last["error"]["code"] == "IMAGE", last
    assert "HTTP status 404" in last["error"]["message"], last
    assert requests_for(images2, "/missing.qcow2") == 1
    assert_nothing_made(node, inst)

    # 127.0.0.1, another loopback address: refused before connecting, so the image server
    # there sees nothing, and neither does the agent's own admin listener.
    url = images.copy_guest("direct.qcow2")
    for name, target in (("direct", url),
                         ("admin", f"http://127.0.0.1:{admin_port}/v1/instances")):
        inst, last = node.create(name, url=target, sha=images.guest_sha, check=1)
        assert last["kind"] == "FAILED", last
        assert last["error"]["code"] == "IMAGE", last
        message = last["error"]["message"]
        assert "connection to 127.0.0.1 refused" in message, message
        assert "loopback" in message and "allowed_networks" in message, message
        assert_nothing_made(node, inst, images.guest_sha)
    assert requests_for(images, "/direct.qcow2") == 0

    # A redirect from the allowed server to 127.0.0.1: followed up to the address check.
    images.copy_guest("redirected.qcow2")
    port = images.url.rstrip("/").rsplit(":", 1)[1]
    path = f"/_/redirect-to/127.0.0.1:{port}/redirected.qcow2"
    inst, last = node.create("redirect", url=images2.url + path[1:], sha=images.guest_sha,
                             check=1)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "IMAGE", last
    assert "connection to 127.0.0.1 refused" in last["error"]["message"], last
    assert requests_for(images2, path) == 1
    assert requests_for(images, "/redirected.qcow2") == 0
    assert_nothing_made(node, inst, images.guest_sha)


def test_a_create_waiting_on_a_failed_shared_download_tries_its_own_url(cluster, virtenv,
                                                                       images):
    """Two creates of one image: the first names a source that never answers; the second,
    which arrives while that download runs and waits on it, tries its own URL when it fails
    instead of inheriting the failure."""
    node = Node(cluster, virtenv, images,
                extra_config="[image_cache]\nstall_timeout = 5\nretries = 0\n")
    try:
        node.start()
        bad_path = "/_/hang/shared.qcow2"
        images.copy_guest("shared.qcow2")
        bad = str(uuid.uuid4())
        cluster.nodectl("create", "--uuid", bad, "--name", "stuck", "--tenant", "t1",
                        "--vcpus", "1", "--memory-mib", "256", "--disk-gib", "1",
                        "--image-id", "guest", "--image-url", images.url + bad_path[1:],
                        "--image-sha256", images.guest_sha, "--image-format", "qcow2",
                        "--hostname", "stuck", "--request-id", "stuck-create", check=0)
        wait_for(lambda: requests_for(images, bad_path) == 1, 60,
                 "the first create's download to reach the image server")
        good, last = node.create("good", ip="10.0.0.9")
        assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
        assert requests_for(images, "/guest.qcow2") == 1
        done = wait_for(lambda: [e for e in cluster.events(request_id="stuck-create")
                                 if e["kind"] in ("DONE", "FAILED")], 60,
                        "the first create's end")
        assert done[0]["kind"] == "FAILED" and done[0]["error"]["code"] == "IMAGE", done
        assert "timed out" in done[0]["error"]["message"], done
        assert_nothing_made(node, bad)
    finally:
        if node.conn:
            node.conn.close()
