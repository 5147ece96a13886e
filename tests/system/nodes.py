"""Test nodes: an agent on a private libvirt + OVS host (deploy/virtenv.py), the bus to talk
to it, and a loopback image server with the test guest and hostile images."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid

import libvirt

from harness import wait_for
from guests import guest_image as build_guest_image, sha256_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
S = {"running": libvirt.VIR_DOMAIN_RUNNING, "paused": libvirt.VIR_DOMAIN_PAUSED,
     "shutoff": libvirt.VIR_DOMAIN_SHUTOFF}


class ImageServer:
    """deploy/imageserver.py on loopback, serving the guest image and hostile ones."""

    def __init__(self, bind="127.0.0.1"):
        self.root = tempfile.mkdtemp(prefix="nodeagent-images-")
        os.chmod(self.root, 0o755)
        shutil.copy(build_guest_image(), os.path.join(self.root, "guest.qcow2"))
        self.guest_sha = sha256_file(os.path.join(self.root, "guest.qcow2"))
        self.proc = subprocess.Popen([os.path.join(ROOT, "deploy/imageserver.py"), "--root",
                                      self.root, "--bind", bind], stdout=subprocess.PIPE,
                                     text=True)
        self.url = self.proc.stdout.readline().strip()

    def add(self, name, data):
        path = os.path.join(self.root, name)
        with open(path, "wb") as f:
            f.write(data)
        return self.url + name, sha256_file(path)

    def copy_guest(self, name):
        shutil.copy(os.path.join(self.root, "guest.qcow2"), os.path.join(self.root, name))
        return self.url + name

    def variant_guest(self, name):
        """The same guest in another file layout: another sha256, the same system."""
        path = os.path.join(self.root, name)
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", "-o", "cluster_size=32768",
                        os.path.join(self.root, "guest.qcow2"), path], check=True)
        return self.url + name, sha256_file(path)

    def stats(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "_/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def network_id(vni):
    """One tenant network per VNI, as in a cloud: the agent refuses two networks with one VNI."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"nodeagent-test-vni-{vni}"))


class Node:
    """An agent on a private libvirt + OVS host, and the bus to talk to it."""

    def __init__(self, cluster, virtenv, images, extra_config="", node_id="n1"):
        self.node_id = node_id
        self.cluster = cluster
        self.env = virtenv
        self.images = images
        self.extra_config = extra_config
        self.agent = None
        self.conn = None

    def start(self, extra_config=None, need=("bus", "database", "libvirt", "ovs"), **kw):
        """Starts (or restarts) the agent; its configuration is fixed at the first start."""
        if not self.agent:
            self.agent = self.cluster.agent(
                self.node_id, virtenv=self.env,
                extra_config=self.extra_config if extra_config is None else extra_config)
        self.agent.start(**kw)
        self.agent.wait_healthy(need=need)
        if not self.conn:
            self.conn = libvirt.open(self.env.uri)
        return self

    def request(self, *args, check=None, timeout=300):
        r = self.cluster.nodectl(*args, "--wait", "--json", "--timeout", timeout, check=check,
                                 timeout=timeout + 30, node=self.node_id)
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        return lines[-1] if lines else {"returncode": r.returncode, "stderr": r.stderr}

    def create(self, name, ip="10.0.0.5", inst=None, url=None, sha=None, disk=1, extra=(),
               check=0, vni=7, mac=None, port=None, fmt="qcow2", ip6=None):
        """ip6: also an IPv6 address (a /64, gateway ::1 of it) on the NIC."""
        inst = inst or str(uuid.uuid4())
        mac = mac or "52:54:00:" + os.urandom(3).hex(":")
        v6 = f",ip={ip6}/64,gateway6={ip6.rsplit(':', 1)[0]}:1" if ip6 else ""
        last = self.request(
            "create", "--uuid", inst, "--name", name, "--tenant", "t1", "--vcpus", "1",
            "--memory-mib", "256", "--disk-gib", disk, "--image-id", "guest", "--image-url",
            url or self.images.url + "guest.qcow2", "--image-sha256",
            sha or self.images.guest_sha, "--image-format", fmt, "--hostname", name,
            "--nic", f"port={port or uuid.uuid4()},network={network_id(vni)},vni={vni},"
            f"mac={mac},ip={ip}/24,gateway=10.0.0.1,mtu=1450{v6}",
            *extra, check=check)
        return inst, last

    def dir(self, inst):
        return os.path.join(self.env.state_dir, "instances", inst)

    def console(self, inst):
        try:
            with open(os.path.join(self.dir(inst), "console.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_ready(self, inst, hostname, ip, count=1, timeout=120):
        line = f"nodeagent-guest: ready {hostname} {ip}"
        wait_for(lambda: self.console(inst).count(line) >= count, timeout,
                 f"`{line}` x{count} on the console of {inst}", interval=0.5)

    def dom(self, inst):
        return self.conn.lookupByUUIDString(inst)

    def state(self, inst):
        return self.dom(inst).state()[0]

    def has_domain(self, inst):
        try:
            self.dom(inst)
            return True
        except libvirt.libvirtError:
            return False

    def qemu_pid(self, inst):
        with open(os.path.join(self.env.dir, "libvirt/run/qemu", f"na-{inst}.pid")) as f:
            return int(f.read().strip())

    def proc_status(self, pid):
        with open(f"/proc/{pid}/status") as f:
            return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)

    def image_users(self, sha):
        _, body = self.agent.get_json("/v1/images")
        for img in body["images"]:
            if img["sha256"] == sha:
                return img["users"]
        return None
