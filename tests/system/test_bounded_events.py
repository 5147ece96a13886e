"""Bounded events and store: no single event can stop the node's events at the bus, and a
finished request keeps only its hash and a result summary.  A real agent on a private
libvirt + OVS host and the devbus; assertions read the bus (nodectl), state.db and the
console file."""
import os
import sqlite3

from nodes import S

# The producer's message limit, lowered so that an event the contract allows (a 256 KiB
# console tail) is one the bus refuses: the agent must publish a FAILED event in its place
# and keep delivering the node's later events.
MESSAGE_MAX = 200000
CONFIG = f"[bus.rdkafka]\nmessage.max.bytes = {MESSAGE_MAX}\n"


def metric(agent, name):
    _, text = agent.get("/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_a_huge_console_tail_does_not_stop_later_events(node):
    node.start(extra_config=CONFIG)
    inst, last = node.create("vm1", ip="10.0.0.5")
    assert last["kind"] == "DONE", last
    last = node.request("stop", inst, "--shutdown-timeout", "30", check=0)
    assert last["kind"] == "DONE" and node.state(inst) == S["shutoff"], last

    # What a chatty guest leaves in its console: well over 1 MiB.
    with open(os.path.join(node.dir(inst), "console.log"), "ab") as f:
        for i in range(20000):
            f.write(b"console line %06d: the guest keeps talking and talking\n" % i)
    with open(os.path.join(node.dir(inst), "console.log"), "rb") as f:
        console = f.read()
    assert len(console) > 1048576

    # 1 MiB of tail would make an event over the producer's default limit: refused,
    # naming the field.
    last = node.request("console-log", inst, "--tail-bytes", "1048576", "--request-id", "big-1",
                        check=1, timeout=60)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "INVALID_ARGUMENT", last
    assert last["error"]["field"] == "console_log.tail_bytes", last

    # A tail the producer takes arrives whole.
    last = node.request("console-log", inst, "--tail-bytes", "131072", "--request-id", "tail-1",
                        check=0, timeout=60)
    assert last["kind"] == "DONE", last
    assert last["console_log"].encode() == console[-131072:]

    # A tail the contract allows but this producer refuses: a small FAILED event stands
    # for the DONE event ...
    last = node.request("console-log", inst, "--tail-bytes", "262144", "--request-id", "tail-2",
                        check=1, timeout=60)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "INTERNAL", last
    assert "refused by the bus" in last["error"]["message"], last
    assert "console_log" not in last

    # ... and the node's later events still arrive, read from the bus.
    last = node.request("start", inst, "--request-id", "after-1", check=0, timeout=120)
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    assert node.state(inst) == S["running"]
    assert [e["kind"] for e in node.cluster.events(request_id="after-1")][-1] == "DONE"

    # Across a restart too: nothing is left stuck in the outbox.
    assert node.agent.stop() == 0
    node.start()
    last = node.request("pause", inst, "--request-id", "after-2", check=0, timeout=120)
    assert last["kind"] == "DONE" and last["state"] == "PAUSED", last
    assert node.state(inst) == S["paused"]
    assert metric(node.agent, "nodeagent_outbox_depth") == 0
    assert metric(node.agent, "nodeagent_store_bytes") > 0

    # The finished requests keep their hash and a summary, not their envelope or the tail.
    db = sqlite3.connect(f"file:{node.env.state_dir}/state.db?mode=ro", uri=True)
    try:
        rows = dict((r[0], r[1:]) for r in db.execute(
            "SELECT request_id, length(envelope), length(result_event), length(body_hash) "
            "FROM intents WHERE request_id IN ('tail-1', 'tail-2', 'after-1')"))
    finally:
        db.close()
    assert set(rows) == {"tail-1", "tail-2", "after-1"}, rows
    for request_id, (envelope, result, body_hash) in rows.items():
        assert envelope == 0 and body_hash == 64, (request_id, rows)
        assert 0 < result < 4096, (request_id, rows)
