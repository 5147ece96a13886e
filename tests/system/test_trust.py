"""Trust on the bus (DESIGN.md section 12, docs/protocol.md "Signatures"): requests count
only when the control plane signed them for this node recently; refusals cannot be passed
off as someone else's answer; an agent without a control plane key does not start.  Real
agents on the devbus; messages are made and signed in Python (tests/system/trust.py) as a
control plane, a node or an attacker would, and sent with kcat."""
import os
import re
import sqlite3
import subprocess
import time
import uuid


from harness import BUILD, wait_for
import trust

START = 12              # Envelope.start
MIGRATION_FINISH = 42   # Envelope.migration_finish


def envelope(request_id, target, body_field, body, sent_at_ms=None, reply_to=""):
    sent = int(time.time() * 1000) if sent_at_ms is None else sent_at_ms
    return (trust.lendelim(1, request_id) + trust.field(2, 0, trust.varint(sent))
            + (trust.lendelim(3, reply_to) if reply_to else b"")
            + (trust.lendelim(4, target) if target else b"")
            + trust.lendelim(body_field, body))


def start_request(request_id, target="n1", **kw):
    return envelope(request_id, target, START, trust.lendelim(1, str(uuid.uuid4())), **kw)


def send(cluster, tmp_path, payload, headers=(), topic=None):
    path = os.path.join(str(tmp_path), f"msg-{uuid.uuid4().hex}")
    with open(path, "wb") as f:
        f.write(payload)
    subprocess.run(["kcat", "-P", "-b", cluster.devbus.bootstrap, "-t",
                    topic or f"{cluster.prefix}.node.n1", *headers, path],
                   check=True, timeout=60, capture_output=True)


def signed(key, purpose, payload):
    return ["-H", f"{trust.SIGNATURE_HEADER}={trust.sign(key, purpose, payload)}"]


def about(cluster, rid):
    """Every event that names rid, as answer or as unverified."""
    return [e for e in cluster.events()
            if e.get("request_id") == rid or e.get("unverified_request_id") == rid]


def refusal(cluster, rid):
    """The one event about rid, which must be an unverified refusal; its error."""
    evs = wait_for(lambda: about(cluster, rid), 30, f"an event about {rid}")
    assert len(evs) == 1, evs
    ev = evs[0]
    assert ev["kind"] == "FAILED" and ev.get("request_id", "") == "", ev
    assert ev["unverified_request_id"] == rid, ev
    return ev["error"]


def recorded(agent, rid):
    status, _ = agent.get(f"/v1/requests/{rid}")
    return status == 200


def metric(agent, name):
    _, text = agent.get("/metrics")
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_requests_count_only_signed_by_the_control_plane_for_this_node_and_fresh(cluster,
                                                                                  tmp_path):
    agent = cluster.agent(extra_config="[bus]\nmax_request_age = 10\n").start()
    cp = cluster.authority.key
    n2_key, n2_cert = cluster.authority.node("n2")
    stranger = trust.keygen(os.path.join(str(tmp_path), "stranger.key"))
    now = int(time.time() * 1000)

    # A request the control plane signed for n1 just now is taken.
    ok = start_request("ok-1")
    send(cluster, tmp_path, ok, signed(cp, "request", ok))
    evs = wait_for(lambda: [e for e in cluster.events(request_id="ok-1")
                            if e["kind"] in ("DONE", "FAILED")], 30, "the answer to ok-1")
    assert evs[0]["error"]["code"] == "NOT_FOUND"  # no such instance: taken, and answered
    assert recorded(agent, "ok-1")

    with open(n2_cert, "rb") as f:
        cert = f.read()
    cases = {
        "unsigned": (start_request("bad-unsigned"), []),
        "node-key": (start_request("bad-node-key"), None),
        "stranger": (start_request("bad-stranger"), None),
        "other-node": (start_request("bad-other-node", target="n2"), None),
        "no-target": (start_request("bad-no-target", target=""), None),
        "stale": (start_request("bad-stale", sent_at_ms=now - 3600_000), None),
        "future": (start_request("bad-future", sent_at_ms=now + 600_000), None),
        "peer-context": (start_request("bad-peer-context"), None),
        "mangled": (start_request("bad-mangled"), None),
    }
    for name, (payload, headers) in cases.items():
        if name == "node-key":
            headers = signed(n2_key, "request", payload)
        elif name == "stranger":
            headers = signed(stranger, "request", payload)
        elif name == "peer-context":
            # n2's key, certified and all, signing as a peer: still no control-plane request.
            headers = trust.node_headers(n2_key, cert, "peer", payload)
        elif name == "mangled":
            headers = signed(cp, "request", payload + b"\x00")
        elif headers is None:
            headers = signed(cp, "request", payload)
        send(cluster, tmp_path, payload, headers)

    for name, rid in [("unsigned", "bad-unsigned"), ("node-key", "bad-node-key"),
                      ("stranger", "bad-stranger"), ("peer-context", "bad-peer-context"),
                      ("mangled", "bad-mangled")]:
        err = refusal(cluster, rid)
        assert err["code"] == "UNAUTHENTICATED", (name, err)
    for rid, field, words in [("bad-other-node", "target_node", "for node `n2`"),
                              ("bad-no-target", "target_node", "this is `n1`"),
                              ("bad-stale", "sent_at_ms", "max_request_age = 10 s"),
                              ("bad-future", "sent_at_ms", "in the future")]:
        err = refusal(cluster, rid)
        assert err["code"] == "INVALID_ARGUMENT" and err["field"] == field, (rid, err)
        assert words in err["message"], (rid, err)
    for rid in ("bad-unsigned", "bad-node-key", "bad-stranger", "bad-other-node", "bad-no-target",
                "bad-stale", "bad-future", "bad-peer-context", "bad-mangled"):
        assert not recorded(agent, rid), rid
    assert agent.logs().count("executing request") == 1
    assert metric(agent, 'nodeagent_requests_total{kind="start",result="unauthenticated"}') == 5

    # A replay within the window is the same request: its recorded answer again.
    send(cluster, tmp_path, ok, signed(cp, "request", ok))
    wait_for(lambda: [e for e in cluster.events(request_id="ok-1") if e.get("replayed")], 30,
             "the recorded answer re-published")

    # Once the request id is forgotten (its intent pruned), the same bytes are too old.
    agent.stop()
    with sqlite3.connect(os.path.join(agent.state_dir, "state.db")) as db:
        assert db.execute("DELETE FROM intents WHERE request_id = 'ok-1'").rowcount == 1
    sent_at = now  # ok-1 was made before `now` was read
    wait_for(lambda: time.time() * 1000 > sent_at + 10_000 + 1000, 30, "ok-1 to age past 10 s")
    agent.start()
    before = len(cluster.events(request_id="ok-1"))
    send(cluster, tmp_path, ok, signed(cp, "request", ok))
    evs = wait_for(lambda: [e for e in about(cluster, "ok-1") if e.get("unverified_request_id")],
                   30, "the stale replay refused")
    assert evs[0]["error"]["field"] == "sent_at_ms", evs
    assert len(cluster.events(request_id="ok-1")) == before
    assert not recorded(agent, "ok-1")


def test_a_refusal_never_answers_someone_elses_request(cluster, tmp_path):
    """An attacker who can write to the topic sends messages carrying a legitimate request's
    id before and after it: the request gets exactly one terminal event with its id, its own,
    and the attacker's get an empty request_id."""
    cluster.agent().start()
    cp = cluster.authority.key
    rid = "legit-1"
    forged = start_request(rid)
    send(cluster, tmp_path, forged)                        # unsigned
    send(cluster, tmp_path, b"\x0a\x07legit-1\xff\xff")   # undecodable, with the id inside
    legit = start_request(rid)
    send(cluster, tmp_path, legit, signed(cp, "request", legit))
    wait_for(lambda: [e for e in cluster.events(request_id=rid) if e["kind"] in ("DONE", "FAILED")],
             30, "the legitimate answer")
    elsewhere = start_request(rid, target="n2")  # signed, but for another node
    send(cluster, tmp_path, elsewhere, signed(cp, "request", elsewhere))
    wait_for(lambda: len(about(cluster, rid)) >= 4, 30, "every message answered")
    evs = about(cluster, rid)
    answers = [e for e in evs if e.get("request_id") == rid]
    terminal = [e for e in answers if e["kind"] in ("DONE", "FAILED")]
    assert len(terminal) == 1, answers
    assert terminal[0]["error"]["code"] == "NOT_FOUND"  # the real outcome of `start`
    assert [e["kind"] for e in answers] == ["ACCEPTED", terminal[0]["kind"]]
    refused = [e for e in evs if e.get("unverified_request_id") == rid]
    assert len(refused) == 2 and all(e.get("request_id", "") == "" for e in refused), evs
    # The undecodable one is refused unsigned before it is read: it names no request.
    unauthenticated = [e for e in cluster.events()
                       if e.get("error", {}).get("code") == "UNAUTHENTICATED"]
    assert len(unauthenticated) == 2, unauthenticated
    assert sorted(e.get("unverified_request_id", "") for e in unauthenticated) == ["", rid]


def test_peer_messages_need_the_senders_certified_key(cluster, tmp_path):
    agent = cluster.agent().start()
    n2_key, n2_cert = cluster.authority.node("n2")
    with open(n2_cert, "rb") as f:
        cert = f.read()
    body = (trust.lendelim(1, str(uuid.uuid4())) + trust.lendelim(2, "n2")
            + trust.field(3, 0, trust.varint(1)))
    # Signed by n2 as a peer: authenticated (and then not implemented yet).
    good = envelope("peer-ok", "n1", MIGRATION_FINISH, body, reply_to="n2")
    send(cluster, tmp_path, good, trust.node_headers(n2_key, cert, "peer", good))
    # Signed by n2 but claiming to come from n3 (in the envelope, or in the body); signed by
    # the control plane; no certificate.
    lie = envelope("peer-lie", "n1", MIGRATION_FINISH, body, reply_to="n3")
    send(cluster, tmp_path, lie, trust.node_headers(n2_key, cert, "peer", lie))
    other_body = (trust.lendelim(1, str(uuid.uuid4())) + trust.lendelim(2, "n3")
                  + trust.field(3, 0, trust.varint(1)))
    inner = envelope("peer-inner", "n1", MIGRATION_FINISH, other_body, reply_to="n2")
    send(cluster, tmp_path, inner, trust.node_headers(n2_key, cert, "peer", inner))
    cp = envelope("peer-cp", "n1", MIGRATION_FINISH, body, reply_to="n2")
    send(cluster, tmp_path, cp, signed(cluster.authority.key, "request", cp))
    bare = envelope("peer-bare", "n1", MIGRATION_FINISH, body, reply_to="n2")
    send(cluster, tmp_path, bare, signed(n2_key, "peer", bare))

    evs = wait_for(lambda: [e for e in cluster.events(request_id="peer-ok")
                            if e["kind"] == "FAILED"], 30, "the peer message answered")
    # Authenticated, so answered by its handler: no migration waits for it here.
    assert evs[0]["error"]["code"] == "NOT_FOUND", evs
    assert "no migration" in evs[0]["error"]["message"], evs
    assert "reply_to `n3` is not `n2`, whose certificate" in refusal(cluster, "peer-lie")["message"]
    assert "body's node `n3` is not `n2`" in refusal(cluster, "peer-inner")["message"]
    assert refusal(cluster, "peer-cp")["code"] == "UNAUTHENTICATED"
    assert "no nodeagent-certificate header" in refusal(cluster, "peer-bare")["message"]
    assert not recorded(agent, "peer-lie")


def check_config(agent):
    return subprocess.run([os.path.join(BUILD, "nodeagent"), "-c", agent.config,
                           "--check-config"], capture_output=True, text=True, timeout=30)


def test_an_agent_without_keys_refuses_to_start_unless_told_insecure(cluster, tmp_path):
    no_key = cluster.agent("n1", extra_config="[bus]\ncontrol_plane_key = /nonexistent/cp.pub\n")
    r = check_config(no_key)
    assert r.returncode == 1 and "[bus] control_plane_key `/nonexistent/cp.pub`" in r.stderr

    # Not set at all: the message names the key and the way out.
    with open(no_key.config) as f:
        text = f.read().replace("control_plane_key = /nonexistent/cp.pub\n", "")
    with open(no_key.config, "w") as f:
        f.write(text)
    r = check_config(no_key)
    assert r.returncode == 1 and "[bus] control_plane_key is not set" in r.stderr, r.stderr
    no_key.start(wait_healthy=False)
    assert no_key.proc.wait(30) == 1
    assert "control_plane_key is not set" in no_key.logs()

    # Keys anyone may read or change are refused.
    weak = cluster.agent("n2")
    key, cert = cluster.authority.node("n2")
    os.chmod(key, 0o640)
    r = check_config(weak)
    assert r.returncode == 1 and "must not be readable by its group or others" in r.stderr
    os.chmod(key, 0o600)
    os.chmod(cert, 0o666)
    r = check_config(weak)
    assert r.returncode == 1 and "must not be writable by its group or others" in r.stderr
    os.chmod(cert, 0o644)
    assert check_config(weak).returncode == 0

    # A certificate for another node, or for another key, or expired.
    for node_id, validity, words in [
            ("n9", {}, "is for node `n9`, not for this node `n2`"),
            ("n2", {"not_before_ms": 1000, "not_after_ms": 2000}, "expired")]:
        trust.write_cert(cert, trust.issue(cluster.authority.key, node_id, key, **validity))
        r = check_config(weak)
        assert r.returncode == 1 and words in r.stderr, r.stderr
    other = trust.keygen(os.path.join(str(tmp_path), "other.key"))
    trust.write_cert(cert, trust.issue(cluster.authority.key, "n2", other))
    r = check_config(weak)
    assert r.returncode == 1 and "not this node's key" in r.stderr, r.stderr

    # insecure_unsigned: starts, says so at start, in /healthz and in /metrics, and takes
    # unsigned requests.
    insecure = cluster.agent("n3", extra_config="[bus]\ninsecure_unsigned = true\n").start()
    assert "INSECURE" in insecure.logs()
    _, health = insecure.get_json("/healthz")
    assert health["insecure_unsigned"] is True and health["warnings"], health
    assert metric(insecure, "nodeagent_insecure_unsigned") == 1
    send(cluster, tmp_path, start_request("open-1", target="n3"),
         topic=f"{cluster.prefix}.node.n3")
    wait_for(lambda: cluster.events(request_id="open-1"), 30, "the unsigned request taken")


def test_first_start_makes_the_node_key_and_names_the_certificate_to_issue(cluster, tmp_path):
    """A new node: the agent makes its key, says which certificate it needs, and starts once
    the control plane (nodectl) has issued it."""
    state = os.path.join(str(tmp_path), "fresh-state")
    agent = cluster.agent("n4", extra_config=(
        f"[bus]\ncontrol_plane_key = {cluster.authority.public}\n"
        f"[network]\ntunnel_endpoint = 127.0.0.44\n"))
    agent.state_dir = state
    with open(agent.config) as f:
        text = re.sub(r"^state_dir = .*$", f"state_dir = {state}", f.read(), flags=re.M)
    with open(agent.config, "w") as f:
        f.write(text)
    agent.start(wait_healthy=False)
    assert agent.proc.wait(30) == 1
    key, pub = os.path.join(state, "node.key"), os.path.join(state, "node.pub")
    assert os.stat(key).st_mode & 0o777 == 0o600
    logs = agent.logs()
    assert "generated this node's key" in logs
    assert f"nodectl node-cert issue --node-id n4 --public-key {pub} --endpoint 127.0.0.44" in logs
    cert = os.path.join(state, "node.cert")
    r = cluster.nodectl("node-cert", "issue", "--node-id", "n4", "--public-key", pub,
                        "--endpoint", "127.0.0.44", "--cert-out", cert, check=0)
    assert "n4" in r.stdout
    agent.start()
    assert "identity loaded" in agent.logs()
    # The key was made once: the certificate still matches it after a restart.
    agent.stop()
    agent.start()
