"""The admin API's optional TCP listener ([admin] listen): only /healthz and /metrics for
anyone; the rest only with the bearer token of [admin] token_file; the unix socket serves
everything.  Real agent and devbus on loopback; the requests are plain HTTP over TCP."""
import http.client
import json
import os
import socket
import subprocess

from harness import BUILD

UUID = "0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e"
PRIVATE = ("/v1/instances", "/v1/requests/m-1", "/v1/peers", "/v1/status", "/v1/images",
           "/v1/instances/" + UUID)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_get(port, path, headers=None):
    """(status, headers, body) of one GET to the agent's TCP listener."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


def token_file(tmp_path, token, mode=0o600):
    path = os.path.join(str(tmp_path), "admin.token")
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, mode)
    return path


def test_tcp_without_token_serves_only_health_and_metrics(cluster):
    port = free_port()
    agent = cluster.agent(extra_config=f"[admin]\nlisten = 127.0.0.1:{port}\n").start()
    # A recorded request: what /v1/requests/m-1 would give away.
    cluster.nodectl("suspend", UUID, "--request-id", "m-1", "--wait", check=1)

    status, _, text = tcp_get(port, "/metrics")
    assert status == 200 and "nodeagent_requests_total" in text
    status, _, body = tcp_get(port, "/healthz")
    assert status in (200, 503) and "healthy" in json.loads(body)
    for path in PRIVATE:
        status, _, body = tcp_get(port, path)
        assert status == 403, (path, status, body)
        assert "m-1" not in body and "suspend" not in body and "instances\":" not in body
        assert "unix socket" in json.loads(body)["error"]

    # The unix socket still serves everything.
    assert agent.get_json("/v1/instances") == (200, {"instances": []})
    status, req = agent.get_json("/v1/requests/m-1")
    assert status == 200 and req["kind"] == "suspend"


def test_tcp_with_token_file_needs_the_bearer_token(cluster, tmp_path):
    port = free_port()
    token = "t0k3n-" + os.urandom(16).hex()
    path = token_file(tmp_path, token)
    agent = cluster.agent(extra_config=(
        f"[admin]\nlisten = 127.0.0.1:{port}\ntoken_file = {path}\n")).start()
    cluster.nodectl("suspend", UUID, "--request-id", "m-1", "--wait", check=1)

    assert tcp_get(port, "/metrics")[0] == 200
    for path_ in PRIVATE:
        for headers in ({}, {"Authorization": "Bearer wrong-" + token},
                        {"Authorization": "Bearer " + token[:-1]},
                        {"Authorization": "Basic " + token}):
            status, h, body = tcp_get(port, path_, headers)
            assert status == 401, (path_, headers, status, body)
            assert h.get("WWW-Authenticate", "").startswith("Bearer"), h
            assert "m-1" not in body and "suspend" not in body

    good = {"Authorization": "Bearer " + token}
    status, _, body = tcp_get(port, "/v1/requests/m-1", good)
    assert status == 200 and json.loads(body)["kind"] == "suspend"
    status, _, body = tcp_get(port, "/v1/instances", good)
    assert (status, json.loads(body)) == (200, {"instances": []})
    assert tcp_get(port, "/v1/instances/" + UUID, good)[0] == 404  # served: no such instance
    assert tcp_get(port, "/metrics", good)[0] == 200
    # And the unix socket needs no token.
    assert agent.get_json("/v1/requests/m-1")[1]["kind"] == "suspend"


def test_unsafe_token_file_is_refused_at_start(cluster, tmp_path):
    cases = (("group-readable", "x" * 32, 0o640, "mode 0640"),
             ("empty", "", 0o600, "token"),
             ("short", "abc", 0o600, "16 to 4096 characters"),
             ("two lines", "a" * 20 + "\n" + "b" * 20, 0o600, "one line"))
    for what, token, mode, expect in cases:
        path = token_file(tmp_path, token, mode)
        if not token:
            open(path, "w").close()
        agent = cluster.agent(node_id="n-" + what.replace(" ", "-"), extra_config=(
            f"[admin]\nlisten = 127.0.0.1:{free_port()}\ntoken_file = {path}\n"))
        r = subprocess.run([os.path.join(BUILD, "nodeagent"), "-c", agent.config,
                            "--check-config"], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, (what, r.stdout, r.stderr)
        assert f"[admin] token_file `{path}`" in r.stderr and expect in r.stderr, (what, r.stderr)
