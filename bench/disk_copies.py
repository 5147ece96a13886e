#!/usr/bin/python3
"""bench/disk_copies.py: a clone of a running guest through the agent against virt-clone of a
stopped copy of it, and snapshot create and revert of the running guest through the agent
against virsh on that copy, running (issue 13), side by side in one run.

    /usr/bin/python3 bench/disk_copies.py --build build/release [--count 5]

The stack is bench/create_latency.py's (a private libvirt + OVS host, devbus, one agent,
image server).  The agent creates the source guest (1 vCPU, 256 MiB, 1 GiB qcow2 overlay on
the cached test image, TCG); the driver gives its overlay 64 MiB of data of its own (qemu-io
while the domain is off, then started again), which both tools then copy.

  - agent clone: from the driver's clock just before it starts `nodectl clone SOURCE` (no
    --wait) to the time_ms of the DONE event: the source keeps running; the clone is a new
    instance (its own identity and config drive), defined and started.  Deleted untimed.
  - virt-clone: `virt-clone --original COPY --name N --file F --mac M`, spawn to exit, COPY
    being a stopped domain defined from the source's XML (without the agent's metadata) on
    a copy of its overlay and config drive; virt-clone copies the writable disk and defines
    the clone; it does not start it.  Undefined and removed untimed.

  - snapshot create / revert: `nodectl snapshot create|revert SOURCE --snapshot S` (spawn to
    DONE: the agent's job, with the guest's memory) against `virsh snapshot-create-as COPY S`
    and `virsh snapshot-revert COPY S` (spawn to exit), COPY being the stopped copy started
    (the same devices, memory and disk).  Each round takes one snapshot with each and reverts
    to it; the snapshots are deleted untimed at the end of the round.

Interleaved, the order alternating each round.  Output: a Markdown section on stdout for
docs/benchmarks.md; progress on stderr; exit status 1 on any failure, after cleaning up.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import uuid
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_latency import (BENCH_NETWORK, DISK_GIB, MEMORY_MIB, BenchError, Stack,  # noqa: E402
                            log, rand_mac, stats)

DATA_MIB = 64
COPY = "bench-copy"


def clone_args(stack, source, name, ip):
    inst = str(uuid.uuid4())
    return inst, ["clone", source, "--uuid", inst, "--name", name, "--tenant", "bench",
                  "--vcpus", "1", "--memory-mib", str(MEMORY_MIB), "--disk-gib", str(DISK_GIB),
                  "--image-id", "guest", "--image-url", stack.image_url, "--image-sha256",
                  stack.image_sha, "--image-format", "qcow2", "--hostname", name, "--nic",
                  f"port={uuid.uuid4()},network={BENCH_NETWORK},vni=7,mac={rand_mac()},"
                  f"ip={ip}/24,gateway=10.0.0.1,mtu=1450"]


def agent_clone(stack, source, i):
    from harness import NODECTL
    inst, args = clone_args(stack, source, f"bench-clone-{i}", "10.0.0.20")
    rid = str(uuid.uuid4())
    cmd = [NODECTL, "--bootstrap", stack.cluster.devbus.bootstrap, "--prefix",
           stack.cluster.prefix, "--node", "n1"] + args + ["--request-id", rid]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stack.sent(proc)
    _, done = stack.events.terminal(rid)
    ms = done["time_ms"] - t0 * 1000
    stack.domain_running(dom_uuid=inst)
    stack.agent_delete(inst)
    return ms


def fill_source(stack, inst):
    """Gives the source's disk DATA_MIB of its own bytes (what a clone copies), while it is
    off, and starts it again."""
    dom = stack.conn.lookupByUUIDString(inst)
    dom.destroy()
    disk = os.path.join(stack.env.state_dir, "instances", inst, "disk")
    base = os.path.join(stack.env.state_dir, "images", stack.image_sha)
    spec = (f'json:{{"driver":"qcow2","file":{{"driver":"file","filename":"{disk}"}},'
            f'"backing":{{"driver":"qcow2","file":{{"driver":"file","filename":"{base}"}}}}}}')
    subprocess.run(["qemu-io", "-c", f"write -q -P 0x5a 256M {DATA_MIB}M", spec], check=True,
                   capture_output=True, timeout=120)
    dom.create()


def stopped_copy(stack, inst):
    """A stopped domain like the source on copies of its files: virt-clone's original."""
    xml = stack.conn.lookupByUUIDString(inst).XMLDesc(0x2)  # VIR_DOMAIN_XML_INACTIVE
    root = ET.fromstring(xml)
    md = root.find("metadata")
    if md is not None:
        root.remove(md)
    d = os.path.join(stack.env.state_dir, "bench-vc")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o711)
    root.find("name").text = COPY
    root.find("uuid").text = str(uuid.uuid4())
    for disk in root.find("devices").findall("disk"):
        src = disk.find("source")
        dst = os.path.join(d, "original-" + os.path.basename(src.get("file")))
        shutil.copy2(src.get("file"), dst)
        st = os.stat(src.get("file"))
        os.chown(dst, st.st_uid, st.st_gid)
        src.set("file", dst)
    for tag in ("serial", "console"):
        for el in root.find("devices").findall(tag):
            lg = el.find("log")
            if lg is not None:
                lg.set("file", os.path.join(d, "original-console.log"))
    port = str(uuid.uuid4())
    for nic in root.find("devices").findall("interface"):
        nic.find("mac").set("address", rand_mac())
        nic.find("virtualport/parameters").set("interfaceid", port)
        nic.find("target").set("dev", "tap" + port[:11])
    stack.conn.defineXML(ET.tostring(root, encoding="unicode"))
    return d


def virt_clone(stack, d, i):
    name = f"bench-vc-{i}"
    disk = os.path.join(d, f"{name}.disk")
    cmd = ["virt-clone", "--connect", stack.env.uri, "--original", COPY, "--name",
           name, "--file", disk, "--mac", rand_mac()]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    ms = (time.monotonic() - t0) * 1000
    if r.returncode != 0:
        raise BenchError(f"virt-clone exited {r.returncode}: {r.stderr.strip()}")
    dom = stack.conn.lookupByName(name)
    dom.undefine()
    os.unlink(disk)
    return ms


def agent_request(stack, *args):
    """ms from the spawn of `nodectl ARGS` to its DONE event (the guest running)."""
    from harness import NODECTL
    rid = str(uuid.uuid4())
    cmd = [NODECTL, "--bootstrap", stack.cluster.devbus.bootstrap, "--prefix",
           stack.cluster.prefix, "--node", "n1"] + list(args) + ["--request-id", rid]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stack.sent(proc)
    _, done = stack.events.terminal(rid)
    return done["time_ms"] - t0 * 1000


def virsh(stack, *args):
    """ms from spawn to exit of `virsh -c URI ARGS`."""
    t0 = time.monotonic()
    r = subprocess.run(["virsh", "-q", "-c", stack.env.uri] + list(args), capture_output=True,
                       text=True, timeout=600)
    ms = (time.monotonic() - t0) * 1000
    if r.returncode != 0:
        raise BenchError(f"virsh {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return ms


def snapshot_round(stack, source, i, samples, name=None):
    """One snapshot taken and reverted to with each tool, the order alternating."""
    name = name or f"bench-s{i}"
    tools = ["agent", "virsh"][::1 if i % 2 == 0 else -1]
    for tool in tools:
        if tool == "agent":
            samples["agent snapshot create"].append(
                agent_request(stack, "snapshot", "create", source, "--snapshot", name))
        else:
            samples["virsh snapshot-create-as"].append(
                virsh(stack, "snapshot-create-as", COPY, name))
    for tool in tools:
        if tool == "agent":
            samples["agent snapshot revert"].append(
                agent_request(stack, "snapshot", "revert", source, "--snapshot", name))
        else:
            samples["virsh snapshot-revert"].append(virsh(stack, "snapshot-revert", COPY, name))
    agent_request(stack, "snapshot", "delete", source, "--snapshot", name)
    virsh(stack, "snapshot-delete", COPY, name)


def version(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else "unknown"


def report(count, samples, snaps):
    st = {k: stats(v) for k, v in samples.items()}
    p = print
    p("## Clone of a running guest: the agent against virt-clone of a stopped copy")
    p()
    p(f"`bench/disk_copies.py`, {count} samples of each, interleaved, on "
      "bench/create_latency.py's private host (TCG guests; "
      f"virt-clone {version(['virt-clone', '--version'])}).  The source guest runs, with "
      f"{DATA_MIB} MiB of its own data in its 1 GiB overlay on the cached test image.")
    p()
    p("- **agent clone**: spawn of `nodectl clone SOURCE` to the DONE event: a block copy of the "
      "running source's overlay (the source keeps running), then the clone's config drive, "
      "define and start.")
    p("- **virt-clone**: spawn to exit of `virt-clone --original COPY --name N --file F --mac M`, "
      "COPY a stopped domain on copies of the source's files; it copies the disk and defines the "
      "clone, and neither needs nor keeps a running source, nor starts the clone.")
    p()
    p("| tool | median ms | p90 | min | max |")
    p("|------|-------:|----:|----:|----:|")
    for k, s in st.items():
        p(f"| {k} | {s['median']:.0f} | {s['p90']:.0f} | {s['min']:.0f} | {s['max']:.0f} |")
    p()
    p(f"Ratio of medians, agent clone / virt-clone: "
      f"**{st['agent clone']['median'] / st['virt-clone']['median']:.2f}x** (the agent's also "
      f"starts the clone and keeps the source running).")
    p()
    sn = {k: stats(v) for k, v in snaps.items()}
    p("## Snapshot create and revert of a running guest: the agent against virsh")
    p()
    p(f"The same run, {count} rounds: each tool takes a snapshot of a running 256 MiB guest with its "
      "memory and reverts to it, the agent on the source instance (`nodectl snapshot create|revert`, "
      "spawn to DONE), virsh on the copy, started (`virsh snapshot-create-as`, "
      "`virsh snapshot-revert`, spawn to exit).  Internal qcow2 snapshots both.")
    p()
    p("| operation | median ms | p90 | min | max |")
    p("|-----------|-------:|----:|----:|----:|")
    for k, s in sn.items():
        p(f"| {k} | {s['median']:.0f} | {s['p90']:.0f} | {s['min']:.0f} | {s['max']:.0f} |")
    p()
    rc = sn["agent snapshot create"]["median"] / sn["virsh snapshot-create-as"]["median"]
    rr = sn["agent snapshot revert"]["median"] / sn["virsh snapshot-revert"]["median"]
    met = rc <= 1.1 and rr <= 1.1
    p(f"Ratios of medians: create **{rc:.2f}x**, revert **{rr:.2f}x**.  **Target** (issue 13): "
      f"at most 1.1x each.  **This run: {'met' if met else 'not met'}.**")
    p()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="the build directory")
    ap.add_argument("--count", type=int, default=5, help="samples of each (5)")
    a = ap.parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    stack = Stack(os.path.abspath(a.build))
    failed = True
    try:
        stack.start()
        source, t = stack.agent_create("bench-source")
        log(f"source created (downloads the image): {t['done']:.0f} ms")
        fill_source(stack, source)
        d = stopped_copy(stack, source)
        agent_clone(stack, source, "warmup")
        virt_clone(stack, d, "warmup")
        samples = {"agent clone": [], "virt-clone": []}
        for i in range(a.count):
            order = ["agent clone", "virt-clone"][::1 if i % 2 == 0 else -1]
            for tool in order:
                ms = agent_clone(stack, source, i) if tool == "agent clone" else \
                    virt_clone(stack, d, i)
                samples[tool].append(ms)
            log(f"round {i + 1}/{a.count}: " +
                ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in samples.items()))
        stack.conn.lookupByName(COPY).create()
        snaps = {"agent snapshot create": [], "virsh snapshot-create-as": [],
                 "agent snapshot revert": [], "virsh snapshot-revert": []}
        snapshot_round(stack, source, 0, {k: [] for k in snaps}, name="bench-warmup")
        for i in range(a.count):
            snapshot_round(stack, source, i, snaps)
            log(f"snapshot round {i + 1}/{a.count}: " +
                ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in snaps.items()))
        report(a.count, samples, snaps)
        failed = False
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - loud, then clean up
        traceback.print_exc()
        log(f"FAILED: {e}")
    finally:
        stack.stop(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
