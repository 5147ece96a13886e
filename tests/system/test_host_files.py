"""Files a guest cannot turn against root, and uids that are not handed out while their old
guest may linger, on a real libvirtd and QEMU (TCG), through the bus.

Assertions read the world: owners and modes with lstat, the QEMU process's uid in /proc,
libvirt's domains; never only the agent's word."""
import os
import signal
import stat
import subprocess
import uuid

from harness import wait_for
from nodes import S

BUILD = os.environ.get("NODEAGENT_BUILD", "build/release")


def instance_uid(node, inst):
    _, body = node.agent.get_json(f"/v1/instances/{inst}")
    return body["uid"]


def qemu_uid(node, inst):
    return int(node.proc_status(node.qemu_pid(inst))["Uid"].split()[0])


def as_uid(uid):
    """preexec_fn for a child of ours that runs as uid (group nogroup, no supplementary)."""
    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(uid)
    return drop


def assert_guest_files(node, inst, uid):
    """The directory is root's 0711; disk and disk.config are regular files of the guest."""
    st = os.lstat(node.dir(inst))
    assert stat.S_ISDIR(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o711), st
    for name, mode in (("disk", 0o600), ("disk.config", 0o400)):
        st = os.lstat(os.path.join(node.dir(inst), name))
        assert stat.S_ISREG(st.st_mode), (name, st)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, mode), (name, st)
    assert qemu_uid(node, inst) == uid


def planted_target(node, name):
    """A root-owned file with a known owner, mode and content, outside the state dir."""
    path = os.path.join(node.env.dir, name)
    with open(path, "w") as f:
        f.write("precious\n")
    os.chown(path, 0, 0)
    os.chmod(path, 0o644)
    return path


def assert_untouched(path):
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644), (path, st)
    with open(path) as f:
        assert f.read() == "precious\n", path


def test_symlinks_swapped_in_during_a_create_replay_are_not_followed(node):
    """kill -9 after the domain is defined; symlinks to root's files replace console.log,
    disk.config and disk; the replayed create finishes with files of its own and the
    targets keep their owner, mode and content."""
    node.start(env={"NODEAGENT_FAILPOINTS": "create.defined=kill"})
    inst = str(uuid.uuid4())
    sender = subprocess.Popen(
        [os.path.join(BUILD, "nodectl"),
         "--bootstrap", node.cluster.devbus.bootstrap, "--prefix", node.cluster.prefix,
         "--node", "n1", "create", "--uuid", inst, "--name", "vmf1", "--tenant", "t1",
         "--vcpus", "1", "--memory-mib", "256", "--disk-gib", "1", "--image-id", "guest",
         "--image-url", node.images.url + "guest.qcow2", "--image-sha256",
         node.images.guest_sha, "--image-format", "qcow2", "--hostname", "vmf1",
         "--request-id", "create-swapped"], stdout=subprocess.DEVNULL,
        env=dict(os.environ, NODEAGENT_CP_KEY=node.cluster.authority.key))
    assert sender.wait(60) == 0
    wait_for(lambda: node.agent.proc.poll() is not None, 120, "the agent killed at the failpoint")
    assert node.agent.proc.returncode == -signal.SIGKILL

    targets = {}
    for name in ("console.log", "disk.config", "disk"):
        targets[name] = planted_target(node, "target-" + name)
        entry = os.path.join(node.dir(inst), name)
        if os.path.lexists(entry):
            os.unlink(entry)
        os.symlink(targets[name], entry)

    node.start()
    done = wait_for(lambda: [e for e in node.cluster.events(request_id="create-swapped")
                             if e["kind"] in ("DONE", "FAILED") and not e["replayed"]],
                    180, "the create's terminal event")
    assert [e["kind"] for e in done] == ["DONE"], done
    node.wait_ready(inst, "vmf1", "none")
    assert node.state(inst) == S["running"]
    for path in targets.values():
        assert_untouched(path)
    assert_guest_files(node, inst, instance_uid(node, inst))
    st = os.lstat(os.path.join(node.dir(inst), "console.log"))
    assert stat.S_ISREG(st.st_mode), st


def test_a_fifo_as_console_log_does_not_block_the_instance(node):
    node.start()
    inst, last = node.create("vmf2", ip="10.0.0.21")
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last

    log = os.path.join(node.dir(inst), "console.log")
    os.unlink(log)
    os.mkfifo(log, 0o600)
    last = node.request("console-log", inst, check=None, timeout=60)
    assert last.get("kind") in ("DONE", "FAILED"), last
    if last["kind"] == "FAILED":
        assert last["error"]["code"] == "STORAGE", last
        assert "console.log" in last["error"]["message"], last
    else:
        assert not last.get("console_log"), last
    # The instance's lane is free: a later request on it completes.
    last = node.request("pause", inst, check=None, timeout=60)
    assert last.get("kind") == "DONE" and last["state"] == "PAUSED", last
    assert node.state(inst) == S["paused"]


def test_the_instance_directory_is_roots_and_the_guest_cannot_add_to_it(node):
    node.start()
    inst, last = node.create("vmf6", ip="10.0.0.25")
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    uid = instance_uid(node, inst)
    assert_guest_files(node, inst, uid)
    st = os.lstat(os.path.join(node.dir(inst), "console.log"))  # virtlogd's, as root
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0, st
    # The guest's uid can neither add nor replace an entry of its directory.
    evil = os.path.join(node.dir(inst), "console.log.evil")
    probe = subprocess.run(
        ["python3", "-c", "import os, sys; os.symlink('/etc/shadow', sys.argv[1])", evil],
        preexec_fn=as_uid(uid), capture_output=True, text=True)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe
    assert not os.path.lexists(evil)


def test_a_directory_an_older_agent_left_to_the_guest_is_taken_back_at_start(node):
    """An older agent left the directory the guest's (0700, its uid); an escaped QEMU of
    that guest put a symlink to a root file as console.log.  After a restart of the agent,
    starting the guest neither appends to nor relabels the target."""
    node.start()
    inst, last = node.create("vmf7", ip="10.0.0.26")
    assert last["kind"] == "DONE", last
    uid = instance_uid(node, inst)
    last = node.request("stop", inst, "--force", check=None)
    assert last.get("kind") == "DONE" and last["state"] == "STOPPED", last
    assert node.agent.stop() == 0

    d = node.dir(inst)
    os.chown(d, uid, os.stat(d).st_gid)
    os.chmod(d, 0o700)
    target = planted_target(node, "target-old-console")
    plant = subprocess.run(
        ["python3", "-c", "import os, sys; os.unlink(sys.argv[2]); os.symlink(*sys.argv[1:])",
         target, os.path.join(d, "console.log")],
        preexec_fn=as_uid(uid), capture_output=True, text=True)
    assert plant.returncode == 0, plant

    node.start()
    last = node.request("start", inst, check=None)
    assert last.get("kind") == "DONE" and last["state"] == "RUNNING", last
    node.wait_ready(inst, "vmf7", "10.0.0.26")
    assert_untouched(target)
    assert_guest_files(node, inst, uid)


UID = 71000


def test_a_released_uid_is_not_reused_while_a_process_runs_as_it(node):
    node.start(extra_config=f"[instances]\nuid_min = {UID}\nuid_max = {UID}\n")
    a, last = node.create("vmf3", ip="10.0.0.22")
    assert last["kind"] == "DONE", last
    assert instance_uid(node, a) == UID and qemu_uid(node, a) == UID
    # Something still runs as the guest's uid after its domain is gone (say, a QEMU helper
    # that escaped): a child of ours, ended by pid below.
    lingering = subprocess.Popen(["sleep", "600"], preexec_fn=as_uid(UID))
    try:
        last = node.request("delete", a, check=None)
        assert last["kind"] == "DONE", last
        assert not node.has_domain(a)
        assert "nodeagent_guest_uids_quarantined 1\n" in node.agent.get("/metrics")[1]

        b, last = node.create("vmf4", ip="10.0.0.23", check=None)
        assert last.get("kind") == "FAILED", last
        assert last["error"]["code"] == "NO_CAPACITY", last
        assert str(UID) in last["error"]["message"], last
        assert not node.has_domain(b)
    finally:
        lingering.kill()
        lingering.wait(10)

    # Once nothing runs as it, the uid comes out of quarantine (after the agent's next look
    # at /proc, which a refused create asks for).
    def create_once():
        c, last = node.create("vmf5", ip="10.0.0.24", check=None)
        if last.get("kind") == "DONE":
            return c
        assert last.get("kind") == "FAILED" and last["error"]["code"] == "NO_CAPACITY", last
        return None
    c = wait_for(create_once, 180, "a create that gets the released uid", interval=1)
    assert instance_uid(node, c) == UID and qemu_uid(node, c) == UID


def test_a_delete_that_cannot_remove_the_files_keeps_the_uid_held(node):
    node.start(extra_config=f"[instances]\nuid_min = {UID}\nuid_max = {UID}\n")
    a, last = node.create("vmf8", ip="10.0.0.27")
    assert last["kind"] == "DONE", last
    assert instance_uid(node, a) == UID
    # Something in the directory that cannot be removed: a mount point (a tmpfs of ours,
    # unmounted below).
    stuck = os.path.join(node.dir(a), "stuck")
    os.mkdir(stuck)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "nodeagent-test", stuck],
                   check=True)
    try:
        last = node.request("delete", a, check=None)
        assert last["kind"] == "DONE", last
        assert not node.has_domain(a)
        assert os.path.isdir(node.dir(a))
        assert "nodeagent_guest_uids_held 1\n" in node.agent.get("/metrics")[1]
    finally:
        subprocess.run(["umount", stuck], check=True)
    # Even with the files gone now, a held uid is not handed out again without an operator.
    for _ in range(2):
        b, last = node.create("vmf9", ip="10.0.0.28", check=None)
        assert last.get("kind") == "FAILED", last
        assert last["error"]["code"] == "NO_CAPACITY", last
        assert f"{UID} (held)" in last["error"]["message"], last
        assert not node.has_domain(b)
