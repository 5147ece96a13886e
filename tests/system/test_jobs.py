"""Jobs with recorded phases (agent/ops/jobs.h): a job that waits holds no thread, a replay
resumes at the recorded phase instead of redoing finished steps."""
import json
import os
import re
import signal
import subprocess
import uuid

from harness import wait_for
from nodes import Node, S

NODECTL = os.path.join(os.environ.get("NODEAGENT_BUILD", "build/release"), "nodectl")


def send(cluster, *args):
    """Sends one request without waiting for its result."""
    return subprocess.Popen([NODECTL, "--bootstrap", cluster.devbus.bootstrap, "--prefix",
                             cluster.prefix, "--node", "n1", *args], stdout=subprocess.DEVNULL)


def create_args(images, inst, name, request_id):
    return ["create", "--uuid", inst, "--name", name, "--tenant", "t1", "--vcpus", "1",
            "--memory-mib", "128", "--disk-gib", "1", "--image-id", "guest", "--image-url",
            images.url + "guest.qcow2", "--image-sha256", images.guest_sha, "--image-format",
            "qcow2", "--hostname", name, "--request-id", request_id]


def metric(node, name):
    _, body = node.agent.get("/metrics")
    text = body.decode() if isinstance(body, bytes) else body
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def terminal(cluster, request_id):
    return [e for e in cluster.events(request_id=request_id) if e["kind"] in ("DONE", "FAILED")]


def test_a_parked_job_holds_no_thread_while_ten_creates_finish(cluster, virtenv, images):
    # One worker thread: a parked job that held it would keep every create from running.
    node = Node(cluster, virtenv, images, extra_config="[agent]\nworkers = 1\n")
    node.start(env={"NODEAGENT_FAILPOINTS": "reboot.run=park"})
    inst, last = node.create("parked", ip="10.0.0.5")
    assert last["kind"] == "DONE", last
    assert send(cluster, "reboot", inst, "--request-id", "parked-reboot").wait(60) == 0
    wait_for(lambda: 'msg="job waiting" request_id="parked-reboot"' in node.agent.logs(), 120,
             "the reboot parked at its phase boundary")
    assert metric(node, "nodeagent_jobs_waiting") == 1
    assert metric(node, "nodeagent_operations_running") == 0

    insts = [str(uuid.uuid4()) for _ in range(10)]
    senders = [send(cluster, *create_args(images, i, f"p{n}", f"p-{n}"))
               for n, i in enumerate(insts)]
    for s in senders:
        assert s.wait(60) == 0

    def all_ended():
        evs = [e for e in cluster.events() if e["request_id"].startswith("p-")]
        ended = {e["request_id"] for e in evs if e["kind"] in ("DONE", "FAILED")}
        return evs if len(ended) == 10 else None

    evs = wait_for(all_ended, 600, "ten creates' terminal events", interval=1)
    failed = [(e["request_id"], e.get("message")) for e in evs if e["kind"] == "FAILED"]
    assert not failed
    for i in insts:
        assert node.state(i) == S["running"]
    # Still parked: no terminal event, and neither the operations handed to workers nor
    # the queue count it.
    assert 'msg="job waiting" request_id="parked-reboot"' in node.agent.logs()
    assert not terminal(cluster, "parked-reboot")
    assert metric(node, "nodeagent_operations_running") == 0
    assert metric(node, "nodeagent_queue_depth") == 0
    assert metric(node, "nodeagent_jobs_waiting") == 1
    _, body = node.agent.get_json(f"/v1/instances/{inst}")
    assert body["state"] == "RUNNING"


def test_a_create_killed_after_its_disk_phase_does_not_make_its_disk_again(node):
    node.start(env={"NODEAGENT_FAILPOINTS": "create.define=kill"})
    inst = str(uuid.uuid4())
    assert send(node.cluster, *create_args(node.images, inst, "vm1", "phased")).wait(60) == 0
    wait_for(lambda: node.agent.proc.poll() is not None, 120, "the agent killed at the failpoint")
    assert node.agent.proc.returncode == -signal.SIGKILL
    config_drive = os.path.join(node.dir(inst), "disk.config")
    made = os.stat(config_drive)

    node.start()
    done = wait_for(lambda: terminal(node.cluster, "phased"), 180, "the create's terminal event")
    assert [e["kind"] for e in done] == ["DONE"], done
    assert node.state(inst) == S["running"]
    logs = node.agent.logs()
    assert 'msg="resuming job" request_id="phased"' in logs
    assert "phase=define restart=redo" in logs
    # The disk phase's config drive is the one the guest runs with: not written again.
    again = os.stat(config_drive)
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    # The image was fetched once (before the kill), not again.
    assert logs.count('step="fetching image guest"') == 1


def test_a_rebuild_killed_before_its_swap_resumes_there_and_runs_the_guest_again(node):
    """Killed once the domain is redefined on the new disk (the guest is off): the restarted
    agent takes up the rebuild at its swap phase, with the base image and the guest's
    power state the job recorded, and starts the guest it found running."""
    node.start(env={"NODEAGENT_FAILPOINTS": "rebuild.swap=kill"})
    inst, last = node.create("vmr", ip="10.0.0.9")
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    node.wait_ready(inst, "vmr", "10.0.0.9")
    url, sha = node.images.variant_guest("guest-rebuild.qcow2")
    assert send(node.cluster, "rebuild", inst, "--image-id", "guest-r", "--image-url", url,
                "--image-sha256", sha, "--image-format", "qcow2",
                "--request-id", "rebuild-once").wait(60) == 0
    wait_for(lambda: node.agent.proc.poll() is not None, 180, "the agent killed at the failpoint")
    assert node.agent.proc.returncode == -signal.SIGKILL
    assert node.state(inst) == S["shutoff"]  # redefined on the new disk, not started
    assert os.path.exists(os.path.join(node.dir(inst), "disk.next"))

    node.start()
    done = wait_for(lambda: terminal(node.cluster, "rebuild-once"), 180,
                    "the rebuild's terminal event")
    assert [(e["kind"], e.get("state")) for e in done] == [("DONE", "RUNNING")], done
    logs = node.agent.logs()
    assert "phase=swap restart=redo" in logs
    assert logs.count('step="writing the new root disk"') == 1  # not made again
    assert not os.path.exists(os.path.join(node.dir(inst), "disk.next"))
    qi = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json",
                                    os.path.join(node.dir(inst), "disk")],
                                   capture_output=True, text=True, check=True).stdout)
    assert qi["backing-filename"].endswith("/" + sha)
    assert node.state(inst) == S["running"]
    node.wait_ready(inst, "vmr", "10.0.0.9", count=2)
