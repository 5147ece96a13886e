import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "deploy"))
from harness import Cluster  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "crash_sweep: the crash sweep (test_crash_sweep.py), "
                            "minutes long; -m 'not crash_sweep' leaves it out")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def virtenv(tmp_path):
    """A private OVS + libvirt host (deploy/virtenv.py), stopped and removed afterwards.

    Its directory is outside tmp_path (pytest's directories are 0700, and QEMU runs under
    its own uids); its logs are copied to tmp_path/virtenv-logs at the end.
    """
    from virtenv import VirtEnv
    env = VirtEnv(tempfile.mkdtemp(prefix="nodeagent-virtenv-"))
    os.rmdir(env.dir)
    try:
        env.start()
        yield env
    finally:
        for src, name in ((env.logdir, "daemons"),
                          (os.path.join(env.dir, "libvirt/log"), "libvirt")):
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(tmp_path, "virtenv-logs", name),
                                dirs_exist_ok=True)
        env.stop()


@pytest.fixture(scope="session")
def guest_image():
    """deploy/images' test guest, built once into build/images (kept between runs)."""
    from guests import guest_image as build
    return build()


@pytest.fixture(scope="module")
def images():
    """deploy/imageserver.py on loopback with the guest image (tests/system/nodes.py)."""
    from nodes import ImageServer
    s = ImageServer()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def node(cluster, virtenv, images):
    """An agent on a private libvirt + OVS host (tests/system/nodes.py), not started yet."""
    from nodes import Node
    n = Node(cluster, virtenv, images)
    try:
        yield n
    finally:
        if n.conn:
            n.conn.close()


@pytest.fixture
def placement(tmp_path):
    """OpenStack Placement (placement-api, noauth2, SQLite) on loopback
    (tests/system/placement.py), stopped by pid afterwards."""
    from placement import Placement
    p = Placement(tmp_path)
    try:
        p.start()
        yield p
    finally:
        p.stop()
