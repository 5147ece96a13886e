"""Per-guest metrics: two real guests (TCG) on one node, one made busy through its console
(CPU, disk writes, pings to the other), the other left idle.  /metrics is scraped before and
after; the busy guest's counters must grow and the idle one's barely move (deltas compared
between the two, never against a time), the exposition must pass the Prometheus text parser
(python3-prometheus-client) with HELP and TYPE for every metric, `nodectl instances UUID`
must show the same figures, and a deleted guest must leave the output."""
import re
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import wait_for
from test_network import Guest

# Collections every second, so that the test waits little for a fresh one.
CONFIG = "[metrics]\nguest_stats_interval = 1\n"
SAMPLE = re.compile(r'^(nodeagent_vm_\w+)\{([^}]*)\} (\S+)$')


def scrape(node):
    status, text = node.agent.get("/metrics")
    assert status == 200
    return text


def guest_series(text, uuid):
    """{(metric, extra label or ''): value} of one guest's samples."""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and f'uuid="{uuid}"' in m.group(2):
            extra = [kv for kv in m.group(2).split(",")
                     if kv.split("=")[0] not in ("uuid", "name", "tenant")]
            out[(m.group(1), ",".join(extra))] = float(m.group(3))
    return out


def total(series, metric):
    return sum(v for (name, _), v in series.items() if name == metric)


def collected_ms(node, uuids):
    """The oldest collection time of the guests' figures in the instance view (0: none)."""
    times = []
    for u in uuids:
        _, inst = node.agent.get_json(f"/v1/instances/{u}")
        times.append(inst.get("stats", {}).get("collected_ms", 0))
    return min(times)


def fresh_scrape(node, uuids):
    """A scrape of figures read entirely after this call: collections do not overlap, so
    the second one to finish after now began after now."""
    since = int(time.time() * 1000)
    first = wait_for(lambda: collected_ms(node, uuids) > since and collected_ms(node, uuids),
                     60, "a collection of guest statistics", interval=0.2)
    wait_for(lambda: collected_ms(node, uuids) > first, 60,
             "a second collection of guest statistics", interval=0.2)
    return scrape(node)


def check_exposition(text):
    """The whole /metrics text through the Prometheus parser, and HELP and TYPE for every
    family that has samples."""
    families = list(text_string_to_metric_families(text))
    assert families
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    types = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in helps or base in helps, f"no HELP for {name}"
            assert name in types or base in types, f"no TYPE for {name}"
    return families


def test_busy_guest_counters_grow_idle_guest_barely_moves(node):
    node.start(extra_config=CONFIG)
    busy = Guest(node, "metrics-busy", "10.0.0.5", 100)
    idle = Guest(node, "metrics-idle", "10.0.0.6", 100)
    busy.ready()
    idle.ready()
    uuids = (busy.inst, idle.inst)

    before_text = fresh_scrape(node, uuids)
    before = {u: guest_series(before_text, u) for u in uuids}
    for u in uuids:
        assert total(before[u], "nodeagent_vm_cpu_usage_seconds_total") > 0, before[u]
        assert total(before[u], "nodeagent_vm_memory_resident_bytes") > 0, before[u]
        assert total(before[u], "nodeagent_vm_memory_actual_balloon_bytes") == 256 << 20

    # About 8 s of shell arithmetic, 16 MiB written to the end of the root disk (the guest
    # runs from its initramfs) and synced, 40 pings of 1200 bytes to the idle guest.
    r = busy.run([
        'end=$(($(date +%s) + 8)); n=0; while [ "$(date +%s)" -lt "$end" ]; do '
        'n=$((n + 1)); done; echo "@@cpu=$?@@"',
        'dd if=/dev/zero of=/dev/vda bs=65536 count=256 seek=8192 conv=fsync 2>/dev/null; '
        'echo "@@disk=$?@@"',
        f'ping -c 40 -i 0.1 -s 1200 {idle.ip} >/dev/null 2>&1; echo "@@net=$?@@"',
    ], ["cpu", "disk", "net"], timeout=240)
    assert r == {"cpu": 0, "disk": 0, "net": 0}

    after_text = fresh_scrape(node, uuids)
    check_exposition(after_text)
    after = {u: guest_series(after_text, u) for u in uuids}

    def delta(u, metric):
        return total(after[u], metric) - total(before[u], metric)

    cpu_busy = delta(busy.inst, "nodeagent_vm_cpu_usage_seconds_total")
    cpu_idle = delta(idle.inst, "nodeagent_vm_cpu_usage_seconds_total")
    vcpu_busy = delta(busy.inst, "nodeagent_vm_vcpu_seconds_total")
    vcpu_idle = delta(idle.inst, "nodeagent_vm_vcpu_seconds_total")
    assert cpu_busy > 2 * cpu_idle, (cpu_busy, cpu_idle)
    assert vcpu_busy > 2 * vcpu_idle, (vcpu_busy, vcpu_idle)

    wr_busy = delta(busy.inst, "nodeagent_vm_storage_write_traffic_bytes_total")
    wr_idle = delta(idle.inst, "nodeagent_vm_storage_write_traffic_bytes_total")
    assert wr_busy >= 16 << 20, wr_busy
    assert wr_idle < wr_busy / 16, (wr_busy, wr_idle)
    assert delta(busy.inst, "nodeagent_vm_storage_iops_write_total") > \
        delta(idle.inst, "nodeagent_vm_storage_iops_write_total")
    assert delta(busy.inst, "nodeagent_vm_storage_write_times_seconds_total") > 0

    # 40 echo requests of 1242 bytes on the wire each way, sent by the busy guest and
    # received by the idle one, and the replies back (a few may be lost: ping's status is 0
    # with one reply).
    tx_busy = delta(busy.inst, "nodeagent_vm_network_transmit_bytes_total")
    rx_idle = delta(idle.inst, "nodeagent_vm_network_receive_bytes_total")
    tx_idle = delta(idle.inst, "nodeagent_vm_network_transmit_bytes_total")
    assert tx_busy >= 30 * 1200, tx_busy
    assert rx_idle >= 30 * 1200, rx_idle
    assert tx_idle >= 30 * 1200, tx_idle  # its replies
    assert delta(busy.inst, "nodeagent_vm_network_transmit_packets_total") >= 30
    assert delta(busy.inst, "nodeagent_vm_network_receive_packets_total") >= 30
    for metric in ("errors", "packets_dropped"):
        for d in ("receive", "transmit"):
            assert any(k[0] == f"nodeagent_vm_network_{d}_{metric}_total"
                       for k in after[busy.inst]), (d, metric)
    # Each series names the guest, its tenant, and its disk or NIC.
    assert 'name="metrics-busy",tenant="t1",drive="vda"' in after_text
    assert re.search(rf'uuid="{busy.inst}",name="metrics-busy",tenant="t1",interface="tap',
                     after_text)

    # nodectl shows the figures the agent has: the same ones, or later ones.
    r = node.cluster.nodectl("--admin-socket", node.agent.socket, "instances", busy.inst,
                             check=0)
    m = re.search(r"^  cpu: cpu_seconds=(\S+) ", r.stdout, re.M)
    assert m, r.stdout
    # (nodectl shows seconds to the millisecond)
    assert float(m.group(1)) >= \
        total(after[busy.inst], "nodeagent_vm_cpu_usage_seconds_total") - 0.001
    m = re.search(r"^  disk vda: read_bytes=\S+ read_ops=\S+ read_seconds=\S+ "
                  r"write_bytes=(\d+) ", r.stdout, re.M)
    assert m, r.stdout
    assert int(m.group(1)) >= total(after[busy.inst],
                                    "nodeagent_vm_storage_write_traffic_bytes_total")
    assert re.search(r"^  nic tap\S+: rx_bytes=\d+ ", r.stdout, re.M), r.stdout
    assert re.search(r"^  memory: actual_balloon_bytes=268435456 ", r.stdout, re.M), r.stdout

    # A deleted guest leaves the output at once; the other stays.
    assert node.request("delete", busy.inst, check=0)["kind"] == "DONE"
    text = scrape(node)
    assert busy.inst not in text
    assert guest_series(text, idle.inst)
    check_exposition(text)
