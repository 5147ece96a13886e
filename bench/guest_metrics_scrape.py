#!/usr/bin/python3
"""bench/guest_metrics_scrape.py: one scrape of the per-guest metrics with 20 running guests,
the agent's /metrics against Debian's prometheus-libvirt-exporter on the same host, in one
run (issue 15).

    /usr/bin/python3 bench/guest_metrics_scrape.py --build build/release [--guests 20]
        [--scrapes 50]

The stack is bench/create_latency.py's (a private libvirt + OVS host, devbus, one agent,
image server), with the agent's admin API also on a loopback TCP port.  The agent creates
--guests instances of the test guest (1 vCPU, 256 MiB, TCG), all at once after one warm-up
create that downloads the image; the driver then pauses them through libvirt (so that
twenty TCG guests booting do not take the CPU the scrapes are timed on; a paused guest's QEMU
still answers every statistic), and waits until the agent's /metrics shows every guest and
the exporter's every domain.  prometheus-libvirt-exporter runs against the same libvirtd
(`--libvirt.uri`), on another loopback port.

Timed, interleaved (each round scrapes both, the order alternating): an HTTP GET of each
/metrics on a new TCP connection, from the request to the last byte of the body (urllib).
The agent serves its last collection ([metrics] guest_stats_interval) from a cache; the
exporter asks libvirt on every scrape.  Reported: median and p90 of each, the ratio of the
medians, the body's size and the number of series about guests.

Output: a Markdown section on stdout for docs/benchmarks.md; progress on stderr.  Exit status
1 on any failure, after stopping everything started here.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_latency import BenchError, Stack, log, stats  # noqa: E402

EXPORTER = "prometheus-libvirt-exporter"
READY_TIMEOUT = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    """(ms from request to the body's last byte, body)."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read().decode()
        if r.status != 200:
            raise BenchError(f"GET {url}: HTTP {r.status}")
    return (time.perf_counter() - t0) * 1000, body


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.5)
    raise BenchError(f"timed out after {timeout} s waiting for {what}")


def agent_guests(body):
    return set(re.findall(r'^nodeagent_vm_cpu_usage_seconds_total\{uuid="([^"]+)"', body, re.M))


def exporter_domains(body):
    return set(re.findall(r'^libvirt_domain_info_cpu_time_seconds_total\{domain="(na-[^"]+)"',
                          body, re.M))


def guest_series(body, prefix):
    return sum(1 for line in body.splitlines() if line.startswith(prefix))


def create_guests(stack, n):
    insts = [str(uuid.uuid4()) for _ in range(n)]
    sent = [stack.send_create(inst, f"scrape-{i}", ip=f"10.0.0.{10 + i}")
            for i, inst in enumerate(insts)]
    for _, _, proc in sent:
        stack.sent(proc)
    for rid, _, _ in sent:
        stack.events.terminal(rid, timeout=READY_TIMEOUT)
    return insts


def pause_all(stack, insts):
    """Pauses every guest through libvirt: twenty guests booting under TCG on a small machine
    would time their own CPU use, not the scrapes.  A paused domain's QEMU still answers
    every statistic."""
    for inst in insts:
        stack.conn.lookupByUUIDString(inst).suspend()


def start_exporter(stack, port, logdir):
    out = open(os.path.join(logdir, "exporter.log"), "w")
    proc = subprocess.Popen([EXPORTER, f"--libvirt.uri={stack.env.uri}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=out)
    return proc, out


def scrape_rounds(urls, rounds):
    times = {name: [] for name in urls}
    bodies = {}
    order = list(urls)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else reversed(order)):
            ms, bodies[name] = get(urls[name])
            times[name].append(ms)
    return times, bodies


def version():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", EXPORTER], capture_output=True,
                       text=True)
    return r.stdout.strip() or "unknown"


def report(n_guests, rounds, times, bodies, interval_s):
    a, e = stats(times["agent"]), stats(times["exporter"])
    agent_series = guest_series(bodies["agent"], "nodeagent_vm_")
    exporter_series = guest_series(bodies["exporter"], "libvirt_domain_")
    print(f"## Scraping per-guest metrics of {n_guests} guests: /metrics against "
          f"prometheus-libvirt-exporter")
    print()
    print(f"{n_guests} guests (TCG, 1 vCPU, 256 MiB, one disk and one NIC each; created by the "
          "agent, then paused so that their CPU use does not time itself) on one "
          f"private libvirt host; {rounds} scrapes of each, interleaved (order alternating), each "
          "an HTTP GET on a new loopback TCP connection timed from the request to the body's "
          "last byte (`bench/guest_metrics_scrape.py`). The agent serves the reading of its last "
          f"collection (`[metrics] guest_stats_interval = {interval_s}`), so a scrape never "
          "calls libvirt; prometheus-libvirt-exporter "
          f"{version()} (Debian) asks libvirtd on every scrape. The agent's body also holds its "
          "own metrics.")
    print()
    print("| | median (ms) | p90 (ms) | min (ms) | max (ms) | body (bytes) | series about guests |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| agent `/metrics` | {a['median']:.2f} | {a['p90']:.2f} | {a['min']:.2f} | "
          f"{a['max']:.2f} | {len(bodies['agent'])} | {agent_series} |")
    print(f"| prometheus-libvirt-exporter | {e['median']:.2f} | {e['p90']:.2f} | {e['min']:.2f} | "
          f"{e['max']:.2f} | {len(bodies['exporter'])} | {exporter_series} |")
    print()
    print(f"Ratio of medians, agent / exporter: **{a['median'] / e['median']:.3f}** (the "
          f"exporter's median is {e['median'] / a['median']:.0f}x the agent's).")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="the build directory")
    ap.add_argument("--guests", type=int, default=20, help="running guests (20)")
    ap.add_argument("--scrapes", type=int, default=50, help="scrapes of each (50)")
    a = ap.parse_args()
    if not 1 <= a.guests <= 200 or a.scrapes < 1:
        ap.error("--guests must be 1..200 and --scrapes at least 1")
    if not shutil.which(EXPORTER):
        log(f"{EXPORTER} not found (deploy/deps.sh installs it)")
        return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    interval_s = 5
    agent_port, exporter_port = free_port(), free_port()
    stack = Stack(os.path.abspath(a.build),
                  agent_config=f"[admin]\nlisten = 127.0.0.1:{agent_port}\n"
                  f"[metrics]\nguest_stats_interval = {interval_s}\n")
    exporter = exporter_log = None
    failed = True
    try:
        stack.start()
        inst, t = stack.agent_create("scrape-warmup")
        log(f"warm-up create (downloads the image): {t['done']:.0f} ms")
        stack.agent_delete(inst)
        t0 = time.monotonic()
        insts = create_guests(stack, a.guests)
        pause_all(stack, insts)
        log(f"{len(insts)} guests created (and paused) in {time.monotonic() - t0:.0f} s")
        exporter, exporter_log = start_exporter(stack, exporter_port, stack.work)
        urls = {"agent": f"http://127.0.0.1:{agent_port}/metrics",
                "exporter": f"http://127.0.0.1:{exporter_port}/metrics"}
        wait_for(lambda: agent_guests(get(urls["agent"])[1]) >= set(insts), 120,
                 "the agent's /metrics to show every guest")

        def exporter_sees_all():
            try:
                return len(exporter_domains(get(urls["exporter"])[1])) >= a.guests
            except OSError:
                return False
        wait_for(exporter_sees_all, 120, "the exporter to show every domain")
        log(f"scraping, {a.scrapes} rounds")
        times, bodies = scrape_rounds(urls, a.scrapes)
        report(a.guests, a.scrapes, times, bodies, interval_s)
        failed = False
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - loud, then clean up
        traceback.print_exc()
        log(f"FAILED: {e}")
    finally:
        if exporter and exporter.poll() is None:
            exporter.send_signal(signal.SIGTERM)
            try:
                exporter.wait(10)
            except subprocess.TimeoutExpired:
                exporter.kill()
                exporter.wait()
        if exporter_log:
            exporter_log.close()
        stack.stop(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
