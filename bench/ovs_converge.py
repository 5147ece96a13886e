#!/usr/bin/python3
"""bench/ovs_converge.py: converging 200 ports on 50 networks, net/ovs against ovs-ofctl.

    bench/ovs_converge.py --build BUILD [--ports 200] [--networks 50] [--rounds 10]
                          [--rules 50 --members 200]

On a private Open vSwitch (deploy/virtenv.py, netdev datapath) it adds PORTS internal ports
to br-int, each with an iface-id and attached-mac as libvirt gives a guest's tap, spread over
NETWORKS networks.  Each round, in alternating order:

- ours: the flows are deleted (untimed); `bench/ovs_converge ours` starts net/ovs, lets it
  install the empty table (untimed) and times from handing it every port to every port
  bound (interfaces found through the OVS database, the whole table computed and taken by
  ovs-vswitchd in one bundle);
- ovs-ofctl: the flows are deleted (untimed); `bench/ovs_converge peer` times
  `ovs-ofctl -O OpenFlow14 --bundle add-flows` of the very table net/ovs installed (dumped
  after its first round), from posix_spawn to exit.

With --rules, the ports are in 10 security groups of RULES rules each (half of them
remote-group rules, the others from a CIDR, some to a range of ports) with MEMBERS member
addresses each (bench/ovs_converge.c, bench_groups), and the report adds how many flows the
rules make against an estimate of Neutron's OVS firewall layout for the same rules.

After every round the bridge's table must be the one of the first round, whoever made it.
Prints one Markdown section on stdout for docs/benchmarks.md.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
OF = "OpenFlow14"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def dump(env):
    """The agent's flows (cookie 0x4e41) in add-flows syntax, sorted."""
    mgmt = f"unix:{env.ovs_rundir}/{env.bridge}.mgmt"
    out = subprocess.run(["ovs-ofctl", "-O", OF, "--no-stats", "--no-names", "dump-flows", mgmt],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return sorted(line.strip() for line in out.splitlines() if "cookie=0x4e41" in line)


def del_flows(env):
    mgmt = f"unix:{env.ovs_rundir}/{env.bridge}.mgmt"
    subprocess.run(["ovs-ofctl", "-O", OF, "del-flows", mgmt], check=True, timeout=60)


def add_ports(env, n_ports, n_networks):
    """PORTS internal ports in one transaction; returns the lines of the ports file."""
    args, lines = [], []
    for i in range(n_ports):
        name = f"nab{i}"
        mac = f"52:54:00:ab:{i // 256:02x}:{i % 256:02x}"
        vni = 1000 + i % n_networks
        ip = f"10.{i % n_networks}.{i // 250}.{i % 250 + 2}"
        args += ["--", "add-port", env.bridge, name, "--", "set", "Interface", name,
                 "type=internal", f"external_ids:iface-id=bench-port-{i}",
                 f"external_ids:attached-mac={mac}"]
        lines.append(f"bench-port-{i} {vni} {mac} {ip}")
    env.vsctl(*args, timeout=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = env.vsctl("--bare", "--columns=ofport", "find", "Interface", "type=internal")
        if len([x for x in out.split() if x.isdigit() and int(x) > 0]) >= n_ports:
            return lines
        time.sleep(0.5)
    raise BenchError("the internal ports got no OpenFlow port numbers")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return float(r.stdout.strip())


def masks(lo, hi):
    """How many value/mask pairs cover lo..hi (net/ovs's and Neutron's port_rule_masking)."""
    n = 0
    while lo <= hi:
        size = 1
        while size < 0x10000 and lo % (2 * size) == 0 and lo + 2 * size - 1 <= hi:
            size *= 2
        lo += size
        n += 1
    return n


def neutron_estimate(ports, networks, rules, members, groups=10):
    """Neutron's OVS firewall flows for bench_groups' rules (bench/ovs_converge.c), without
    its fixed per-port flows.  States: new and established-not-reply."""
    per_port = 0
    remote_rules = 0
    for i in range(rules):
        port = 1000 + 20 * i
        if i == 0:
            per_port += 2                       # egress to anywhere
        elif i % 2:
            per_port += 2 * masks(port, port)   # the port's side of the conjunction
            remote_rules += 1
        else:
            hi = port + 9 if i % 4 == 0 else port
            per_port += 2 * masks(port, hi)
    nets_per_group = min(networks, max(1, ports // groups))
    member_flows = groups * nets_per_group * members * 2 if remote_rules else 0
    accept = ports * 2 if remote_rules else 0
    return ports * per_port + member_flows + accept


def stats(v):
    v = sorted(v)
    return {"median": statistics.median(v), "p90": v[min(len(v) - 1, int(len(v) * 0.9))],
            "mean": statistics.mean(v), "min": v[0], "max": v[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--ports", type=int, default=200)
    ap.add_argument("--networks", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--rules", type=int, default=0)
    ap.add_argument("--members", type=int, default=0)
    a = ap.parse_args()
    if not (1 <= a.networks <= a.ports <= 10000) or a.rounds < 1:
        ap.error("need 1 <= networks <= ports <= 10000 and rounds >= 1")
    helper = os.path.join(os.path.abspath(a.build), "bench/ovs_converge")
    ofctl = shutil.which("ovs-ofctl")
    from virtenv import VirtEnv
    env = VirtEnv(tempfile.mkdtemp(prefix="nodeagent-virtenv-bench-ovs-"))
    os.rmdir(env.dir)
    work = tempfile.mkdtemp(prefix="nodeagent-bench-ovs-")
    try:
        env.start()
        ports_file = os.path.join(work, "ports")
        with open(ports_file, "w") as f:
            f.write("\n".join(add_ports(env, a.ports, a.networks)) + "\n")
        flows_file = os.path.join(work, "flows")
        mgmt = f"unix:{env.ovs_rundir}/{env.bridge}.mgmt"
        ours_cmd = [helper, "ours", "--ovsdb", env.ovs_db, "--bridge", env.bridge,
                    "--ports", ports_file, "--rules", str(a.rules), "--members", str(a.members)]
        peer_cmd = [helper, "peer", "--ofctl", ofctl, "--bridge-mgmt", mgmt, "--flows",
                    flows_file]
        times = {"net/ovs": [], "ovs-ofctl add-flows": []}
        reference = None
        # One untimed round of each first: page cache, and the reference table.
        del_flows(env)
        run(ours_cmd)
        reference = dump(env)
        with open(flows_file, "w") as f:
            f.write("\n".join(reference) + "\n")
        del_flows(env)
        run(peer_cmd)
        for r in range(a.rounds):
            order = ("net/ovs", "ovs-ofctl add-flows") if r % 2 == 0 else \
                ("ovs-ofctl add-flows", "net/ovs")
            for tool in order:
                del_flows(env)
                times[tool].append(run(ours_cmd if tool == "net/ovs" else peer_cmd))
                if dump(env) != reference:
                    raise BenchError(f"round {r}: {tool} left another table than net/ovs's first")
        n_flows = len(reference)
        tunnels = len([x for x in reference if "tun_id" in x])
        st = {t: stats(v) for t, v in times.items()}
        ver = subprocess.run([ofctl, "--version"], capture_output=True, text=True).stdout
        ver = ver.splitlines()[0] if ver else "ovs-ofctl"
        p = print
        groups = f" in security groups of {a.rules} rules" if a.rules else ""
        p(f"## Converging {a.ports} ports on {a.networks} networks{groups}: net/ovs against "
          "ovs-ofctl add-flows")
        p()
        p(f"`bench/ovs_converge.py` on a private Open vSwitch (`deploy/virtenv.py`, netdev "
          f"datapath; {ver}): {a.ports} internal ports on br-int with iface-id and attached-mac "
          f"as libvirt sets them for a guest's tap, on {a.networks} networks, one IPv4 address "
          f"each.  The table is {n_flows} flows ({tunnels} of them for tunnels: none here).  "
          f"{a.rounds} rounds, alternating which tool goes first, each starting from an empty "
          "table (deleting is untimed):")
        p()
        p("- **net/ovs**: `bench/ovs_converge ours` starts net/ovs (connection to the database "
          "and the bridge, empty table installed: untimed) and times from "
          "`ovs_net_set_ports()` with all the ports to `ovs_net_wait_bound()` returning for "
          "all: the interfaces found in the OVS database, the table computed and taken by "
          "ovs-vswitchd in one atomic bundle.")
        p("- **ovs-ofctl add-flows**: `ovs-ofctl -O OpenFlow14 --bundle add-flows` of a file "
          "holding the same table (dumped from the bridge after net/ovs's first round), from "
          "posix_spawn to exit: parsing, connecting, one bundle.  It has nothing to find: the "
          "port numbers are already in the file.")
        p()
        p("After every round the bridge held the same table, whichever tool made it.  "
          "Milliseconds:")
        p()
        p("| tool | median | p90 | mean | min | max |")
        p("|------|-------:|----:|-----:|----:|----:|")
        for t, s in st.items():
            p(f"| {t} | {s['median']:.1f} | {s['p90']:.1f} | {s['mean']:.1f} | {s['min']:.1f} | "
              f"{s['max']:.1f} |")
        p()
        ratio = st["ovs-ofctl add-flows"]["median"] / st["net/ovs"]["median"]
        p(f"ovs-ofctl add-flows median / net/ovs median: **{ratio:.2f}x**.")
        if a.rules:
            rule_flows = len([x for x in reference if re.search(r"table=(10|20),.*priority=100,", x)])
            p()
            p(f"The rules' flows (tables 10 and 20, priority 100): **{rule_flows}** here; "
              f"Neutron's OVS firewall layout for the same rules, estimated: "
              f"**{neutron_estimate(a.ports, a.networks, a.rules, a.members)}** (one flow per "
              "port, rule, tp_dst mask and conntrack state (new, established) for CIDR rules; "
              "for remote-group rules the same per port, plus one flow per member address, "
              "remote group, network and state, and one accept flow per port, conjunction "
              "and state; `neutron/agent/linux/openvswitch_firewall/firewall.py`, rules.py).")
        return 0
    except (BenchError, subprocess.SubprocessError, OSError) as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        env.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
