"""scheduler-client's Placement client against a real Placement (placement-api, noauth2):
the C calls run in build/…/tests/unit/test_sched_placement, and what Placement then holds
is read back with Placement's own REST API.  Generation conflicts are made by a proxy that
writes to Placement itself just before the client's PUT; hostile servers check that every
failure is a clean, timely error."""
import os
import re
import subprocess
import uuid

import pytest

from harness import BUILD
from placement import ConflictProxy, HostileServer, bump_consumer, bump_provider

DRIVER = os.path.join(BUILD, "tests", "unit", "test_sched_placement")
UUID = r"[0-9a-f-]{36}"


def run(url, step, timeout=120, **env):
    full = dict(os.environ, NODEAGENT_PLACEMENT_URL=url, NODEAGENT_PLACEMENT_STEP=step)
    full.update({f"NODEAGENT_PLACEMENT_{k.upper()}": str(v) for k, v in env.items()})
    r = subprocess.run([DRIVER], capture_output=True, text=True, env=full, timeout=timeout)
    return r


def run_ok(url, step, **env):
    r = run(url, step, **env)
    assert r.returncode == 0 and f"[       OK ] test_{step}\n" in r.stdout, r.stdout + r.stderr
    return r


def errors(r):
    return re.findall(r"^ERR (\S+) code=(\S+) msg=(.*)$", r.stdout, re.M)


def host_inventory():
    """What sched_inventory_read reports for this host, computed independently."""
    with open("/sys/devices/system/cpu/online") as f:
        vcpus = 0
        for part in f.read().strip().split(","):
            a, _, b = part.partition("-")
            vcpus += int(b or a) - int(a) + 1
    with open("/proc/meminfo") as f:
        mem_mb = int(re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M).group(1)) // 1024
    st = os.statvfs("/")
    disk_gb = st.f_blocks * st.f_frsize >> 30
    return vcpus, mem_mb, disk_gb


def check_provider(placement, rp, name, r, vcpu_ratio=4.0):
    got = placement.get(f"/resource_providers/{rp}")
    assert got["uuid"] == rp and got["name"] == name

    vcpus, mem_mb, disk_gb = host_inventory()
    want = {
        "VCPU": dict(total=vcpus, reserved=0, allocation_ratio=vcpu_ratio),
        "MEMORY_MB": dict(total=mem_mb, reserved=256, allocation_ratio=1.5),
    }
    if disk_gb:
        want["DISK_GB"] = dict(total=disk_gb, reserved=0, allocation_ratio=1.0)
    inv = placement.get(f"/resource_providers/{rp}/inventories")["inventories"]
    assert set(inv) == set(want)
    for rc, w in want.items():
        assert inv[rc]["total"] == w["total"], rc
        assert inv[rc]["reserved"] == w["reserved"], rc
        assert inv[rc]["allocation_ratio"] == pytest.approx(w["allocation_ratio"]), rc
        assert (inv[rc]["min_unit"], inv[rc]["step_size"]) == (1, 1), rc
        assert inv[rc]["max_unit"] == w["total"], rc

    sent = set(re.findall(r"^TRAIT (\S+)$", r.stdout, re.M))
    traits = set(placement.get(f"/resource_providers/{rp}/traits")["traits"])
    assert traits == sent
    assert {"COMPUTE_NODE", "COMPUTE_ARCH_X86_64", "COMPUTE_IMAGE_TYPE_QCOW2",
            "COMPUTE_IMAGE_TYPE_RAW", "COMPUTE_NET_VIF_MODEL_VIRTIO",
            "COMPUTE_GRAPHICS_MODEL_NONE", "CUSTOM_NODEAGENT_TEST", "CUSTOM_RACK_7",
            "HW_CPU_X86_SSE2"} <= traits
    # The custom traits exist in Placement's catalogue now.
    status, _ = placement.request("GET", "/traits/CUSTOM_RACK_7")
    assert status == 204


def test_provider_inventories_traits_allocations(placement):
    rp, name = str(uuid.uuid4()), "node-" + uuid.uuid4().hex[:6]
    r = run_ok(placement.url, "provider", rp=rp, name=name)
    check_provider(placement, rp, name, r)

    # Again, unchanged: nothing is written, the generation stays.
    gen = placement.get(f"/resource_providers/{rp}")["generation"]
    run_ok(placement.url, "provider", rp=rp, name=name)
    assert placement.get(f"/resource_providers/{rp}")["generation"] == gen

    # A changed ratio is sent; a provider renamed by someone else gets its name back.
    status, _ = placement.request("PUT", f"/resource_providers/{rp}", {"name": "renamed"})
    assert status == 200
    r = run_ok(placement.url, "provider", rp=rp, name=name, vcpu_ratio=2.5)
    check_provider(placement, rp, name, r, vcpu_ratio=2.5)

    # Allocations: created, changed (consumer generation), then deleted twice.
    consumer = str(uuid.uuid4())
    run_ok(placement.url, "allocate", rp=rp, consumer=consumer)
    got = placement.get(f"/allocations/{consumer}")
    assert got["allocations"] == {rp: {"resources": {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 1},
                                       "generation": got["allocations"][rp]["generation"]}}
    assert got["project_id"] == "project-a" and got["user_id"] == "user-a"
    assert got["consumer_type"] == "INSTANCE"
    assert got["consumer_generation"] == 2  # two writes: the third put had nothing to change
    usages = placement.get(f"/resource_providers/{rp}/usages")["usages"]
    assert usages == {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 1}

    # Too much for the node: NO_CAPACITY, and the allocation is untouched.
    r = run_ok(placement.url, "no_capacity", rp=rp, consumer=consumer)
    (call, code, msg), = errors(r)
    assert code == "NO_CAPACITY"
    assert f"PUT /allocations/{consumer}: HTTP 409" in msg and "Unable to allocate" in msg
    assert placement.get(f"/resource_providers/{rp}/usages")["usages"]["VCPU"] == 2

    run_ok(placement.url, "deallocate", rp=rp, consumer=consumer)
    assert placement.get(f"/allocations/{consumer}")["allocations"] == {}
    assert placement.get(f"/resource_providers/{rp}/usages")["usages"] == {
        "VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}


def test_name_held_by_another_provider(placement):
    name = "node-" + uuid.uuid4().hex[:6]
    status, _ = placement.request("POST", "/resource_providers",
                                  {"uuid": str(uuid.uuid4()), "name": name})
    assert status == 200
    other = str(uuid.uuid4())
    r = run_ok(placement.url, "name_conflict", rp=other, name=name)
    (call, code, msg), = errors(r)
    assert code == "CONFLICT"
    assert "another resource provider holds this name" in msg
    assert "POST /resource_providers: HTTP 409" in msg
    assert name in msg and "placement.duplicate_name" in msg
    status, _ = placement.request("GET", f"/resource_providers/{other}")
    assert status == 404


def test_generation_conflicts_are_retried(placement):
    rp, name = str(uuid.uuid4()), "node-" + uuid.uuid4().hex[:6]
    proxy = ConflictProxy(placement, {
        rf"/resource_providers/{rp}/inventories": bump_provider,
        rf"/resource_providers/{rp}/traits": bump_provider,
    })
    try:
        r = run_ok(proxy.url, "provider", rp=rp, name=name)
    finally:
        proxy.stop()
    assert len(proxy.intruded) == 2
    puts = [(p.rsplit("/", 1)[1], s) for m, p, s in proxy.seen if m == "PUT" and "/traits/" not in p]
    assert puts == [("inventories", 409), ("inventories", 200), ("traits", 409), ("traits", 200)]
    check_provider(placement, rp, name, r)
    # The other writer's changes are still there: two aggregates.
    assert len(placement.get(f"/resource_providers/{rp}/aggregates")["aggregates"]) == 2

    consumer = str(uuid.uuid4())
    proxy = ConflictProxy(placement, {rf"/allocations/{consumer}": bump_consumer})
    try:
        run_ok(proxy.url, "allocate", rp=rp, consumer=consumer)
    finally:
        proxy.stop()
    assert proxy.intruded == [f"/allocations/{consumer}"]
    puts = [s for m, p, s in proxy.seen if m == "PUT"]
    assert puts == [204, 409, 204]
    got = placement.get(f"/allocations/{consumer}")
    assert got["allocations"][rp]["resources"] == {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 1}
    assert got["consumer_generation"] == 3


@pytest.mark.parametrize("mode,expect,what", [
    ("html", "UNAVAILABLE", "HTTP 502: not a Placement error body: <html>"),
    ("html404", "INTERNAL", "HTTP 404: not a Placement error body: <html>"),
    ("500", "UNAVAILABLE", "HTTP 500: Internal Server Error: The server has either erred"),
    ("truncated", "UNAVAILABLE", "Placement at http://127.0.0.1:"),
    ("badjson", "UNAVAILABLE", "with a body that is not JSON"),
    ("hang", "UNAVAILABLE", "did not answer within 1500 ms"),
    ("close", "UNAVAILABLE", "Placement at http://127.0.0.1:"),
    ("big", "UNAVAILABLE", "the answer is larger than"),
])
def test_hostile_servers(mode, expect, what):
    server = HostileServer(mode)
    try:
        r = run(server.url, "hostile", expect=expect, timeout_ms=1500)
    finally:
        server.stop()
    assert r.returncode == 0 and "[       OK ] test_hostile\n" in r.stdout, r.stdout + r.stderr
    errs = errors(r)
    calls = [c for c, _, _ in errs]
    # Every call fails, remove_allocation too: an HTML 404 is a wrong endpoint, not a
    # consumer that is already gone.
    want = ["ensure_provider", "set_inventories", "set_traits", "put_allocation",
            "remove_allocation"]
    assert calls == want, r.stdout
    for call, code, msg in errs:
        assert code == expect
        assert what in msg, msg
        assert re.search(r"(GET|PUT|POST|DELETE) /", msg), msg
        assert "\n" not in msg and len(msg) < 1500
