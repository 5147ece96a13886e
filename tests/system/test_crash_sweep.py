"""The crash sweep (issue 11, item 6): every operation, killed with SIGKILL at every failpoint
it passes, then the agent restarted; the world afterwards must be exactly what one run of
the operation leaves.

The failpoints are not listed here: a trace run of each operation (the agent started with
NODEAGENT_FAILPOINTS=trace) logs every failpoint the request passes, and that run's world
is the one each crashed run must reach.  A cell of the matrix is one (operation,
failpoint): from the same starting state as the trace run, the request is sent to an agent
whose NODEAGENT_FAILPOINTS holds <failpoint>=kill@<the cell's request id> (every armed cell
is in it, each for its own request, so the agent that replays one cell is already armed
for the next); once it died of the SIGKILL it is started again and the cell passes when

  - the request has exactly one terminal event on the bus (not counting re-publications
    of a request delivered twice, replayed = true), of the kind and state the trace run's
    had, and its intent is finished the same way;
  - the world is the trace run's: libvirt's domains (state, managed save), the instance
    directories (entries, owner = the instance's uid, the disk's backing image and size),
    the OVS ports, the agent's records and claims, the image cache's users, and
    Placement's allocations, with nothing else anywhere.

Cost: one stack for the whole sweep (devbus, a private libvirt + OVS host, Placement, one
agent restarted once per cell, its bus session short so that the next agent's join to the
request topic's group does not wait out the killed one's for long); the power operations
share one guest and are chained so that each cell leaves the state the next one needs
(pause, resume, pause...); create and delete alternate on one instance; rebuild and resize
get a fresh instance per cell (a disk only grows); the smallest flavor of nodes.Node;
guests are never waited on to boot.  The run prints how long it took.

`-m "not crash_sweep"` leaves it out; `make check` and `.ci/run` run it.
"""
import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

from harness import wait_for
from nodes import S

pytestmark = pytest.mark.crash_sweep

POWER = {v: k.upper() for k, v in S.items()}
STOP_TIMEOUT_S = 2  # the guest has rarely booted far enough to act on ACPI: forced off soon
WORLD_TIMEOUT_S = 120  # Placement syncs and reconciliation are asynchronous; TCG is slow


# --- the world ---------------------------------------------------------------------------

def placement_provider(placement, name):
    rps = placement.get(f"/resource_providers?name={name}")["resource_providers"]
    return rps[0]["uuid"] if len(rps) == 1 else None


def ovs_iface_ids(node):
    out = json.loads(node.env.vsctl("--format=json", "--columns=external_ids", "list",
                                    "Interface"))
    ids = []
    for (ext,) in out["data"]:
        pairs = dict(ext[1]) if ext[0] == "map" else {}
        if "iface-id" in pairs:
            ids.append(pairs["iface-id"])
    return sorted(ids)


def disk_info(path):
    r = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        return "unreadable"
    qi = json.loads(r.stdout)
    return {"backing": os.path.basename(qi.get("backing-filename", ""))[:12],
            "size_gib": qi["virtual-size"] >> 30}


def world(node, placement, rp, names):
    """Everything an operation may leave behind, with the test's uuids named by role."""
    def n(u):
        return names.get(u, f"unknown:{u}")

    domains = {}
    for d in node.conn.listAllDomains():
        try:
            domains[n(d.UUIDString())] = {"state": POWER.get(d.state()[0], d.state()[0]),
                                          "managed_save": bool(d.hasManagedSaveImage())}
        except Exception as e:  # noqa: BLE001 - a domain going away while read
            domains[n(d.UUIDString())] = f"unreadable: {e}"
    _, body = node.agent.get_json("/v1/instances")
    records = {}
    uids = {}
    for i in body["instances"]:
        uids[i["uuid"]] = i["uid"]
        records[n(i["uuid"])] = {"state": i["state"], "desired": i["desired_state"],
                                 "task": i["task"], "image": i["image_sha256"][:12],
                                 "flavor": i["flavor"]}
    files = {}
    root = os.path.join(node.env.state_dir, "instances")
    for d in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, d)
        entries = sorted(os.listdir(path))
        # The directory is root's; what the guest opens belongs to the instance's uid.
        guest_files = [e for e in entries if e in ("disk", "disk.config")]
        files[n(d)] = {"entries": entries, "dir_owned_by_root": os.stat(path).st_uid == 0,
                       "guest_files_owned_by_its_uid": bool(guest_files) and all(
                           os.stat(os.path.join(path, e)).st_uid == uids.get(d)
                           for e in guest_files),
                       "disk": disk_info(os.path.join(path, "disk"))
                       if "disk" in entries else None}
    _, cap = node.agent.get_json("/v1/capacity")
    used = {i["resource_class"]: i["used"] for i in cap["inventories"]}
    _, imgs = node.agent.get_json("/v1/images")
    users = {i["sha256"][:12]: sorted(n(u) for u in i["users"]) for i in imgs["images"]}
    allocs = placement.get(f"/resource_providers/{rp}/allocations")["allocations"]
    return {"domains": domains, "records": records, "files": files, "used": used,
            "image_users": users,
            "ovs_ports": [names.get(p, f"unknown:{p}") for p in ovs_iface_ids(node)],
            "placement": {n(c): a["resources"] for c, a in allocs.items()}}


def settled(w):
    """The asynchronous parts have caught up: Placement holds what the agent claims, no
    task runs, and libvirt agrees with every record."""
    claimed = {}
    for a in w["placement"].values():
        for rc, v in a.items():
            claimed[rc] = claimed.get(rc, 0) + v
    if {rc: v for rc, v in w["used"].items() if v} != claimed:
        return False
    for name, r in w["records"].items():
        d = w["domains"].get(name)
        want = {"RUNNING": "RUNNING", "PAUSED": "PAUSED", "STOPPED": "SHUTOFF",
                "SUSPENDED": "SHUTOFF"}.get(r["state"])
        if r["task"] or not isinstance(d, dict) or d["state"] != want:
            return False
    return True


def diff(want, got):
    out = []
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            out.append(f"{k}: want {want.get(k)!r}, got {got.get(k)!r}")
    return "; ".join(out)


# --- the sweep ---------------------------------------------------------------------------

class Sweep:
    def __init__(self, node, placement):
        self.node = node
        self.placement = placement
        self.rp = None
        self.names = {}
        self.seq = 0
        self.rows = {}  # op -> [(failpoint, ok, why)]
        self.plan = []  # "failpoint=kill@request_id" of every cell armed
        self.started_with = None
        self.rebuild_url, self.rebuild_sha = node.images.variant_guest("guest-rebuild.qcow2")

    # the agent: tracing, and armed with the failpoint of every cell planned so far
    def spec(self):
        return ",".join(["trace"] + self.plan)

    def start_agent(self):
        self.started_with = self.spec()
        self.node.start(env={"NODEAGENT_FAILPOINTS": self.started_with})

    def arm(self, op, failpoints):
        """The request ids of op's cells, one per failpoint, armed from the next start."""
        rids = [self.rid(op) for _ in failpoints]
        self.plan += [f"{fp}=kill@{rid}" for fp, rid in zip(failpoints, rids)]
        return rids

    def disarm(self, failpoint, rid):
        entry = f"{failpoint}=kill@{rid}"
        if entry in self.plan:
            self.plan.remove(entry)

    def rearm(self):
        if self.started_with != self.spec():
            assert self.node.agent.stop() == 0, "the agent did not stop cleanly"
            self.start_agent()

    # instances
    def name(self, inst, role):
        self.names[inst] = role
        self.names[str(uuid.uuid5(uuid.NAMESPACE_OID, inst))] = f"{role}-port"

    def create_args(self, inst):
        return self.node.create_args("sweep", inst, ip="10.0.0.20",
                                     port=str(uuid.uuid5(uuid.NAMESPACE_OID, inst)))

    def request(self, *args):
        """A request through the tracing agent, which must end DONE."""
        last = self.node.request(*args, check=0)
        assert last.get("kind") == "DONE", last
        return last

    def rid(self, op):
        self.seq += 1
        return f"sweep-{op.replace('_', '-')}-{self.seq}"

    def failpoints_passed(self, rid):
        seen = []
        pat = re.compile(r'msg="failpoint passed" request_id="?' + re.escape(rid)
                         + r'"?\b.* failpoint=(\S+)')
        for line in self.node.agent.logs().splitlines():
            m = pat.search(line)
            if m and m.group(1) not in seen:
                seen.append(m.group(1))
        return seen

    def wait_killed_or_done(self, rid, failpoint, timeout=300):
        """Until the agent died, or (its failpoint not reached) the request ended; the bus
        is read only now and then, the process all the time."""
        deadline = time.monotonic() + timeout
        next_read = time.monotonic() + 10
        while self.node.agent.proc.poll() is None:
            if time.monotonic() > next_read:
                if self.terminal(rid):
                    return
                next_read = time.monotonic() + 10
            assert time.monotonic() < deadline, f"the agent was not killed at {failpoint}"
            time.sleep(0.1)

    def terminal(self, rid):
        events = self.node.terminal_events(rid)
        if not events:
            return None
        e = events[0]
        return {"n": len(events), "kind": e["kind"], "state": e.get("state"),
                "code": (e.get("error") or {}).get("code")}

    def intent(self, rid):
        _, body = self.node.agent.get_json(f"/v1/requests/{rid}")
        return body.get("phase")

    def world(self):
        return world(self.node, self.placement, self.rp, self.names)

    def settled_world(self):
        return wait_for(lambda: (lambda w: w if settled(w) else None)(self.world()),
                        WORLD_TIMEOUT_S, "the world to settle (Placement, tasks, libvirt)")

    # one operation
    def trace(self, op, args):
        """Runs the operation once on the tracing agent: its failpoints and what it leaves."""
        rid = self.rid(op)
        self.node.send(*args, request_id=rid)
        end = wait_for(lambda: self.terminal(rid), 300, f"{op}'s terminal event")
        world = self.settled_world()
        return {"failpoints": self.failpoints_passed(rid), "end": end,
                "intent": self.intent(rid), "world": world}

    def cell(self, op, args, failpoint, rid, want):
        """Kills the operation at failpoint; True when the world is the trace run's."""
        why = ""
        try:
            self.rearm()
            self.node.send(*args, request_id=rid)
            self.wait_killed_or_done(rid, failpoint)
            killed = self.node.agent.proc.returncode == -signal.SIGKILL
            self.disarm(failpoint, rid)  # its replay must get through
            if killed:
                self.start_agent()
            else:
                why = f"{failpoint} was not reached"
            try:
                got = wait_for(lambda: (lambda w: w if w == want["world"] else None)(
                    self.world()), WORLD_TIMEOUT_S, "the trace run's world")
            except AssertionError:
                got = self.world()
            if not why and got != want["world"]:
                why = "world: " + diff(want["world"], got)
            # The world is whole once the request has ended: its terminal event is out (or
            # in the outbox, about to be), and no second one can follow.
            end = wait_for(lambda: self.terminal(rid), 300, f"{op}'s terminal event")
            if not why and end != want["end"]:
                why = f"terminal events: want {want['end']}, got {end}"
            if not why and self.intent(rid) != want["intent"]:
                why = f"intent: want {want['intent']}, got {self.intent(rid)}"
        except AssertionError as e:
            why = f"{type(e).__name__}: {str(e)[:300]}"
            self.disarm(failpoint, rid)
            if self.node.agent.proc.poll() is not None:
                self.start_agent()
        self.rows.setdefault(op, []).append((failpoint, not why, why))
        return not why

    # the matrix
    def report(self):
        lines = []
        width = max(len(fp) for row in self.rows.values() for fp, _, _ in row)
        for op, row in self.rows.items():
            lines.append(f"{op}:")
            for fp, ok, why in row:
                lines.append(f"  {fp:<{width}}  {'pass' if ok else 'FAIL  ' + why}")
        cells = [ok for row in self.rows.values() for _, ok, _ in row]
        passed = sum(cells)
        lines.append(f"crash sweep: {len(cells)} cells, {passed} passed, "
                     f"{len(cells) - passed} failed")
        return "\n".join(lines)


def sweep_create_and_delete(sw):
    """create and delete alternate on one instance: each create cell leaves the instance the
    next delete cell deletes."""
    inst = str(uuid.uuid4())
    sw.name(inst, "subject")
    want_create = sw.trace("create", sw.create_args(inst))
    want_delete = sw.trace("delete", ["delete", inst])
    creates = list(zip(want_create["failpoints"], sw.arm("create", want_create["failpoints"])))
    deletes = list(zip(want_delete["failpoints"], sw.arm("delete", want_delete["failpoints"])))
    while creates or deletes:
        inst = str(uuid.uuid4())
        sw.name(inst, "subject")
        if creates:
            sw.cell("create", sw.create_args(inst), *creates.pop(0), want_create)
        else:
            sw.request(*sw.create_args(inst))
        if deletes:
            sw.cell("delete", ["delete", inst], *deletes.pop(0), want_delete)
        else:
            sw.request("delete", inst)
    return want_create, want_delete


def sweep_on_fresh_instances(sw, op, args_for):
    """rebuild and resize change the disk for good: each cell gets an instance of its own."""
    def fresh():
        inst = str(uuid.uuid4())
        sw.name(inst, "subject")
        sw.request(*sw.create_args(inst))
        return inst

    inst = fresh()
    want = sw.trace(op, args_for(inst))
    sw.request("delete", inst)
    for fp, rid in zip(want["failpoints"], sw.arm(op, want["failpoints"])):
        inst = fresh()
        sw.cell(op, args_for(inst), fp, rid, want)
        sw.request("delete", inst)


def sweep_power(sw):
    """The power operations on one guest, in pairs whose cells chain: pause leaves what
    resume needs and resume what pause needs; stop and start likewise; suspend is undone by
    resume, and reboot and console_log leave the guest as they found it."""
    inst = str(uuid.uuid4())
    sw.name(inst, "subject")
    sw.request(*sw.create_args(inst))

    def ops(first, first_args, second, second_args):
        want1 = sw.trace(first, first_args)
        want2 = sw.trace(second, second_args)
        a = list(zip(want1["failpoints"], sw.arm(first, want1["failpoints"])))
        b = list(zip(want2["failpoints"], sw.arm(second, want2["failpoints"])))
        while a or b:
            if a:
                sw.cell(first, first_args, *a.pop(0), want1)
            else:
                sw.request(*first_args)
            if b:
                sw.cell(second, second_args, *b.pop(0), want2)
            else:
                sw.request(*second_args)

    stop = ["stop", inst, "--shutdown-timeout", STOP_TIMEOUT_S]
    ops("pause", ["pause", inst], "resume", ["resume", inst])
    ops("stop", stop, "start", ["start", inst])
    ops("suspend", ["suspend", inst], "resume_suspended", ["resume", inst])
    for op, args in (("reboot", ["reboot", inst]), ("console_log", ["console-log", inst])):
        want = sw.trace(op, args)
        for fp, rid in zip(want["failpoints"], sw.arm(op, want["failpoints"])):
            sw.cell(op, args, fp, rid, want)
    sw.request("delete", inst)


def test_every_operation_killed_at_every_failpoint_it_passes_leaves_one_runs_world(
        node, placement, capsys):
    t0 = time.monotonic()
    node.extra_config = (f"[placement]\nendpoint = {placement.url}\ntoken = admin\n"
                         f"manage_allocations = true\n"
                         f"[hypervisor]\nstop_timeout = {STOP_TIMEOUT_S}\n"
                         # Each cell's SIGKILL leaves a member in the request topic's group
                         # that the next agent's join waits out: keep that wait short.
                         f"[bus.rdkafka]\nsession.timeout.ms = 3000\n"
                         f"heartbeat.interval.ms = 500\n")
    sw = Sweep(node, placement)
    sw.start_agent()
    sw.rp = wait_for(lambda: placement_provider(placement, node.node_id), 60,
                     "the node's resource provider in Placement")
    try:
        sweep_create_and_delete(sw)
        sweep_on_fresh_instances(sw, "rebuild", lambda i: [
            "rebuild", i, "--image-id", "guest-r", "--image-url", sw.rebuild_url,
            "--image-sha256", sw.rebuild_sha, "--image-format", "qcow2"])
        sweep_on_fresh_instances(sw, "resize", lambda i: [
            "resize", i, "--vcpus", "1", "--memory-mib", "320", "--disk-gib", "2"])
        sweep_power(sw)
    finally:
        report = sw.report()
        with capsys.disabled():
            print(f"\n{report}\ncrash sweep took {time.monotonic() - t0:.0f} s")
    cells = [ok for row in sw.rows.values() for _, ok, _ in row]
    assert cells and all(cells), report
