"""Foundation: the request path from bus to events, idempotency, hostile input, crashes,
bus outages, the admin API, configuration errors, memory.  Real devbus, agent, nodectl
and kcat; assertions read the bus, the admin API, the logs and /proc."""
import json
import os
import random
import re
import signal
import subprocess
import time
import uuid

import pytest

from harness import BUILD, NODECTL, wait_for

UUID = "0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e"


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def unique_by_event_id(events):
    seen, out = set(), []
    for e in events:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            out.append(e)
    return out


def terminal(events):
    return [e for e in events if e["kind"] in ("DONE", "FAILED")]


def metric(agent, name):
    _, text = agent.get("/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_idle(agent, received, timeout=180):
    """Until the agent has consumed `received` messages and has nothing left to do."""
    def idle():
        return (metric(agent, "nodeagent_bus_messages_received_total") >= received
                and metric(agent, "nodeagent_queue_depth") == 0
                and metric(agent, "nodeagent_operations_running") == 0
                and metric(agent, "nodeagent_outbox_depth") == 0)
    wait_for(idle, timeout, f"agent idle after {received} messages", interval=0.5)


def envelope_template(cluster, tmp_path, *args):
    """A valid serialized Envelope (from nodectl --out) whose request_id is a 36-char uuid."""
    path = os.path.join(str(tmp_path), "template.bin")
    cluster.nodectl(*args, "--request-id", str(uuid.uuid4()), "--out", path, check=0)
    data = open(path, "rb").read()
    assert data[:2] == b"\x0a\x24", "request_id is expected first, 36 bytes long"
    return data


def with_request_id(template, request_id):
    assert len(request_id) == 36
    return template[:2] + request_id.encode() + template[38:]


def test_request_events_carry_request_id(cluster):
    cluster.agent().start()
    r = cluster.nodectl("start", UUID, "--request-id", "req-1", "--wait", "--json", check=1)
    last = json_lines(r.stdout)[-1]
    assert last["kind"] == "FAILED"
    assert last["error"]["code"] == "NOT_FOUND"
    assert UUID in last["error"]["message"]

    events = unique_by_event_id(cluster.events(request_id="req-1"))
    assert [e["kind"] for e in events] == ["ACCEPTED", "FAILED"]
    for e in events:
        assert e["node_id"] == "n1"
        assert e["instance_uuid"] == UUID
        assert e["request_kind"] == "start"
        assert e["request_offset"] == 0


def test_request_kind_newer_than_the_agent_is_unimplemented(cluster, tmp_path):
    """A signed envelope whose body is a field this agent does not know (a kind of a newer
    contract): every kind of this contract has a handler, so this is what UNIMPLEMENTED is."""
    import trust
    cluster.agent().start()
    rid = "newer-kind-1"
    payload = (trust.lendelim(1, rid) + trust.field(2, 0, trust.varint(int(time.time() * 1000)))
               + trust.lendelim(4, "n1") + trust.lendelim(99, trust.lendelim(1, UUID)))
    path = tmp_path / "newer-kind.bin"
    path.write_bytes(payload)
    subprocess.run(["kcat", "-P", "-b", cluster.devbus.bootstrap, "-t",
                    f"{cluster.prefix}.node.n1", "-H",
                    f"{trust.SIGNATURE_HEADER}="
                    f"{trust.sign(cluster.authority.key, 'request', payload)}", str(path)],
                   check=True, timeout=60, capture_output=True)
    failed = wait_for(lambda: [e for e in cluster.events(request_id=rid)
                               if e["kind"] == "FAILED"], 60, "the newer kind's FAILED event")
    err = failed[0]["error"]
    assert (err["code"], err["field"]) == ("UNIMPLEMENTED", "body"), err


def test_same_request_id_twice_has_one_effect(cluster):
    agent = cluster.agent().start()
    cluster.nodectl("reboot", UUID, "--hard", "--request-id", "dup-1", "--wait", check=1)
    r = cluster.nodectl("reboot", UUID, "--hard", "--request-id", "dup-1", "--wait", "--json",
                        check=1)
    assert json_lines(r.stdout)[-1]["replayed"] is True

    events = cluster.events(request_id="dup-1")
    fresh = unique_by_event_id([e for e in events if not e["replayed"]])
    assert [e["kind"] for e in fresh] == ["ACCEPTED", "FAILED"]
    replayed = [e for e in events if e["replayed"]]
    assert len(replayed) == 1
    assert replayed[0]["event_id"] == fresh[1]["event_id"]

    _, req = agent.get_json("/v1/requests/dup-1")
    assert req["attempts"] == 1
    assert req["phase"] == "failed"
    assert agent.logs().count('msg="executing request" request_id="dup-1"') == 1


def test_request_id_reused_for_another_request_is_a_conflict(cluster):
    cluster.agent().start()
    cluster.nodectl("pause", UUID, "--request-id", "c-1", "--wait", check=1)
    r = cluster.nodectl("resume", UUID, "--request-id", "c-1", "--wait", "--json", check=1)
    err = json_lines(r.stdout)[-1]["error"]
    assert err["code"] == "CONFLICT"
    assert "pause" in err["message"]


@pytest.mark.parametrize("args, field", [
    (["delete", "../../etc/passwd"], "delete.instance_uuid"),
    (["snapshot", "create", UUID, "--snapshot", "a/b"], "snapshot_create.snapshot_name"),
    (["snapshot", "create", UUID, "--snapshot", ".."], "snapshot_create.snapshot_name"),
    (["stop", UUID, "--shutdown-timeout", "999999"], "stop.timeout_s"),
    (["create", "--uuid", UUID, "--name", "web/1", "--tenant", "t1", "--vcpus", "1",
      "--memory-mib", "256", "--disk-gib", "1", "--image-id", "img", "--image-url",
      "http://127.0.0.1/img", "--image-sha256", "0" * 64, "--image-format", "qcow2",
      "--hostname", "web1"], "create.spec.name"),
    (["create", "--uuid", UUID, "--name", "web1", "--tenant", "t1", "--vcpus", "100000",
      "--memory-mib", "256", "--disk-gib", "1", "--image-id", "img", "--image-url",
      "http://127.0.0.1/img", "--image-sha256", "0" * 64, "--image-format", "qcow2",
      "--hostname", "web1"], "create.spec.flavor.vcpus"),
])
def test_invalid_request_names_the_field(cluster, args, field):
    cluster.agent().start()
    r = cluster.nodectl(*args, "--wait", "--json", check=1)
    err = json_lines(r.stdout)[-1]["error"]
    assert err["code"] == "INVALID_ARGUMENT"
    assert err["field"] == field, err


def test_hostile_bytes_each_get_an_error_event(cluster, tmp_path):
    """1,000 random byte strings and 1,000 truncated or bit-flipped valid envelopes, all let
    through to decoding and validation by insecure_unsigned (signed, they would be refused
    before being read: tests/system/test_trust.py)."""
    # Mutated creates that still validate try to fetch their image: fail them at once.
    agent = cluster.agent(extra_config="[image_cache]\nretries = 0\n"
                          "[bus]\ninsecure_unsigned = true\n").start()
    rng = random.Random(20261123)
    templates = [
        envelope_template(cluster, tmp_path, "start", UUID),
        envelope_template(cluster, tmp_path, "stop", UUID, "--shutdown-timeout", "30"),
        envelope_template(cluster, tmp_path, "create", "--uuid", UUID, "--name", "vm1",
                          "--tenant", "t1", "--vcpus", "2", "--memory-mib", "512",
                          "--disk-gib", "10", "--image-id", "img", "--image-url",
                          "http://127.0.0.1/img", "--image-sha256", "a" * 64,
                          "--image-format", "qcow2", "--hostname", "vm1", "--nic",
                          f"port={uuid.uuid4()},network={uuid.uuid4()},vni=7,"
                          "mac=52:54:00:00:00:01,ip=10.0.0.5/24,gateway=10.0.0.1,mtu=1450"),
    ]
    files = []
    for i in range(1000):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        files.append(blob)
    for i in range(1000):
        blob = bytearray(with_request_id(rng.choice(templates), str(uuid.UUID(int=rng.getrandbits(128)))))
        if i % 2:
            blob = blob[:rng.randint(1, len(blob) - 1)]
        else:
            for _ in range(rng.randint(1, 3)):
                bit = rng.randrange(len(blob) * 8)
                blob[bit // 8] ^= 1 << (bit % 8)
        files.append(bytes(blob))
    paths = []
    for i, blob in enumerate(files):
        p = os.path.join(str(tmp_path), f"m{i:04d}.bin")
        with open(p, "wb") as f:
            f.write(blob)
        paths.append(p)

    cluster.kcat_produce(f"{cluster.prefix}.node.n1", paths)
    wait_idle(agent, 2000)
    assert agent.proc.poll() is None
    checks = agent.checks()  # still answering, still connected
    assert checks["bus"] and checks["database"]

    failed_offsets = {e["request_offset"] for e in cluster.events()
                      if e["kind"] == "FAILED" and not e["replayed"]}
    missing = set(range(2000)) - failed_offsets
    assert not missing, f"{len(missing)} messages got no error event, e.g. offsets {sorted(missing)[:10]}"
    logs = agent.logs()
    assert logs.count("is not a decodable nodeagent.v1.Envelope") >= 900


@pytest.mark.parametrize("failpoint", ["intake.recorded", "execute.start"])
def test_kill9_between_receive_and_execute_runs_once(cluster, failpoint):
    agent = cluster.agent()
    agent.start(env={"NODEAGENT_FAILPOINTS": f"{failpoint}=kill"})
    cluster.nodectl("stop", UUID, "--request-id", "k-1", check=0)
    wait_for(lambda: agent.proc.poll() is not None, 30, "the agent killed at the failpoint")
    assert agent.proc.returncode == -signal.SIGKILL
    assert f"failpoint={failpoint}" in agent.logs()
    assert agent.logs().count('msg="executing request" request_id="k-1"') == 0

    agent.start()
    wait_for(lambda: terminal(cluster.events(request_id="k-1")), 60, "the terminal event")
    events = unique_by_event_id(cluster.events(request_id="k-1"))
    fresh = [e for e in events if not e["replayed"]]
    assert [e["kind"] for e in fresh] == ["ACCEPTED", "FAILED"]
    assert agent.logs().count('msg="executing request" request_id="k-1"') == 1
    _, req = agent.get_json("/v1/requests/k-1")
    assert req["attempts"] == 1


def test_bus_outage_of_30s_loses_no_request_or_event(cluster):
    agent = cluster.agent().start()
    instances = [str(uuid.uuid4()) for _ in range(5)]
    before = [f"before-{i}" for i in range(10)]
    for i, rid in enumerate(before):
        cluster.nodectl("pause", instances[i % 5], "--request-id", rid, check=0)
    cluster.devbus.outage(True)
    wait_for(lambda: not agent.checks()["bus"], 30, "the agent to see the bus down")

    during = [f"during-{i}" for i in range(10)]
    senders = []
    for i, rid in enumerate(during):
        # nodectl gives up on delivery after 30 s by default; this sender waits longer.
        cmd = [NODECTL, "--bootstrap", cluster.devbus.bootstrap, "--prefix", cluster.prefix,
               "--node", "n1", "-X", "message.timeout.ms=180000", "resume", instances[i % 5], "--request-id", rid]
        senders.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    time.sleep(30)
    assert agent.proc.poll() is None
    cluster.devbus.outage(False)
    for p in senders:
        assert p.wait(120) == 0, p.stderr.read()
    agent.wait_healthy(60)

    def all_answered():
        events = cluster.events()
        done = {e["request_id"] for e in terminal(events)}
        accepted = {e["request_id"] for e in events if e["kind"] == "ACCEPTED"}
        want = set(before + during)
        return want <= done and want <= accepted
    wait_for(all_answered, 120, "every request's ACCEPTED and terminal event", interval=1)
    wait_idle(agent, 20)


def test_admin_api(cluster):
    agent = cluster.agent().start()
    # No libvirtd here: the agent says so, and says it is unhealthy.
    status, health = agent.get_json("/healthz")
    assert status == 503 and health["healthy"] is False
    checks = {c["name"]: c for c in health["checks"]}
    assert checks["bus"]["ok"] and checks["database"]["ok"]
    assert not checks["libvirt"]["ok"] and "no-libvirt-sock" in checks["libvirt"]["detail"]
    assert agent.get_json("/v1/instances") == (200, {"instances": []})
    assert agent.get("/v1/instances/" + UUID)[0] == 404
    assert agent.get("/v1/requests/nope")[0] == 404
    assert agent.get("/no/such/thing")[0] == 404

    cluster.nodectl("suspend", UUID, "--request-id", "m-1", "--wait", check=1)
    _, text = agent.get("/metrics")
    assert 'nodeagent_requests_total{kind="suspend",result="not_found"} 1' in text
    assert 'nodeagent_operation_duration_seconds_count{kind="suspend"} 1' in text
    for name in ("nodeagent_queue_depth", "nodeagent_bus_consumer_lag", "nodeagent_outbox_depth",
                 "nodeagent_bus_up 1", "nodeagent_healthy 0"):
        assert name in text

    r = cluster.nodectl("--admin-socket", agent.socket, "status", "--json", check=1)
    st = json.loads(r.stdout)
    assert st["node_id"] == "n1" and st["healthy"] is False


def test_request_sent_with_kcat(cluster, tmp_path):
    agent = cluster.agent().start()
    path = os.path.join(str(tmp_path), "console.bin")
    cluster.nodectl("console-log", UUID, "--request-id", "kc-1", "--out", path, check=0)
    with open(path + ".sig") as f:
        sig = f.read()
    assert re.fullmatch(r"[0-9a-f]{128}", sig), sig
    cluster.kcat_produce(f"{cluster.prefix}.node.n1", [path], [f"nodeagent-signature={sig}"])
    wait_for(lambda: terminal(cluster.events(request_id="kc-1")), 30, "an answer to kcat's request")
    assert agent.get_json("/v1/requests/kc-1")[1]["kind"] == "console_log"


def test_legacy_hmac_signed_requests(cluster, tmp_path):
    """A control plane without Ed25519 may still sign requests with the shared HMAC key."""
    key = os.path.join(str(tmp_path), "bus.key")
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    wrong = os.path.join(str(tmp_path), "wrong.key")
    with open(wrong, "wb") as f:
        f.write(os.urandom(32))
    cluster.agent(extra_config=f"[bus]\nhmac_key_file = {key}\n").start()
    no_ed25519 = {"NODEAGENT_CP_KEY": ""}

    r = cluster.nodectl("start", UUID, "--request-id", "s-1", "--wait", "--json", check=1,
                        env=no_ed25519)
    last = json_lines(r.stdout)[-1]
    assert last["error"]["code"] == "UNAUTHENTICATED" and last["unverified_request_id"] == "s-1"
    r = cluster.nodectl("--hmac-key-file", wrong, "start", UUID, "--request-id", "s-2", "--wait",
                        "--json", check=1, env=no_ed25519)
    assert json_lines(r.stdout)[-1]["error"]["code"] == "UNAUTHENTICATED"
    r = cluster.nodectl("--hmac-key-file", key, "start", UUID, "--request-id", "s-3", "--wait",
                        "--json", check=1, env=no_ed25519)
    assert json_lines(r.stdout)[-1]["error"]["code"] == "NOT_FOUND"  # authenticated, then run


def test_bad_config_is_refused_naming_file_line_and_key(cluster, tmp_path):
    conf = os.path.join(str(tmp_path), "bad.conf")
    with open(conf, "w") as f:
        f.write("[agent]\nnode_id = n1\nwrokers = 4\n")
    binary = os.path.join(BUILD, "nodeagent")
    r = subprocess.run([binary, "-c", conf], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{conf}:3: [agent] wrokers: unknown key" in r.stderr


def test_sigterm_is_graceful_and_sighup_reopens_the_log(cluster, tmp_path):
    log = os.path.join(str(tmp_path), "agent-file.log")
    agent = cluster.agent(extra_config=f"[agent]\nlog_file = {log}\n").start()
    os.rename(log, log + ".1")
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: os.path.exists(log) and "log reopened" in open(log).read(), 10,
             "a new log file after SIGHUP")
    assert agent.stop(signal.SIGTERM) == 0
    assert "agent stopped" in open(log).read()
    assert not os.path.exists(agent.socket)


def test_sigterm_during_a_bus_outage_still_stops(cluster):
    """Leaving the consumer group needs the bus; without it the agent stops anyway."""
    agent = cluster.agent().start()
    cluster.devbus.outage(True)
    wait_for(lambda: not agent.checks()["bus"], 30, "the agent to see the bus down")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(60) == 0  # bounded by agent.c's flush: never waits for the bus
    assert "agent stopped" in agent.logs()
    cluster.devbus.outage(False)


def test_valgrind_start_100_requests_stop_has_no_definite_leak(cluster, tmp_path):
    vglog = os.path.join(str(tmp_path), "valgrind.log")
    agent = cluster.agent()
    agent.start(wrapper=["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                         "--error-exitcode=99", f"--log-file={vglog}"], wait_healthy=False)
    agent.wait_healthy(timeout=120)
    template = envelope_template(cluster, tmp_path, "reboot", UUID)
    # Signed ones run; as many unsigned ones are refused.
    paths = []
    for i in range(100):
        payload = with_request_id(template, str(uuid.uuid4()))
        cluster.send_signed(payload)
        p = os.path.join(str(tmp_path), f"v{i}.bin")
        with open(p, "wb") as f:
            f.write(payload)
        paths.append(p)
    cluster.kcat_produce(f"{cluster.prefix}.node.n1", paths)
    wait_idle(agent, 200, timeout=300)
    code = agent.stop(signal.SIGTERM, timeout=120)
    summary = open(vglog).read()
    assert code == 0, summary[-3000:]
    assert "definitely lost: 0 bytes" in summary or "All heap blocks were freed" in summary, summary[-3000:]
