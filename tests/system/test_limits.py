"""Per-guest limits (flavor fields 5 and up, docs/protocol.md 4.2.1) on real guests (TCG):
what a guest can do is measured inside the guest itself, and compared with its limit and with
a guest without one, never with a time of the test's own; what libvirt applied is read from
libvirt (the live XML, schedinfo)."""
import re
import subprocess
import xml.etree.ElementTree as ET

from harness import wait_for
from test_capacity import inventories, used, view
from test_network import Guest

MIB = 1 << 20
WRITE_LIMIT = 5 * MIB

# Writes 24 MiB straight to the guest's disk (O_DIRECT: no page cache in between), past the
# boot partition (the guest runs from its initramfs), and prints the guest's own uptime
# before and after.  The first mark is the exit status of dd.
WRITE = ["t0=$(cut -d' ' -f1 /proc/uptime)",
         "dd if=/dev/zero of=/dev/vda bs=65536 count=384 seek=1024 oflag=direct 2>/dev/null",
         'r=$?; t1=$(cut -d" " -f1 /proc/uptime); echo "@@@ wrote $t0 $t1 @@@"',
         'echo "@@dd=$r@@"']
WRITTEN = 384 * 65536


def write_rate(guest):
    """Bytes per second the guest's dd wrote to its disk, by the guest's own clock."""
    seen = len(guest.node.console(guest.inst))
    assert guest.run(WRITE, ["dd"], timeout=300) == {"dd": 0}
    m = re.findall(r"@@@ wrote ([\d.]+) ([\d.]+) @@@", guest.node.console(guest.inst)[seen:])
    assert m, guest.node.console(guest.inst)[seen:]
    t0, t1 = map(float, m[-1])
    assert t1 > t0
    return WRITTEN / (t1 - t0)


def live_xml(node, inst):
    return ET.fromstring(node.dom(inst).XMLDesc())


def meters(node):
    """The bridge's meters, as ovs-ofctl shows them."""
    mgmt = f"unix:{node.env.ovs_rundir}/{node.env.bridge}.mgmt"
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "dump-meters", mgmt],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def test_disk_write_limit_holds_and_an_unlimited_guest_writes_faster(node):
    node.start()
    limited = Guest(node, "lim-disk", "10.0.0.5", 100,
                    extra=("--limits", f"disk_write_bytes_sec={WRITE_LIMIT}"))
    free = Guest(node, "free-disk", "10.0.0.6", 100)
    limited.ready(timeout=300)
    free.ready(timeout=300)

    iotune = live_xml(node, limited.inst).find("devices/disk[@device='disk']/iotune")
    assert iotune is not None and iotune.findtext("write_bytes_sec") == str(WRITE_LIMIT)
    assert live_xml(node, free.inst).find("devices/disk/iotune") is None

    limited_rate = write_rate(limited)
    free_rate = write_rate(free)
    print(f"write MiB/s: limited {limited_rate / MIB:.2f}, unlimited {free_rate / MIB:.2f}")
    assert limited_rate <= 1.2 * WRITE_LIMIT, (limited_rate / MIB, free_rate / MIB)
    # Without the limit the same write goes faster than the bound above allows: the bound
    # is what tells the two apart.
    assert free_rate > 1.2 * WRITE_LIMIT, (limited_rate / MIB, free_rate / MIB)


def test_cpu_shares_and_quota_reach_libvirt_and_a_resize_changes_the_limits(node):
    node.start()
    offered = inventories(view(node.agent))
    g = Guest(node, "lim-cpu", "10.0.0.5", 100,
              extra=("--limits", "cpu_shares=512,cpu_quota_percent=50"))
    # Limits change neither what the node offers nor what the guest claims.
    report = view(node.agent)
    assert inventories(report) == offered
    assert used(report) == {"VCPU": 1, "MEMORY_MB": 256, "DISK_GB": 1}, used(report)
    params = node.dom(g.inst).schedulerParameters()
    assert params["cpu_shares"] == 512, params
    assert params["vcpu_period"] == 100000 and params["vcpu_quota"] == 50000, params
    assert "type=drop" not in meters(node), meters(node)

    # Resize is cold: the new flavor's limits are the guest's when it runs again.
    last = node.request("resize", g.inst, "--vcpus", 1, "--memory-mib", 256, "--disk-gib", 1,
                        "--limits", "cpu_shares=2048,disk_read_iops_sec=300,"
                        "nic_inbound_average_kib_sec=2048", check=0)
    assert last["kind"] == "DONE" and last["state"] == "RUNNING", last
    params = node.dom(g.inst).schedulerParameters()
    assert params["cpu_shares"] == 2048, params
    assert params["vcpu_quota"] <= 0, params  # no quota in the new flavor: unlimited
    iotune = live_xml(node, g.inst).find("devices/disk[@device='disk']/iotune")
    assert iotune is not None and iotune.findtext("read_iops_sec") == "300"
    # 2048 KiB/s = 16777 kbit/s.
    wait_for(lambda: "type=drop rate=16777" in meters(node), 30, "the resized guest's meter")


def test_a_limit_out_of_range_is_refused_naming_the_field(node):
    node.start()
    inst, last = node.create("lim-bad", extra=("--limits", "disk_write_bytes_sec=4096"),
                             check=1)
    assert last["kind"] == "FAILED", last
    assert last["error"]["code"] == "INVALID_ARGUMENT", last
    assert last["error"]["field"] == "create.spec.flavor.disk_write_bytes_sec", last
    assert not node.has_domain(inst)
    inst, last = node.create("lim-peak", extra=(
        "--limits", "nic_outbound_average_kib_sec=100,nic_outbound_peak_kib_sec=50"), check=1)
    assert last["error"]["field"] == "create.spec.flavor.nic_outbound_peak_kib_sec", last


NIC_LIMIT_KIB = 512
PING_SIZE = 1400

# Traffic is echo requests of PING_SIZE bytes to a peer, each sent as soon as the last reply
# came back (or after 1 ms), for at most 60 s.  PING_SIZE keeps each request in one frame
# under the NIC's MTU (1450): the meter would drop some fragments of larger ones, and the
# datapath's reassembler, full of incomplete datagrams, would then drop every fragment on the
# node (docs/operations.md, "Security groups").


def sent_rate(guest, peer_ip):
    """Bytes per second of echo requests from the guest that were answered, by the guest's own
    clock: each answered request passed the guest's outbound meter, so this is at most what
    the meter let through."""
    seen = len(guest.node.console(guest.inst))
    script = ["t0=$(cut -d' ' -f1 /proc/uptime)",
              f"ping -q -A -i 0.001 -c 3000 -w 60 -s {PING_SIZE} {peer_ip} >/tmp/ping",
              't1=$(cut -d" " -f1 /proc/uptime)',
              'n=$(sed -n "s/.* \\([0-9]*\\) packets received.*/\\1/p" /tmp/ping)',
              'echo "@@@ answered $n $t0 $t1 @@@"', 'echo "@@done=$?@@"']
    assert guest.run(script, ["done"], timeout=150) == {"done": 0}
    text = guest.node.console(guest.inst)[seen:]
    m = re.findall(r"@@@ answered (\d+) ([\d.]+) ([\d.]+) @@@", text)
    assert m, text
    n, t0, t1 = int(m[-1][0]), float(m[-1][1]), float(m[-1][2])
    assert n > 0 and t1 > t0, text
    return n * (PING_SIZE + 8) / (t1 - t0)


def test_nic_outbound_limit_holds_and_an_unlimited_guest_sends_faster(node):
    node.start()
    limited = Guest(node, "lim-nic", "10.0.0.5", 100,
                    extra=("--limits", f"nic_outbound_average_kib_sec={NIC_LIMIT_KIB}"))
    free = Guest(node, "free-nic", "10.0.0.6", 100)
    peer = Guest(node, "peer-nic", "10.0.0.7", 100)  # answers both, itself unlimited
    for g in (limited, free, peer):
        g.ready(timeout=300)

    # 512 KiB/s = 4194 kbit/s, rounded down.
    assert "type=drop rate=4194" in meters(node), meters(node)

    limit = NIC_LIMIT_KIB * 1024
    from_limited = sent_rate(limited, peer.ip)
    from_free = sent_rate(free, peer.ip)
    print(f"sent KiB/s: limited {from_limited / 1024:.0f}, unlimited {from_free / 1024:.0f}")
    assert from_limited <= 1.2 * limit, (from_limited / 1024, from_free / 1024)
    assert from_free > 1.2 * limit, (from_limited / 1024, from_free / 1024)


def test_nic_inbound_limit_holds_and_an_unlimited_guest_receives_faster(node):
    node.start()
    limited = Guest(node, "lim-in", "10.0.0.5", 100,
                    extra=("--limits", f"nic_inbound_average_kib_sec={NIC_LIMIT_KIB}"))
    free = Guest(node, "free-in", "10.0.0.6", 100)
    sender = Guest(node, "sender", "10.0.0.7", 100)  # sends to both, itself unlimited
    for g in (limited, free, sender):
        g.ready(timeout=300)

    limit = NIC_LIMIT_KIB * 1024
    # Each answered request passed the receiver's inbound meter.
    to_limited = sent_rate(sender, limited.ip)
    to_free = sent_rate(sender, free.ip)
    print(f"received KiB/s: limited {to_limited / 1024:.0f}, unlimited {to_free / 1024:.0f}")
    assert to_limited <= 1.2 * limit, (to_limited / 1024, to_free / 1024)
    assert to_free > 1.2 * limit, (to_limited / 1024, to_free / 1024)
