"""Node announcements on <prefix>.nodes: every agent announces itself, learns its peers and
their tunnel endpoints, and drops a peer that leaves or goes silent.  Hostile messages on
the topic are ignored.  Real agents on the devbus; no hypervisor needed."""
import os
import signal
import subprocess
import time

import pytest

import trust
from harness import Cluster, wait_for


def config(endpoint):
    return f"[network]\ntunnel_endpoint = {endpoint}\nannounce_interval = 1\n"


def peers(agent):
    status, body = agent.get_json("/v1/peers")
    assert status == 200, body
    return {p["node_id"]: p for p in body["peers"]}


announcement = trust.announcement


@pytest.fixture
def three(tmp_path):
    c = Cluster(tmp_path, nodes=("n1", "n2", "n3"))
    try:
        yield c
    finally:
        c.close()


def produce(cluster, key, payload, tmp_path, name, signer=None, endpoints=None):
    """One message on the nodes topic, signed by the certified key of node `signer` (made
    for the endpoints given) unless signer is None."""
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.write(payload)
    args = ["kcat", "-P", "-b", cluster.devbus.bootstrap, "-t", f"{cluster.prefix}.nodes"]
    if key is not None:
        args += ["-k", key]
    if signer:
        node_key, cert = cluster.authority.node(signer, endpoints)
        with open(cert, "rb") as f:
            args += trust.node_headers(node_key, f.read(), "announcement", payload)
    subprocess.run(args + [path], check=True, timeout=60, capture_output=True)


def test_agents_learn_each_other_and_forget_who_leaves_or_goes_silent(three, tmp_path):
    n1 = three.agent("n1", extra_config=config("192.0.2.1")).start()
    n2 = three.agent("n2", extra_config=config("192.0.2.2")).start()
    wait_for(lambda: "n2" in peers(n1) and "n1" in peers(n2), 30, "n1 and n2 to see each other")
    p = peers(n1)["n2"]
    assert p["tunnel_endpoint"] == "192.0.2.2" and p["interval_s"] == 1
    assert p["agent_version"] and p["heard_s_ago"] < 3
    assert peers(n2)["n1"]["tunnel_endpoint"] == "192.0.2.1"
    assert "n1" not in peers(n1) and "n2" not in peers(n2)
    text = three.nodectl("peers", env={"NODECTL_ADMIN_SOCKET": n1.socket}, check=0).stdout
    assert "n2" in text and "192.0.2.2" in text and "192.0.2.1" in text

    # Hostile messages from certified nodes (tests/system/test_trust.py covers forged
    # signatures): not protobuf; a key that is not the node id (claiming n2's identity with
    # another endpoint); an endpoint that is no address; a node long dead.
    produce(three, "n2", os.urandom(64) + b"\xff\xff", tmp_path, "junk", signer="n5")
    produce(three, "n9", announcement("n2", "192.0.2.2"), tmp_path, "spoof", signer="n2")
    produce(three, "n5", announcement("n5", "not-an-ip"), tmp_path, "badip", signer="n5")
    produce(three, "n6", announcement("n6", "192.0.2.6", time_ms=int(time.time() * 1000) - 3600000),
            tmp_path, "stale", signer="n6", endpoints=["192.0.2.6"])
    produce(three, "n8", announcement("n8", "192.0.2.8", vnis=(5, 0)), tmp_path, "badvni",
            signer="n8", endpoints=["192.0.2.8"])
    produce(three, "n7", announcement("n7", "192.0.2.7", vnis=(9, 5)), tmp_path, "good",
            signer="n7", endpoints=["192.0.2.7"])
    wait_for(lambda: "n7" in peers(n1), 30, "the well-formed stranger to be taken")
    logs = n1.logs()
    assert "not a NodeAnnouncement" in logs
    assert "is not its node_id `n2`" in logs
    assert "tunnel_endpoint" in logs and "not-an-ip" in logs
    got = peers(n1)
    assert set(got) == {"n2", "n7"}, got
    assert got["n2"]["tunnel_endpoint"] == "192.0.2.2"
    assert got["n7"]["vnis"] == [5, 9] and got["n2"]["vnis"] == []
    assert "vnis[1]" in logs
    # n7 said nothing more: gone after three of its intervals.
    wait_for(lambda: "n7" not in peers(n1), 30, "the silent stranger to be dropped")
    assert n1.proc.poll() is None and n1.checks()["bus"]

    # A clean stop says so: dropped at once, not after a timeout.
    n2.stop()
    wait_for(lambda: "n2" not in peers(n1), 10, "n2's leaving to be heard")
    assert 'msg="peer left" peer=n2' in n1.logs()

    # kill -9: no goodbye, dropped after three intervals of silence.
    n3 = three.agent("n3", extra_config=config("192.0.2.3")).start()
    wait_for(lambda: "n3" in peers(n1), 30, "n1 to see n3")
    n3.proc.send_signal(signal.SIGKILL)
    n3.proc.wait(10)
    wait_for(lambda: "n3" not in peers(n1), 30, "n3's silence to be noticed")
    assert 'msg="peer lost: no announcement in time" peer=n3' in n1.logs()

    # A restarted agent reads the whole topic: who left stays gone, who came back is there.
    n2.start()
    n1.stop()
    n1.start()
    wait_for(lambda: set(peers(n1)) == {"n2"}, 30, "n1 to know exactly n2 after its restart")
