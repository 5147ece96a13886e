#!/usr/bin/python3
"""Several test "hosts" on one machine, joined by an underlay network.

    deploy/hosts.py start DIR --count N
    deploy/hosts.py stop DIR

Each host is a deploy/virtenv.py host (its own Open vSwitch and libvirtd, its own mount
namespace and host_uuid) in a network namespace of its own, `nah<tag><i>`.  The underlay is
a Linux bridge in one more namespace, `nau<tag>`, with one veth pair per host.  Inside each
host the veth end (`ul0`) is a port of an OVS bridge `br-ul` (netdev datapath, a plain
learning switch), and the host's underlay address, 10.200.0.<i>/24, sits on that bridge's
internal port: tunnels (Geneve/VXLAN) between two netdev-datapath OVS instances work when
the underlay address is on an OVS internal port (docs/DESIGN's test facts).  The hosts share
nothing else; the devbus, image server and agents run outside, in the caller's namespace,
and reach each host's libvirtd and ovsdb-server through their unix sockets.

DIR/hosts.json records the namespaces and hosts as soon as each exists, so `stop` (also
from another process, after a failed start or a crashed test) removes everything: the
hosts (virtenv.py stop), then the namespaces, which takes their veths with them.  Only
namespaces this tool created (named in hosts.json) are ever deleted.

Used as a module: Hosts(DIR, count).start() ... .stop(); Hosts[i].env is the VirtEnv,
.underlay_ip its address, .netns its namespace.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from virtenv import VirtEnv  # noqa: E402

SUBNET = "10.200.0"
PREFIX_LEN = 24
UNDERLAY_BRIDGE = "br-ul"
MTU = 1500


class HostsError(Exception):
    pass


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise HostsError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class Host:
    def __init__(self, index, netns, topdir):
        self.index = index
        self.netns = netns
        self.underlay_ip = f"{SUBNET}.{index}"
        self.underlay_mac = f"02:00:0a:c8:00:{index:02x}"
        self.env = VirtEnv(os.path.join(topdir, f"h{index}"), netns=netns)

    def exec(self, *cmd, **kw):
        """Runs cmd in the host's network namespace (ip netns exec)."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], **kw)

    def restart_ovs(self, name):
        """Restarts ovs-vswitchd or ovsdb-server, and puts the underlay address back on br-ul
        as a host's network configuration would: with the netdev datapath, br-ul's internal
        port is a tap that ovs-vswitchd makes anew when it starts, without the address."""
        self.env.restart_ovs(name)
        self.configure_underlay()

    def configure_underlay(self):
        _ip("-n", self.netns, "addr", "replace", f"{self.underlay_ip}/{PREFIX_LEN}", "dev",
            UNDERLAY_BRIDGE)
        _ip("-n", self.netns, "link", "set", UNDERLAY_BRIDGE, "mtu", str(MTU), "up")


class Hosts:
    def __init__(self, topdir, count=2):
        if not 1 <= count <= 200:
            raise HostsError(f"count {count}: 1..200 hosts")
        self.dir = os.path.abspath(topdir)
        self.count = count
        self.tag = uuid.uuid4().hex[:6]
        self.underlay_ns = f"nau{self.tag}"
        self.hosts = []
        self.state = os.path.join(self.dir, "hosts.json")

    def __getitem__(self, i):
        return self.hosts[i]

    def __len__(self):
        return len(self.hosts)

    def _save(self, namespaces):
        with open(self.state + ".tmp", "w") as f:
            json.dump({"namespaces": namespaces,
                       "hosts": [h.env.dir for h in self.hosts]}, f)
        os.replace(self.state + ".tmp", self.state)

    def start(self):
        if os.path.exists(self.state):
            raise HostsError(f"{self.dir} holds hosts already (stop them first)")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o711)  # guests' QEMU uids traverse into the hosts' state
        namespaces = []
        try:
            _ip("netns", "add", self.underlay_ns)
            namespaces.append(self.underlay_ns)
            self._save(namespaces)
            _ip("-n", self.underlay_ns, "link", "set", "lo", "up")
            _ip("-n", self.underlay_ns, "link", "add", "ul", "type", "bridge")
            _ip("-n", self.underlay_ns, "link", "set", "ul", "up")
            for i in range(1, self.count + 1):
                netns = f"nah{self.tag}{i}"
                _ip("netns", "add", netns)
                namespaces.append(netns)
                host = Host(i, netns, self.dir)
                self.hosts.append(host)
                self._save(namespaces)
                self._wire(host)
        except BaseException:
            self.stop()
            raise
        return self

    def _wire(self, host):
        ns = host.netns
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "add", "ul0", "mtu", str(MTU), "type", "veth", "peer", "name",
            f"h{host.index}", "netns", self.underlay_ns)
        _ip("-n", self.underlay_ns, "link", "set", f"h{host.index}", "master", "ul", "up")
        _ip("-n", ns, "link", "set", "ul0", "up")
        host.env.start()
        # A fixed MAC, as a node's network configuration gives it: ovs-vswitchd makes the
        # internal port anew when it restarts, and a new random MAC would leave the other
        # hosts' tunnel neighbour entries pointing at the old one.
        host.env.vsctl("add-br", UNDERLAY_BRIDGE, "--", "set", "bridge", UNDERLAY_BRIDGE,
                       "datapath_type=netdev", f"other_config:hwaddr={host.underlay_mac}", "--",
                       "add-port", UNDERLAY_BRIDGE, "ul0")
        host.configure_underlay()

    def stop(self):
        """Idempotent: every host, then every namespace named in hosts.json."""
        saved = {"namespaces": [], "hosts": []}
        if os.path.exists(self.state):
            with open(self.state) as f:
                saved = json.load(f)
        for d in saved["hosts"] or [h.env.dir for h in self.hosts]:
            env = VirtEnv(d)
            try:
                env.stop()
            except Exception as e:  # noqa: BLE001 - teardown goes on regardless
                print(f"hosts: stopping {d}: {e}", file=sys.stderr)
        for ns in reversed(saved["namespaces"]):
            _ip("netns", "del", ns, check=False)
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.hosts = []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start N hosts joined by an underlay in DIR")
    s.add_argument("dir")
    s.add_argument("--count", type=int, default=2)
    t = sub.add_parser("stop", help="stop the hosts in DIR and remove their namespaces")
    t.add_argument("dir")
    a = ap.parse_args()
    if a.cmd == "start":
        hosts = Hosts(a.dir, a.count).start()
        for h in hosts:
            print(f"h{h.index} {h.underlay_ip} {h.netns} {h.env.dir}")
        return 0
    Hosts(a.dir).stop()  # what DIR/hosts.json names
    return 0


if __name__ == "__main__":
    sys.exit(main())
