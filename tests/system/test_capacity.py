"""Capacity: the node's inventory, claims and traits as the agent reports them to the real
OpenStack Placement (Debian's placement-api, noauth2, SQLite) and to the bus, checked
against the host itself (nproc, /proc/meminfo, statvfs, /proc/cpuinfo, KSM's sysfs), and
the admission check that refuses what does not fit.

Three views must agree at every step: the agent's own (GET /v1/capacity), the latest
CapacityReport on <prefix>.capacity (nodectl capacity-reports), and Placement's."""
import json
import os
import signal
import subprocess
import uuid

import pytest

from harness import BUILD, wait_for
from nodes import S
from placement import ConflictProxy, HostileServer, bump_provider

FLAVOR = {"VCPU": 1, "MEMORY_MB": 256, "DISK_GB": 1}  # nodes.Node.create's flavor
KSM = "/sys/kernel/mm/ksm"


# --- the host, read by the test itself ------------------------------------------------------

def online_cpus():
    n = 0
    with open("/sys/devices/system/cpu/online") as f:
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
    assert n == int(subprocess.run(["nproc", "--all"], capture_output=True, text=True,
                                   check=True).stdout) or n == os.cpu_count()
    return n


def mem_total_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    raise AssertionError("no MemTotal")


def mem_total_mib():
    return mem_total_kib() // 1024


def disk_total_gib(state_dir):
    st = os.statvfs(os.path.join(state_dir, "instances"))
    return st.f_blocks * st.f_frsize >> 30


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


# --- the three views ---------------------------------------------------------------------------

def view(agent):
    status, body = agent.get_json("/v1/capacity")
    assert status == 200, body
    return body


def bus_reports(cluster, timeout=60):
    r = cluster.nodectl("capacity-reports", "--from-beginning", "--to-end", "--json",
                        "--timeout", timeout, check=0, timeout=timeout + 30)
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def used(report):
    return {i["resource_class"]: i["used"] for i in report["inventories"]}


def inventories(report):
    keys = ("total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio")
    return {i["resource_class"]: {k: i[k] for k in keys} for i in report["inventories"]}


def provider(placement, name="n1"):
    rps = placement.get(f"/resource_providers?name={name}")["resource_providers"]
    assert len(rps) == 1, rps
    return rps[0]["uuid"]


def placement_inventories(placement, rp):
    got = placement.get(f"/resource_providers/{rp}/inventories")["inventories"]
    return {rc: {k: v for k, v in inv.items()} for rc, inv in got.items()}


def placement_allocations(placement, rp):
    got = placement.get(f"/resource_providers/{rp}/allocations")["allocations"]
    return {c: a["resources"] for c, a in got.items()}


def placement_usages(placement, rp):
    return placement.get(f"/resource_providers/{rp}/usages")["usages"]


def agree(cluster, agent, placement=None, managed=False, timeout=10):
    """Waits until the bus's latest report and Placement agree with the agent's view (the
    reports go out within a second of a change), and returns the view."""
    def same():
        v = view(agent)
        reports = bus_reports(cluster, timeout=1)
        if not reports:
            return None
        last = reports[-1]
        if (used(last) != used(v) or last["instance_count"] != v["instance_count"]
                or inventories(last) != inventories(v) or last["traits"] != v["traits"]):
            return None
        if placement:
            rp = v["placement"]["provider_uuid"]
            if placement_usages(placement, rp) != (used(v) if managed else
                                                   {rc: 0 for rc in used(v)}):
                return None
        return v
    return wait_for(same, timeout, "the bus report and Placement to agree with the agent")


def instance_uuids(agent):
    _, body = agent.get_json("/v1/instances")
    items = body["instances"] if isinstance(body, dict) else body
    return {i["uuid"] for i in items}


# --- tests -----------------------------------------------------------------------------------

def test_placement_and_the_bus_hold_the_host_inventory_and_traits(cluster, placement):
    cfg = (f"[capacity]\nreserved_vcpus = 1\nvcpu_allocation_ratio = 3.0\n"
           f"reserved_memory_mb = 1024\nmemory_allocation_ratio = 1.5\nreserved_disk_gb = 2\n"
           f"custom_traits = CUSTOM_RACK_A1, CUSTOM_SSD\n"
           f"[image_cache]\nmax_size_gib = 3\n[agent]\nmin_free_mib = 1500\n"
           f"[placement]\nendpoint = {placement.url}\ntoken = admin\n")
    agent = cluster.agent(extra_config=cfg).start()
    v = wait_for(lambda: (lambda v: v if v["placement"]["ok"] else None)(view(agent)), 30,
                 "the agent's first Placement sync")
    rp = provider(placement)
    assert rp == v["placement"]["provider_uuid"]

    want = {
        "VCPU": {"total": online_cpus(), "reserved": 1, "min_unit": 1,
                 "max_unit": online_cpus(), "step_size": 1, "allocation_ratio": 3.0},
        "MEMORY_MB": {"total": mem_total_mib(), "reserved": 1024, "min_unit": 1,
                      "max_unit": mem_total_mib(), "step_size": 1, "allocation_ratio": 1.5},
        # reserved_disk_gb, the image cache's quota, the host's RAM for managed saves and
        # min_free_mib, each in whole GiB rounded up.
        "DISK_GB": {"total": disk_total_gib(agent.state_dir),
                    "reserved": 2 + 3 + -(-mem_total_kib() // (1 << 20)) + 2, "min_unit": 1,
                    "max_unit": disk_total_gib(agent.state_dir), "step_size": 1,
                    "allocation_ratio": 1.0},
    }
    assert placement_inventories(placement, rp) == want
    assert inventories(v) == want
    vcpu = next(i for i in v["inventories"] if i["resource_class"] == "VCPU")
    assert vcpu["capacity"] == int((online_cpus() - 1) * 3.0) == vcpu["free"]

    traits = set(placement.get(f"/resource_providers/{rp}/traits")["traits"])
    assert traits == set(v["traits"])
    flags = cpu_flags()
    for flag, trait in [("avx2", "HW_CPU_X86_AVX2"), ("sse2", "HW_CPU_X86_SSE2"),
                        ("aes", "HW_CPU_X86_AESNI"), ("avx512f", "HW_CPU_X86_AVX512F")]:
        assert (trait in traits) == (flag in flags), (flag, trait)
    assert {"COMPUTE_NODE", "COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_NET_VIF_MODEL_VIRTIO",
            "CUSTOM_RACK_A1", "CUSTOM_SSD"} <= traits

    agree(cluster, agent, placement)
    assert "nodeagent_placement_in_sync 1\n" in agent.get("/metrics")[1]
    report = bus_reports(cluster)[-1]
    assert report["node_id"] == "n1" and report["instance_count"] == 0
    assert {c["name"] for c in report["health"]["checks"]} == {"bus", "database", "libvirt", "ovs",
                                                             "orphans"}

    # The provider's uuid is the node's for good: a restart finds the same one.
    agent.stop()
    agent.start()
    wait_for(lambda: view(agent)["placement"]["ok"], 30, "the sync after the restart")
    assert view(agent)["placement"]["provider_uuid"] == rp
    assert len(placement.get("/resource_providers")["resource_providers"]) == 1

    text = cluster.nodectl("capacity", env={"NODECTL_ADMIN_SOCKET": agent.socket}, check=0)
    assert "VCPU" in text.stdout and "in sync" in text.stdout and rp in text.stdout


def test_usage_follows_instances_in_the_reports_and_in_placement(node, placement):
    node.extra_config = (f"[placement]\nendpoint = {placement.url}\ntoken = admin\n"
                         f"manage_allocations = true\n")
    node.start()
    wait_for(lambda: view(node.agent)["placement"]["ok"], 30, "the first Placement sync")
    rp = provider(placement)
    zero = {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}
    assert used(agree(node.cluster, node.agent, placement, managed=True)) == zero

    def claimed_after_accepted(request_id, want_used):
        """The first report showing want_used came after the request's ACCEPTED event (both
        stamped by the agent's clock); how long after is printed, not gated (bench/)."""
        accepted = [e for e in node.cluster.events(request_id=request_id)
                    if e["kind"] == "ACCEPTED"][0]["time_ms"]
        first = next(r for r in bus_reports(node.cluster) if used(r) == want_used)
        assert first["time_ms"] >= accepted, (first["time_ms"], accepted)
        print(f"{request_id}: capacity report {first['time_ms'] - accepted} ms after ACCEPTED")

    a, last = node.create("cap-a", extra=("--request-id", "cap-create-a"))
    assert last["kind"] == "DONE", last
    v = agree(node.cluster, node.agent, placement, managed=True)
    assert used(v) == FLAVOR and v["instance_count"] == 1
    assert placement_allocations(placement, rp) == {a: FLAVOR}
    claimed_after_accepted("cap-create-a", FLAVOR)

    b, last = node.create("cap-b", ip="10.0.0.6")
    assert last["kind"] == "DONE", last
    two = {k: 2 * n for k, n in FLAVOR.items()}
    assert used(agree(node.cluster, node.agent, placement, managed=True)) == two
    assert placement_allocations(placement, rp) == {a: FLAVOR, b: FLAVOR}

    node.wait_ready(b, "cap-b", "10.0.0.6")
    last = node.request("resize", b, "--vcpus", 2, "--memory-mib", 768, "--disk-gib", 3,
                        "--request-id", "cap-resize-b", check=0)
    assert last["kind"] == "DONE", last
    bigger = {"VCPU": 2, "MEMORY_MB": 768, "DISK_GB": 3}
    want = {k: FLAVOR[k] + bigger[k] for k in FLAVOR}
    assert used(agree(node.cluster, node.agent, placement, managed=True)) == want
    assert placement_allocations(placement, rp) == {a: FLAVOR, b: bigger}

    last = node.request("delete", a, "--request-id", "cap-delete-a", check=0)
    assert last["kind"] == "DONE", last
    assert used(agree(node.cluster, node.agent, placement, managed=True)) == bigger
    assert placement_allocations(placement, rp) == {b: bigger}
    claimed_after_accepted("cap-delete-a", bigger)

    assert node.request("delete", b, check=0)["kind"] == "DONE"
    v = agree(node.cluster, node.agent, placement, managed=True)
    assert used(v) == zero and v["instance_count"] == 0
    assert placement_allocations(placement, rp) == {}


def test_a_delete_removes_only_this_providers_part_of_consumers_the_agent_wrote(node, placement):
    node.extra_config = (f"[placement]\nendpoint = {placement.url}\ntoken = admin\n"
                         f"manage_allocations = true\n")
    node.start()
    wait_for(lambda: view(node.agent)["placement"]["ok"], 30, "the first Placement sync")
    rp = provider(placement)

    # A second provider, as the other end of a migration would be.
    other = str(uuid.uuid4())
    status, body = placement.request("POST", "/resource_providers",
                                     {"name": "other-node", "uuid": other})
    assert status == 200, (status, body)
    status, body = placement.request("PUT", f"/resource_providers/{other}/inventories", {
        "resource_provider_generation": 0,
        "inventories": {rc: {"total": 64} for rc in FLAVOR}})
    assert status == 200, (status, body)

    inst, last = node.create("cap-two", extra=("--request-id", "cap-two-create"))
    assert last["kind"] == "DONE", last
    agree(node.cluster, node.agent, placement, managed=True)
    assert placement_allocations(placement, rp) == {inst: FLAVOR}

    # The instance's consumer also holds a part on the other provider.
    cur = placement.get(f"/allocations/{inst}")
    status, body = placement.request("PUT", f"/allocations/{inst}", {
        "allocations": {rp: {"resources": FLAVOR}, other: {"resources": {"VCPU": 2}}},
        "consumer_generation": cur["consumer_generation"], "project_id": cur["project_id"],
        "user_id": cur["user_id"], "consumer_type": "INSTANCE"})
    assert status == 204, (status, body)
    # A consumer the agent never wrote, on this node's provider.
    stranger = str(uuid.uuid4())
    status, body = placement.request("PUT", f"/allocations/{stranger}", {
        "allocations": {rp: {"resources": {"VCPU": 1}}}, "consumer_generation": None,
        "project_id": "p-stranger", "user_id": "u-stranger", "consumer_type": "INSTANCE"})
    assert status == 204, (status, body)

    last = node.request("delete", inst, "--request-id", "cap-two-delete", check=0)
    assert last["kind"] == "DONE", last
    wait_for(lambda: inst not in placement_allocations(placement, rp), 30,
             "this provider's part of the deleted instance's allocation removed")

    # The other provider's part is intact, and so is the consumer's project and user.
    got = placement.get(f"/allocations/{inst}")
    assert {p: a["resources"] for p, a in got["allocations"].items()} == {other: {"VCPU": 2}}
    assert (got["project_id"], got["user_id"]) == (cur["project_id"], cur["user_id"])
    # The stranger is untouched (a sync has run since it appeared), and the agent says so.
    assert placement_allocations(placement, rp) == {stranger: {"VCPU": 1}}
    got = placement.get(f"/allocations/{stranger}")
    assert (got["project_id"], got["user_id"]) == ("p-stranger", "u-stranger")
    assert stranger in node.agent.logs()


def test_a_full_node_refuses_with_no_capacity_and_takes_it_after_a_delete(node):
    # Room for exactly two of Node.create's 256 MiB guests: 600 MiB to sell.
    node.extra_config = f"[capacity]\nreserved_memory_mb = {mem_total_mib() - 600}\n"
    node.start()
    a, last = node.create("full-a")
    assert last["kind"] == "DONE", last
    b, last = node.create("full-b", ip="10.0.0.6")
    assert last["kind"] == "DONE", last

    c = str(uuid.uuid4())
    last = node.create("full-c", ip="10.0.0.7", inst=c, check=1)[1]
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "NO_CAPACITY", last
    msg = last["error"]["message"]
    assert f"instance {c} does not fit on node n1" in msg, msg
    assert "it needs 1 VCPU, 256 MEMORY_MB and 1 DISK_GB" in msg, msg
    assert "88 MEMORY_MB" in msg, msg  # 600 - 2 x 256
    # Nothing was made for it.
    assert not node.has_domain(c)
    assert not os.path.exists(node.dir(c))
    assert instance_uuids(node.agent) == {a, b}
    assert used(view(node.agent))["MEMORY_MB"] == 512
    _, metrics = node.agent.get("/metrics")
    assert 'nodeagent_capacity{resource_class="MEMORY_MB"} 600\n' in metrics
    assert 'nodeagent_capacity_used{resource_class="MEMORY_MB"} 512\n' in metrics
    assert "nodeagent_placement_in_sync" not in metrics  # no Placement configured

    # A resize that does not fit is refused before the guest is touched.
    last = node.request("resize", b, "--vcpus", 1, "--memory-mib", 512, "--disk-gib", 1,
                        check=1)
    assert last["error"]["code"] == "NO_CAPACITY", last
    assert "it needs 1 VCPU, 512 MEMORY_MB and 1 DISK_GB" in last["error"]["message"], last
    assert node.state(b) == S["running"]
    assert node.dom(b).maxMemory() == 256 * 1024

    assert node.request("delete", a, check=0)["kind"] == "DONE"
    last = node.create("full-c", ip="10.0.0.7", inst=c, check=0)[1]
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    assert instance_uuids(node.agent) == {b, c}
    assert used(agree(node.cluster, node.agent))["MEMORY_MB"] == 512


def test_claims_are_right_after_a_kill_and_after_a_failed_create(node, placement):
    node.extra_config = (f"[placement]\nendpoint = {placement.url}\ntoken = admin\n"
                         f"manage_allocations = true\n")
    node.start(env={"NODEAGENT_FAILPOINTS": "create.disk_made=kill"})
    inst = str(uuid.uuid4())
    sender = subprocess.Popen(
        [os.path.join(BUILD, "nodectl"), "--bootstrap", node.cluster.devbus.bootstrap,
         "--prefix", node.cluster.prefix, "--node", "n1", "create", "--uuid", inst, "--name",
         "killed", "--tenant", "t1", "--vcpus", "1", "--memory-mib", "256", "--disk-gib", "1",
         "--image-id", "guest", "--image-url", node.images.url + "guest.qcow2",
         "--image-sha256", node.images.guest_sha, "--image-format", "qcow2", "--hostname",
         "killed", "--request-id", "cap-killed"], stdout=subprocess.DEVNULL)
    assert sender.wait(60) == 0
    wait_for(lambda: node.agent.proc.poll() is not None, 120, "the agent killed at the failpoint")
    assert node.agent.proc.returncode == -signal.SIGKILL

    node.start()
    wait_for(lambda: [e for e in node.cluster.events(request_id="cap-killed")
                      if e["kind"] == "DONE"], 180, "the create to complete after the restart")
    v = agree(node.cluster, node.agent, placement, managed=True)
    assert used(v) == FLAVOR and v["instance_count"] == 1
    rp = v["placement"]["provider_uuid"]
    assert placement_allocations(placement, rp) == {inst: FLAVOR}

    # A create that fails (its image's sha256 is wrong) releases what it claimed.
    bad = str(uuid.uuid4())
    last = node.create("badimg", inst=bad, sha="0" * 64, check=1)[1]
    assert last["kind"] == "FAILED" and last["error"]["code"] == "IMAGE", last
    v = agree(node.cluster, node.agent, placement, managed=True)
    assert used(v) == FLAVOR and v["instance_count"] == 1
    assert placement_allocations(placement, rp) == {inst: FLAVOR}

    # Claims are rebuilt from the state store: a restart counts the same.
    node.agent.stop()
    node.start()
    v = agree(node.cluster, node.agent, placement, managed=True)
    assert used(v) == FLAVOR and v["instance_count"] == 1
    assert placement_allocations(placement, rp) == {inst: FLAVOR}


def test_placement_down_then_back_empty_converges_without_an_agent_restart(cluster, placement):
    port = int(placement.url.rsplit(":", 1)[1])
    agent = cluster.agent(extra_config=(f"[capacity]\nreport_interval = 1\ncustom_traits = "
                                        f"CUSTOM_BACK\n[placement]\nendpoint = {placement.url}\n"
                                        f"token = admin\ntimeout = 2\n")).start()
    wait_for(lambda: view(agent)["placement"]["ok"], 30, "the first Placement sync")
    rp = provider(placement)
    want_inv = placement_inventories(placement, rp)

    placement.stop()
    v = wait_for(lambda: (lambda v: v if not v["placement"]["ok"] else None)(view(agent)), 30,
                 "the agent to notice Placement is gone")
    assert placement.url in v["placement"]["error"], v["placement"]
    assert "placement report failed; retrying" in agent.logs()
    assert "nodeagent_placement_in_sync 0\n" in agent.get("/metrics")[1]
    # Everything else goes on.
    assert agent.checks()["bus"] and agent.checks()["database"]
    wait_for(lambda: bus_reports(cluster, timeout=10), 60, "a capacity report on the bus")
    # A few more failed retries, seen by a server on Placement's port that hangs up on each.
    gone = HostileServer("close", port=port)
    try:
        wait_for(lambda: len(gone.requests) >= 3, 60, "three more failed retries")
    finally:
        gone.stop()
    assert agent.proc.poll() is None

    # Back on the same address, but with an empty database: everything is written again.
    placement.start(port=port, fresh=True)
    wait_for(lambda: view(agent)["placement"]["ok"], 90, "the agent to converge again")
    assert provider(placement) == rp
    assert placement_inventories(placement, rp) == want_inv
    assert "CUSTOM_BACK" in placement.get(f"/resource_providers/{rp}/traits")["traits"]

    # Another writer replaces the provider's traits: the next report puts them back.
    gen = placement.get(f"/resource_providers/{rp}")["generation"]
    status, _ = placement.request("PUT", f"/resource_providers/{rp}/traits",
                                  {"resource_provider_generation": gen,
                                   "traits": ["COMPUTE_NODE"]})
    assert status == 200
    wait_for(lambda: "CUSTOM_BACK" in placement.get(f"/resource_providers/{rp}/traits")["traits"],
             30, "the agent to restore its traits")


def test_generation_conflicts_are_retried(cluster, placement):
    proxy = ConflictProxy(placement, {
        r"/resource_providers/[0-9a-f-]+/inventories": bump_provider,
        r"/resource_providers/[0-9a-f-]+/traits": bump_provider,
    })
    try:
        agent = cluster.agent(extra_config=f"[placement]\nendpoint = {proxy.url}\n"
                                           f"token = admin\n").start()
        wait_for(lambda: view(agent)["placement"]["ok"], 30, "the sync through the proxy")
    finally:
        proxy.stop()
    assert len(proxy.intruded) == 2, proxy.intruded
    puts = [(p.rsplit("/", 1)[1], s) for m, p, s in proxy.seen
            if m == "PUT" and "/traits/" not in p]
    assert puts == [("inventories", 409), ("inventories", 200), ("traits", 409),
                    ("traits", 200)], puts
    assert "placement report failed" not in agent.logs()
    rp = provider(placement)
    assert placement_inventories(placement, rp) == inventories(view(agent))
    assert set(placement.get(f"/resource_providers/{rp}/traits")["traits"]) == \
        set(view(agent)["traits"])


@pytest.mark.parametrize("mode,says", [
    ("html", "HTTP 502"), ("truncated", "transfer closed"), ("badjson", "not JSON"), ("500", "HTTP 500"),
    ("hang", "did not answer within 2000 ms"), ("close", "Empty reply"), ("big", "larger than"),
])
def test_hostile_placement_answers_are_logged_and_retried(cluster, mode, says):
    server = HostileServer(mode)
    try:
        agent = cluster.agent(extra_config=f"[placement]\nendpoint = {server.url}\n"
                                           f"timeout = 2\n").start()
        v = wait_for(lambda: (lambda v: v if v["placement"]["error"] else None)(view(agent)),
                     30, "the first failed sync")
        assert says in v["placement"]["error"], v["placement"]
        assert not v["placement"]["ok"]
        # Retried, and the agent keeps answering meanwhile.
        wait_for(lambda: len(server.requests) >= 2, 30, "a retry")
        status, _ = agent.get_json("/v1/status")  # answered (the admin socket's 5 s bound)
        assert status in (200, 503)
        assert f'msg="placement report failed; retrying" endpoint={server.url}' in agent.logs()
        assert agent.proc.poll() is None
    finally:
        server.stop()


def test_ksm_shares_the_pages_of_identical_guests(node):
    with open(f"{KSM}/run") as f:
        run_before = f.read().strip()
    node.extra_config = "[memory]\nksm = true\n[capacity]\nreport_interval = 2\n"
    try:
        node.start()
        with open(f"{KSM}/run") as f:
            assert f.read().strip() == "1"
        guests = []
        for i in range(3):
            inst, last = node.create(f"ksm{i}", ip=f"10.0.0.{20 + i}")
            assert last["kind"] == "DONE", last
            guests.append(inst)
            assert "<nosharepages/>" not in node.dom(inst).XMLDesc()
        for i, inst in enumerate(guests):
            node.wait_ready(inst, f"ksm{i}", f"10.0.0.{20 + i}")

        def sharing():
            with open(f"{KSM}/pages_sharing") as f:
                n = int(f.read())
            return n if n > 0 else None
        wait_for(sharing, 300, "KSM to share pages", interval=1)

        def reported():
            r = bus_reports(node.cluster, timeout=1)
            ms = r[-1].get("memory_sharing", {}) if r else {}
            return r[-1] if ms.get("ksm_enabled") and ms.get("pages_sharing", 0) > 0 else None
        report = wait_for(reported, 60, "a report with shared pages")
        ms = report["memory_sharing"]
        assert ms["saved_bytes"] == ms["pages_sharing"] * os.sysconf("SC_PAGE_SIZE")
        v = view(node.agent)
        assert v["memory_sharing"]["ksm_enabled"]
    finally:
        with open(f"{KSM}/run", "w") as f:
            f.write(run_before)
