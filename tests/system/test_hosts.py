"""The multi-host harness (deploy/hosts.py): test hosts in network namespaces of their own,
joined by an underlay on OVS internal ports, each with an agent that announces its
underlay address as its tunnel endpoint; and a teardown that leaves nothing behind."""
import os
import subprocess
import tempfile
import uuid

import pytest

from harness import Cluster, wait_for


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_two_hosts_reach_each_other_and_their_agents_learn_each_others_endpoint(tmp_path, images):
    from hosts import Hosts
    hosts = Hosts(tempfile.mkdtemp(prefix="nodeagent-hosts-"), 2)
    cluster = Cluster(tmp_path, nodes=("h1", "h2"))
    try:
        hosts.start()
        assert {h.netns for h in hosts} | {hosts.underlay_ns} <= namespaces()
        for a, b in ((0, 1), (1, 0)):
            r = hosts[a].exec("ping", "-c", "2", "-W", "5", hosts[b].underlay_ip,
                              capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
        # The underlay address is on OVS's internal port, as tunnels need it.
        ports = hosts[0].env.vsctl("list-ports", "br-ul").split()
        assert ports == ["ul0"]
        # Each host is a libvirt host of its own.
        host_uuids = {h.env.connect().getCapabilities().split("<uuid>")[1].split("<")[0]
                      for h in hosts}
        assert len(host_uuids) == 2

        agents = []
        for h in hosts:
            agent = cluster.agent(f"h{h.index}", virtenv=h.env, extra_config=(
                f"[network]\ntunnel_endpoint = {h.underlay_ip}\nannounce_interval = 1\n"))
            agent.start()
            agent.wait_healthy(need=None)
            agents.append(agent)

        def endpoints(agent):
            _, body = agent.get_json("/v1/peers")
            return {p["node_id"]: p["tunnel_endpoint"] for p in body["peers"]}
        wait_for(lambda: endpoints(agents[0]) == {"h2": hosts[1].underlay_ip}
                 and endpoints(agents[1]) == {"h1": hosts[0].underlay_ip}, 30,
                 "each agent to know the other's tunnel endpoint")

        # A guest with a NIC on VNI 4242 on h1: h2 learns that h1 hosts that network, and
        # forgets it when the guest is gone.
        def vnis_of_h1():
            _, body = agents[1].get_json("/v1/peers")
            return {p["node_id"]: p["vnis"] for p in body["peers"]}.get("h1")
        inst = str(uuid.uuid4())
        cluster.nodectl(
            "create", "--uuid", inst, "--name", "g1", "--tenant", "t1", "--vcpus", 1,
            "--memory-mib", 256, "--disk-gib", 1, "--image-id", "guest", "--image-url",
            images.url + "guest.qcow2", "--image-sha256", images.guest_sha, "--image-format",
            "qcow2", "--hostname", "g1", "--nic",
            f"port={uuid.uuid4()},network={uuid.uuid4()},vni=4242,mac=52:54:00:00:42:42,"
            f"ip=10.42.0.5/24", "--wait", "--timeout", 240, node="h1", timeout=300, check=0)
        wait_for(lambda: vnis_of_h1() == [4242], 30, "h2 to learn h1's network")
        cluster.nodectl("delete", inst, "--wait", "--timeout", 120, node="h1", timeout=180,
                        check=0)
        wait_for(lambda: vnis_of_h1() == [], 30, "h2 to learn h1 has no network left")
    finally:
        cluster.close()
        hosts.stop()
    left = {n for n in namespaces() if hosts.tag in n}
    assert not left, left
    assert not os.path.exists(hosts.dir)


def test_a_failed_start_leaves_nothing_behind():
    from hosts import Hosts

    class Failing(Hosts):
        def _wire(self, host):
            super()._wire(host)
            if host.index == 2:
                raise RuntimeError("made to fail after the second host started")

    hosts = Failing(tempfile.mkdtemp(prefix="nodeagent-hosts-"), 3)
    with pytest.raises(RuntimeError):
        hosts.start()
    assert not {n for n in namespaces() if hosts.tag in n}
    assert not os.path.exists(hosts.dir)
    # Its daemons are gone too: no process carries the hosts' directories.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    assert hosts.dir.encode() not in f.read(), pid
            except OSError:
                pass
