#!/usr/bin/python3
"""bench/sg_throughput.py: TCP throughput between two guests through the agent's flows (the
security groups' conntrack stage in both directions) against the same two guests joined by
two plain forwarding flows (no conntrack), side by side in one run.

    /usr/bin/python3 bench/sg_throughput.py --build build/release [--rounds 3] [--seconds 10]

One private libvirt + OVS host (deploy/virtenv.py), the devbus and one agent
(tests/system/harness.py), the test guest image (tests/system/guests.py) served by
deploy/imageserver.py; modules are imported from their place in the tree.  Two guests (TCG)
in one network, both in a group that allows IPv4 in and out (so the rules are one
conjunction each way, as small as a rule set gets: what is measured is the conntrack stage
itself).  The receiver runs busybox `nc -ll` into /dev/null; the sender, for each sample,
`cat /dev/zero | nc`, killed after the window.  Counted between 2 s after the sender starts
and SECONDS later: the bytes OVS sent out of the receiver's port (`ovs-ofctl dump-ports`,
tx_bytes), and ovs-vswitchd's CPU time (user + system of all its threads, /proc/PID/stat)
per MiB of them.

Rounds alternate the two tables, the order turning each round:
  - with security groups: the agent's own table;
  - without: the agent stopped (its flows stay), and `ovs-ofctl replace-flows` with
    `in_port=A -> output:B` and back (cookie 0x5347); afterwards those go and the agent,
    started again, puts its table back (checked before the next sample).
The guests' NICs keep the agent's offload settings (checksum and segmentation offloads off)
in both: turning them on needs another domain (and a conntrack stage that accepts partial
checksums), so their cost is not measured here.

Output: one Markdown section on stdout; progress on stderr.  Exit status 1 on any failure,
after stopping everything started here.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
PLAIN_COOKIE = 0x5347
PORT = 5001


def log(*a):
    print("sg_throughput:", *a, file=sys.stderr, flush=True)


def ofctl(node, *args):
    mgmt = f"unix:{node.env.ovs_rundir}/{node.env.bridge}.mgmt"
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", *args[:1], mgmt, *args[1:]],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def tx_bytes(node, ofport):
    """What OVS sent out of the port (what its guest received), in bytes."""
    out = ofctl(node, "dump-ports", str(ofport))
    return int(re.search(r"tx pkts=\d+, bytes=(\d+)", out).group(1))


def cpu_s(pid):
    """CPU time (user + system, all threads) of a process so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample(node, sender, receiver_ip, ofport, seconds):
    """(bytes per second the receiver got while the sender streamed to it, ovs-vswitchd's CPU
    seconds per MiB of it)."""
    sender.run([f"cat /dev/zero | nc {receiver_ip} {PORT} >/dev/null 2>&1 &",
                "echo $! >/tmp/sender.pid", 'echo "@@sending=0@@"'], ["sending"])
    time.sleep(2)  # the connection is up and at speed: the window starts after it
    vswitchd = node.env.pid("ovs-vswitchd")
    t0, b0, c0 = time.monotonic(), tx_bytes(node, ofport), cpu_s(vswitchd)
    time.sleep(seconds)  # the measurement window
    t1, b1, c1 = time.monotonic(), tx_bytes(node, ofport), cpu_s(vswitchd)
    sender.run(['kill $(cat /tmp/sender.pid); echo "@@stopped=$?@@"'], ["stopped"])
    return (b1 - b0) / (t1 - t0), (c1 - c0) / max(b1 - b0, 1) * 1048576


def plain_table(node, of_a, of_b):
    path = os.path.join(node.cluster.workdir, "plain.flows")
    with open(path, "w") as f:
        f.write(f"cookie={PLAIN_COOKIE:#x},table=0,priority=100,in_port={of_a},"
                f"actions=output:{of_b}\n"
                f"cookie={PLAIN_COOKIE:#x},table=0,priority=100,in_port={of_b},"
                f"actions=output:{of_a}\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    os.environ["NODEAGENT_BUILD"] = os.path.abspath(args.build)
    import harness
    from harness import wait_for
    from nodes import ImageServer, Node
    from test_network import Guest, flows, iface_of
    from virtenv import VirtEnv

    work = tempfile.mkdtemp(prefix="nodeagent-bench-sg-")
    env = VirtEnv(tempfile.mkdtemp(prefix="nodeagent-virtenv-bench-"))
    os.rmdir(env.dir)
    cluster = images = None
    results = {"with": [], "without": []}
    cpu = {"with": [], "without": []}
    load0 = load1 = "?"
    try:
        load0 = open("/proc/loadavg").read().split()[0]
        env.start()
        cluster = harness.Cluster(work)
        images = ImageServer()
        node = Node(cluster, env, images)
        node.start()
        log("booting two guests")
        a = Guest(node, "tput-a", "10.0.0.5", 100)
        b = Guest(node, "tput-b", "10.0.0.6", 100)
        a.ready(timeout=600)
        b.ready(timeout=600)
        b.run(["printf 'cat >/dev/null\\n' >/tmp/sink; chmod +x /tmp/sink",
               f"nc -ll -p {PORT} -e /tmp/sink >/dev/null 2>&1 &", 'echo "@@sink=0@@"'],
              ["sink"])
        _, of_a = iface_of(node, a.port)
        _, of_b = iface_of(node, b.port)
        agent_table = flows(node)
        plain = plain_table(node, of_a, of_b)
        for r in range(args.rounds):
            for kind in (("with", "without") if r % 2 == 0 else ("without", "with")):
                if kind == "without":
                    node.agent.stop()
                    ofctl(node, "replace-flows", plain)
                else:
                    ofctl(node, "del-flows", f"cookie={PLAIN_COOKIE:#x}/-1")
                    if not node.agent.proc or node.agent.proc.poll() is not None:
                        node.start()
                    wait_for(lambda: flows(node) == agent_table, 60, "the agent's table back")
                rate, per_mib = sample(node, a, b.ip, of_b, args.seconds)
                results[kind].append(rate)
                cpu[kind].append(per_mib)
                log(f"round {r + 1}: {kind} security groups: {rate / 1024:.0f} KiB/s, "
                    f"ovs-vswitchd {per_mib * 1000:.1f} ms CPU per MiB")
        ofctl(node, "del-flows", f"cookie={PLAIN_COOKIE:#x}/-1")
        load1 = open("/proc/loadavg").read().split()[0]
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if images:
            images.stop()
        if cluster:
            cluster.close()
        env.stop()
        shutil.rmtree(work, ignore_errors=True)

    w = statistics.median(results["with"])
    wo = statistics.median(results["without"])
    print("## TCP between two guests: with the security groups' conntrack stage and without\n")
    print(f"bench/sg_throughput.py: two TCG guests on one node, busybox `nc` from /dev/zero to "
          f"/dev/null for {args.seconds} s a sample, bytes counted by OVS on the receiver's "
          f"port; {args.rounds} samples of each, alternating.  *With*: the agent's table "
          "(conntrack in the sender's zone and the receiver's, rules as conjunctions, a group "
          "allowing IPv4 in and out).  *Without*: two `in_port -> output` flows.  Guest NIC "
          "offloads off in both (the agent's domain XML).\n")
    print("| table | median | samples | ovs-vswitchd CPU per MiB, median | samples |")
    print("|---|---|---|---|---|")
    for kind, med in (("with security groups", w), ("without (plain forwarding)", wo)):
        key = "with" if kind.startswith("with ") else "without"
        s = ", ".join(f"{x / 1024:.0f}" for x in results[key])
        c = ", ".join(f"{x * 1000:.1f}" for x in cpu[key])
        print(f"| {kind} | {med / 1024:.0f} KiB/s | {s} KiB/s | "
              f"{statistics.median(cpu[key]) * 1000:.1f} ms | {c} ms |")
    cw, cwo = statistics.median(cpu["with"]), statistics.median(cpu["without"])
    print(f"\novs-vswitchd's CPU time per MiB delivered (all its threads, from /proc): with "
          f"security groups **{cw / cwo:.2f}x** without.  It includes the daemon's work that "
          "does not depend on traffic (its main loop, revalidators), so it falls as throughput "
          "rises and is no cleaner a measure of the stage than throughput on a loaded machine.")
    paired = [x / y for x, y in zip(results["with"], results["without"])]
    print(f"\nWith security groups: **{w / wo:.2f}x** the throughput without (medians); round by "
          f"round {', '.join(f'{p:.2f}' for p in paired)}x, median "
          f"{statistics.median(paired):.2f}x.  Load average before and after: {load0} and "
          f"{load1}.  Both guests run under TCG on a shared machine: a guest's CPU sets most of "
          "the pace and the samples move with the machine's load, which the alternation "
          "spreads over both tables.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
