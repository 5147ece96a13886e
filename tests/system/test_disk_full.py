"""A full disk (issue 10, item 6), on a real filesystem of limited size: the agent's state
directory is a 48 MiB tmpfs mounted by the test.

- Below [agent] min_free_mib, a create is refused with NO_CAPACITY naming the filesystem.
- When the state store itself cannot be written, the agent neither exits nor acknowledges:
  it holds the request, pauses consumption and says so in /healthz and /metrics; started
  again on the full store, it holds from the start instead of exiting (no crash loop).
- When space returns, it resumes by itself and every held request gets its answer, once.

No libvirt is needed: nothing here reaches a domain."""
import errno
import json
import os
import subprocess
import uuid

import pytest

from harness import wait_for


MIB = 1 << 20


@pytest.fixture
def small_state_dir(cluster):
    path = os.path.join(cluster.workdir, "state-n1")
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0711", "tmpfs", path],
                   check=True)
    try:
        yield path
    finally:
        for agent in cluster.agents.values():
            agent.stop()
        subprocess.run(["umount", path], check=True)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, name, leave):
    """Writes path/name until at most `leave` bytes are free (0: until ENOSPC)."""
    chunk = b"\0" * (64 << 10)
    with open(os.path.join(path, name), "ab") as f:
        try:
            while free_bytes(path) > leave:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


def send(cluster, *args, request_id):
    cluster.nodectl(*args, "--request-id", request_id, check=0)


def create_args(inst, user_data):
    return ("create", "--uuid", inst, "--name", f"vm-{inst[:8]}", "--tenant", "t1", "--vcpus",
            "1", "--memory-mib", "256", "--disk-gib", "1", "--image-id", "guest", "--image-url",
            "http://127.0.0.1:9/guest.qcow2", "--image-sha256", "ab" * 32, "--image-format",
            "qcow2", "--hostname", "vm", "--user-data-file", user_data)


def held_reason(agent):
    """(status, detail) of /healthz while the database check fails, else None."""
    if agent.proc.poll() is not None:
        raise AssertionError(f"the agent exited with {agent.proc.returncode}: "
                             f"{agent.logs()[-2000:]}")
    try:
        status, body = agent.get("/healthz")
    except OSError:
        return None  # not listening yet
    db = next(c for c in json.loads(body)["checks"] if c["name"] == "database")
    return None if db["ok"] else (status, db["detail"])


def metric(agent, name):
    _, body = agent.get("/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def terminal(cluster, request_id):
    return [e for e in cluster.events(request_id=request_id)
            if e["kind"] in ("DONE", "FAILED") and not e["replayed"]]


def test_a_full_disk_refuses_holds_and_recovers(cluster, small_state_dir, tmp_path):
    agent = cluster.agent(extra_config="[agent]\nmin_free_mib = 16\n").start()
    assert agent.state_dir == small_state_dir
    user_data = tmp_path / "user-data"
    user_data.write_bytes(os.urandom(48 << 10).hex()[:60000].encode())

    # Under the watermark: refused, naming the filesystem; the agent carries on.
    fill(small_state_dir, "filler-1", leave=8 * MIB)
    inst = str(uuid.uuid4())
    r = cluster.nodectl(*create_args(inst, user_data), "--wait", "--json", check=1)
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "NO_CAPACITY", last
    assert small_state_dir in last["error"]["message"], last
    assert "min_free_mib" in last["error"]["message"], last
    assert metric(agent, "nodeagent_disk_free_bytes") < 16 * MIB
    assert metric(agent, "nodeagent_disk_min_free_bytes") == 16 * MIB

    # Nothing left: recording a request fails.  Big requests, so that the store must grow.
    fill(small_state_dir, "filler-2", leave=0)
    held = []
    for i in range(3):
        rid = f"held-create-{i}"
        send(cluster, *create_args(str(uuid.uuid4()), user_data), request_id=rid)
        held.append(rid)
        if held_reason(agent):
            break
    send(cluster, "delete", str(uuid.uuid4()), request_id="held-delete")
    held.append("held-delete")
    status, detail = wait_for(lambda: held_reason(agent), 60, "the agent to hold")
    assert status == 503 and "cannot be written" in detail, detail
    assert metric(agent, "nodeagent_store_held") == 1
    assert agent.proc.poll() is None, agent.logs()[-2000:]
    pid = agent.pid()

    # Started again on the full store: it holds from the start, it does not exit.
    agent.stop()
    agent.start(wait_healthy=False)
    status, detail = wait_for(lambda: held_reason(agent), 60, "the restarted agent to hold")
    assert "cannot be written" in detail, detail
    assert agent.proc.poll() is None, agent.logs()[-2000:]
    pid = agent.pid()

    # Space returns: it resumes by itself, and every held request gets one answer.
    os.unlink(os.path.join(small_state_dir, "filler-2"))
    os.unlink(os.path.join(small_state_dir, "filler-1"))
    agent.wait_healthy(timeout=60)
    for rid in held:
        ends = wait_for(lambda: terminal(cluster, rid), 120, f"the answer to {rid}")
        assert len(ends) == 1, ends
    assert terminal(cluster, "held-delete")[0]["kind"] == "DONE"
    assert agent.pid() == pid and agent.proc.poll() is None
    assert metric(agent, "nodeagent_store_held") == 0
