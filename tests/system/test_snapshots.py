"""Snapshots (issue 13, DESIGN.md section 10): time travel in one booted guest, kill -9 of
the agent during create, revert and delete, and the refusals.

One guest is booted for the whole file (CI is at its time budget): its markers are written
through its console shell, the guest runs from its initramfs (a reboot would lose every
file), and a marker is also written to a sector of its disk, read back with the page cache
dropped.  After every step the store (admin API), libvirt's snapshot metadata and the
overlay's snapshot table (`qemu-img snapshot -l -U`) name the same snapshots."""
import json
import os
import sqlite3
import subprocess
import uuid

from harness import wait_for
from nodes import S
from test_network import Guest

# Each kill is armed for one request id; the agent restarted after it is armed with the
# ones left, so the replayed request runs to its end.
KILLS = {
    # at a phase boundary: the phase after the libvirt call is recorded
    "kc-s2": "snapshot_create.read",     # libvirt took s2, the store has not recorded it
    "kr-s1": "snapshot_revert.bind",     # reverted, the ports not yet waited for
    "kd-s1": "snapshot_delete.read",     # libvirt deleted s1, the store still has it
    # inside the step, once libvirt returned: the restart takes the step again
    "kc-s3": "snapshot_create.taken",
    "kr-s2": "snapshot_revert.reverted",
    "kd-s2": "snapshot_delete.deleted",
}
SECTOR = 2000000  # a sector of the 1 GiB disk beyond the guest's boot partition


def failpoints(left):
    return ",".join(f"{KILLS[rid]}=kill@{rid}" for rid in left)


class TimeMachine:
    def __init__(self, node):
        self.node = node
        self.left = list(KILLS)
        node.start(extra_config="[instances]\nsnapshot_max_per_instance = 3\n",
                   env={"NODEAGENT_FAILPOINTS": failpoints(self.left)})
        self.guest = Guest(node, "tt", "10.0.0.5", 7).ready()
        self.inst = self.guest.inst

    def sh(self, *lines, marks):
        try:
            return self.guest.run(list(lines), marks)
        except AssertionError as e:
            raise AssertionError(f"{e}\nconsole tail:\n{self.node.console(self.inst)[-3000:]}")

    def write(self, mark):
        r = self.sh(f'echo {mark} > /root/mark-{mark}; echo "@@w{mark}=$?@@"',
                    f"printf {mark} | dd of=/dev/vda bs=512 seek={SECTOR} conv=notrunc "
                    f'2>/dev/null; sync; echo "@@d{mark}=$?@@"', marks=[f"w{mark}", f"d{mark}"])
        assert r == {f"w{mark}": 0, f"d{mark}": 0}, r

    def seen(self):
        """The marks present as files, the mark on the disk's sector, and (uptime, boot id)."""
        r = self.sh('for m in A B C; do [ -e /root/mark-$m ]; echo "@@f$m=$?@@"; done',
                    "echo 3 > /proc/sys/vm/drop_caches",
                    f'd=$(dd if=/dev/vda bs=512 skip={SECTOR} count=1 2>/dev/null | head -c1); '
                    'for m in A B C; do [ "$d" = $m ]; echo "@@d$m=$?@@"; done',
                    'echo "@@up=$(cut -d. -f1 /proc/uptime)@@"',
                    # the boot id's digits: a new boot has another
                    'echo "@@boot=1$(tr -dc 0-9 < /proc/sys/kernel/random/boot_id)@@"',
                    marks=["fA", "fB", "fC", "dA", "dB", "dC", "up", "boot"])
        files = "".join(m for m in "ABC" if r[f"f{m}"] == 0)
        disk = "".join(m for m in "ABC" if r[f"d{m}"] == 0)
        return files, disk, (r["up"], r["boot"])

    def request(self, *args, check=None):
        return self.node.request("snapshot", *args, check=check)

    def killed_request(self, rid, *args):
        """The request, sent to an agent armed to die at its failpoint; the agent is started
        again (armed with the other kills only) and the request's terminal event returned."""
        self.node.send("snapshot", *args, request_id=rid)
        self.node.wait_killed(timeout=300)
        self.left.remove(rid)
        self.node.start(env={"NODEAGENT_FAILPOINTS": failpoints(self.left)})
        done = wait_for(lambda: self.node.terminal_events(rid), 300, f"{rid}'s terminal event")
        assert 'msg="resuming job" request_id="%s"' % rid in self.node.agent.logs()
        return done

    # the three views of the snapshots
    def store(self):
        status, body = self.node.agent.get_json(f"/v1/instances/{self.inst}/snapshots")
        assert status == 200, body
        return {s["name"]: s for s in body["snapshots"]}

    def libvirt(self):
        return set(self.node.dom(self.inst).snapshotListNames())

    def overlay(self):
        disk = os.path.join(self.node.dir(self.inst), "disk")
        out = subprocess.run(["qemu-img", "snapshot", "-l", "-U", disk],
                             capture_output=True, text=True, check=True).stdout
        # ID TAG VM-SIZE DATE VM-CLOCK ICOUNT, after two header lines
        return {line.split()[1] for line in out.splitlines()[2:] if line.strip()}

    def vm_state_sizes(self):
        disk = os.path.join(self.node.dir(self.inst), "disk")
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk],
                                         capture_output=True, text=True, check=True).stdout)
        return {s["name"]: s["vm-state-size"] for s in info.get("snapshots", [])}

    def disk_gb_used(self):
        _, body = self.node.agent.get_json("/v1/capacity")
        return {i["resource_class"]: i["used"] for i in body["inventories"]}["DISK_GB"]

    def agree(self, names):
        """Store, libvirt and the overlay name the same snapshots; the store has the sizes
        the overlay's table gives, and the instance's DISK_GB claim counts them."""
        names = set(names)
        store = self.store()
        assert set(store) == names
        assert self.libvirt() == names
        assert self.overlay() == names
        sizes = self.vm_state_sizes()
        assert {n: s["size_bytes"] for n, s in store.items()} == sizes
        snapshot_gb = -(-sum(sizes.values()) // (1 << 30))
        assert self.disk_gb_used() == 1 + snapshot_gb  # its 1 GiB root disk, and the VM states


def sector_is(path, mark):
    """Whether the disk image at path holds mark at SECTOR (read through its backing chain)."""
    r = subprocess.run(["qemu-io", "-r", "-U", "-c", f"read -q -P {ord(mark)} {SECTOR * 512} 1",
                        path], capture_output=True, text=True)
    return r.returncode == 0 and "Pattern verification failed" not in r.stdout


def code(last):
    return last.get("error", {}).get("code")


def test_time_travel_kills_and_refusals_in_one_guest(node):
    tm = TimeMachine(node)
    inst = tm.inst
    qemu = node.qemu_pid(inst)

    tm.write("A")
    _, _, (up_a, boot) = tm.seen()
    last = tm.request("create", inst, "--snapshot", "s1", "--description", "after A")
    assert (last["kind"], last["state"]) == ("DONE", "RUNNING"), last
    tm.agree({"s1"})
    s1 = tm.store()["s1"]
    assert (s1["memory"], s1["state"], s1["description"], s1["parent"]) == \
        (True, "running", "after A", "")
    assert s1["size_bytes"] > 0  # the guest's memory
    assert tm.disk_gb_used() == 2

    tm.write("B")
    done = tm.killed_request("kc-s2", "create", inst, "--snapshot", "s2")
    assert [(e["kind"], e["state"]) for e in done] == [("DONE", "RUNNING")], done
    tm.agree({"s1", "s2"})
    assert tm.store()["s2"]["parent"] == "s1"

    tm.write("C")
    files, disk, _ = tm.seen()
    assert (files, disk) == ("ABC", "C")

    # Back to s1, with the agent killed once libvirt has reverted.
    done = tm.killed_request("kr-s1", "revert", inst, "--snapshot", "s1")
    assert [(e["kind"], e["state"]) for e in done] == [("DONE", "RUNNING")], done
    files, disk, (up, boot_now) = tm.seen()
    assert (files, disk) == ("A", "A")
    # Resumed from s1's moment, not booted again: the same kernel (boot id), whose clock
    # goes on from before s1 (and the files of its initramfs, which a boot would not have).
    assert boot_now == boot
    assert up >= up_a, (up_a, up)
    # libvirt 9.0 reverts a running guest by starting a QEMU with the snapshot loaded: a new
    # process and a new tap, which the revert's bind phase waited for.
    assert node.qemu_pid(inst) != qemu
    assert node.state(inst) == S["running"]
    tm.agree({"s1", "s2"})
    assert tm.store()["s1"]["current"]

    done = tm.killed_request("kr-s2", "revert", inst, "--snapshot", "s2")
    assert [(e["kind"], e["state"]) for e in done] == [("DONE", "RUNNING")], done
    assert "phase=revert restart=redo" in node.agent.logs()
    files, disk, _ = tm.seen()
    assert (files, disk) == ("AB", "B")
    tm.agree({"s1", "s2"})

    # s1 deleted (killed once libvirt deleted it): s2 still reverts.
    done = tm.killed_request("kd-s1", "delete", inst, "--snapshot", "s1")
    assert [e["kind"] for e in done] == ["DONE"], done
    tm.agree({"s2"})
    tm.write("C")
    last = tm.request("revert", inst, "--snapshot", "s2")
    assert (last["kind"], last["state"]) == ("DONE", "RUNNING"), last
    files, disk, _ = tm.seen()
    assert (files, disk) == ("AB", "B")
    assert tm.store()["s2"]["parent"] == ""
    qemu = node.qemu_pid(inst)

    # Refusals: each with its code, nothing changed.
    bad = tm.request("create", inst, "--snapshot", "a/b")
    assert code(bad) == "INVALID_ARGUMENT", bad
    assert bad["error"]["field"] == "snapshot_create.snapshot_name"
    assert code(tm.request("create", inst, "--snapshot", "s2")) == "ALREADY_EXISTS"
    quiesce = tm.request("create", inst, "--snapshot", "q", "--quiesce")
    assert code(quiesce) == "UNSUPPORTED", quiesce
    assert "guest agent" in quiesce["error"]["message"]
    assert code(tm.request("revert", inst, "--snapshot", "nope")) == "NOT_FOUND"
    done = tm.killed_request("kc-s3", "create", inst, "--snapshot", "s3")
    assert [e["kind"] for e in done] == ["DONE"], done
    tm.agree({"s2", "s3"})
    last = tm.request("create", inst, "--snapshot", "s4")
    assert last["kind"] == "DONE", last
    over = tm.request("create", inst, "--snapshot", "s5")
    assert code(over) == "SNAPSHOT_LIMIT", over
    assert "snapshot_max_per_instance" in over["error"]["message"]
    for kind, args in (("rebuild", ["--image-id", "guest", "--image-url",
                                    node.images.url + "guest.qcow2", "--image-sha256",
                                    node.images.guest_sha, "--image-format", "qcow2"]),
                       ("resize", ["--vcpus", "1", "--memory-mib", "256", "--disk-gib", "2"])):
        last = node.request(kind, inst, *args)
        assert code(last) == "HAS_SNAPSHOTS", last
        assert "snapshot" in last["error"]["message"]
    tm.agree({"s2", "s3", "s4"})

    # A clone at s2, and an export at s2 while the guest runs (a snapshot is consistent),
    # both hold s2's disk: mark B on the sector.
    clone = str(uuid.uuid4())
    args = node.create_args("tt-clone", clone, ip="10.0.0.6", vni=7)
    last = node.request("clone", inst, *args[1:], "--snapshot", "s2")
    assert (last["kind"], last["state"]) == ("DONE", "RUNNING"), last
    assert sector_is(os.path.join(node.dir(clone), "disk"), "B")
    assert node.request("delete", clone)["kind"] == "DONE"
    last = node.request("snapshot", "export", inst, "--snapshot", "s2", "--publish")
    assert last["kind"] == "DONE", last
    exported = os.path.join(node.env.state_dir, "images", last["image_export"]["sha256"])
    assert sector_is(exported, "B")
    assert node.qemu_pid(inst) == qemu  # nothing refused or copied touched the guest
    files, _, _ = tm.seen()
    assert files == "AB"

    r = node.cluster.nodectl("--admin-socket", node.agent.socket, "--json", "snapshot", "list",
                             inst, check=0)
    listed = json.loads(r.stdout)["snapshots"]
    assert [(x["name"], x["parent"]) for x in listed] == [("s2", ""), ("s3", "s2"), ("s4", "s3")]

    # A subtree: s2 with its children s3 and s4.
    done = tm.killed_request("kd-s2", "delete", inst, "--snapshot", "s2", "--children")
    assert [e["kind"] for e in done] == ["DONE"], done
    tm.agree(set())
    assert tm.disk_gb_used() == 1

    # A stopped guest's snapshot has its disk only; reverting to it stops the guest, and
    # reverting to a running one runs it again from that moment.
    assert node.request("stop", inst)["state"] == "STOPPED"
    last = tm.request("create", inst, "--snapshot", "off")
    assert (last["kind"], last["state"]) == ("DONE", "STOPPED"), last
    off = tm.store()["off"]
    assert (off["memory"], off["state"], off["size_bytes"]) == (False, "shutoff", 0)
    assert node.request("start", inst)["state"] == "RUNNING"
    node.wait_ready(inst, "tt", "10.0.0.5", count=2)
    tm.write("A")
    assert tm.request("create", inst, "--snapshot", "on")["kind"] == "DONE"
    last = tm.request("revert", inst, "--snapshot", "off")
    assert (last["kind"], last["state"]) == ("DONE", "STOPPED"), last
    assert node.state(inst) == S["shutoff"]
    last = tm.request("revert", inst, "--snapshot", "on")
    assert (last["kind"], last["state"]) == ("DONE", "RUNNING"), last
    files, disk, _ = tm.seen()
    assert (files, disk) == ("A", "A")
    tm.agree({"off", "on"})

    # Deleting the instance removes its snapshots: libvirt's with the domain, the store's
    # rows with its record.
    assert node.request("delete", inst)["kind"] == "DONE"
    assert not node.has_domain(inst)
    db = sqlite3.connect(f"file:{node.agent.state_dir}/state.db?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT count(*) FROM snapshots WHERE instance_uuid = ?",
                          (inst,)).fetchone()[0]
    finally:
        db.close()
    assert rows == 0
    status, _ = node.agent.get(f"/v1/instances/{inst}/snapshots")
    assert status == 404
