#!/usr/bin/python3
"""bench/idle_memory.py: the idle agent's memory, connected as on a compute node.

    /usr/bin/python3 bench/idle_memory.py --build build/release [--samples 5]

One agent (tests/system/harness.py) on a private libvirt + OVS host (deploy/virtenv.py) and
the devbus, idle once its health checks pass (bus, database, libvirt, ovs).  Its
/proc/PID/smaps_rollup is read SAMPLES times, once after each of as many /healthz answers
(the agent's loop has turned again), and the medians are reported: PSS (private pages plus
its share of shared ones: the figure the target is about), VmRSS, which also counts every
page of the shared libraries libvirt brings (gnutls, glib, ...) that libvirtd maps on a node
anyway, private and anonymous.

Target: PSS under 16 MiB.  It moved here from tests/system/test_foundation.py:
tests hold no memory or timing thresholds.  Output: one Markdown section on stdout.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
TARGET_KIB = 16 * 1024


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    out["Private"] = out["Private_Clean"] + out["Private_Dirty"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--samples", type=int, default=5)
    args = ap.parse_args()
    os.environ["NODEAGENT_BUILD"] = os.path.abspath(args.build)
    import harness
    from virtenv import VirtEnv

    work = tempfile.mkdtemp(prefix="nodeagent-bench-memory-")
    env = VirtEnv(tempfile.mkdtemp(prefix="nodeagent-virtenv-bench-"))
    os.rmdir(env.dir)
    cluster = None
    try:
        env.start()
        cluster = harness.Cluster(work)
        agent = cluster.agent(virtenv=env).start()
        agent.wait_healthy(need=("bus", "database", "libvirt", "ovs"))
        samples = []
        for _ in range(args.samples):
            agent.wait_healthy(need=("bus", "database", "libvirt", "ovs"))
            samples.append(rollup(agent.pid()))
    finally:
        if cluster:
            cluster.close()
        env.stop()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(s[k] for s in samples)
           for k in ("Pss", "Rss", "Private", "Anonymous")}
    print("## Idle memory: the agent connected to the bus, a libvirtd and Open vSwitch\n")
    print(f"Median of {len(samples)} readings of `/proc/PID/smaps_rollup` "
          "(bench/idle_memory.py):\n")
    print("| PSS | VmRSS | private | anonymous |")
    print("|---|---|---|---|")
    print(f"| {med['Pss']:.0f} KiB | {med['Rss']:.0f} KiB | {med['Private']:.0f} KiB | "
          f"{med['Anonymous']:.0f} KiB |\n")
    met = "met" if med["Pss"] < TARGET_KIB else "NOT met"
    print(f"**Target**: PSS under {TARGET_KIB // 1024} MiB.  **This run: {met}.**")
    return 0


if __name__ == "__main__":
    sys.exit(main())
