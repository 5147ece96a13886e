"""The private virtualization host (deploy/virtenv.py) boots the test guest through
libvirt, plugs it into OVS, runs each guest's QEMU under a uid of its own, and tears down
completely."""
import os
import subprocess
import tempfile
import time

import libvirt

from guests import Guest, cache_image, qemu_gid
from harness import wait_for


def proc_ids(pid):
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid"):
                ids[k] = [int(x) for x in v.split()]
    return ids


def as_uid(uid, *cmd):
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={qemu_gid()}",
                           "--clear-groups", *cmd], capture_output=True, text=True,
                          errors="replace", timeout=30)


def test_virsh_and_ovs_from_outside(virtenv):
    assert "Running hypervisor: QEMU" in virtenv.virsh("version")
    host_uuid = virtenv.virsh("capabilities")
    assert f"<uuid>{virtenv.host_uuid}</uuid>" in host_uuid
    assert virtenv.vsctl("get", "Bridge", "br-int", "datapath_type").strip() == "netdev"
    assert virtenv.vsctl("get", "Bridge", "br-int", "fail_mode").strip() == "secure"


def test_two_hosts_at_once(tmp_path):
    """Two hosts side by side: own network namespaces, OVS and libvirt of their own."""
    from virtenv import VirtEnv
    envs = [VirtEnv(tempfile.mkdtemp(prefix="nodeagent-virtenv-")) for _ in range(2)]
    try:
        for e in envs:
            os.rmdir(e.dir)
            e.start()
        uuids = set()
        for e in envs:
            assert e.vsctl("--bare", "--columns=ofport,error", "find", "Interface",
                           "name=br-int").split() == ["65534"]
            uuids.add(e.connect().getCapabilities().split("<uuid>")[1].split("<")[0])
        assert len(uuids) == 2
    finally:
        for e in envs:
            e.stop()
    assert not any(os.path.exists(e.dir) for e in envs)


def test_two_guests_boot_plug_isolate_and_shut_down(virtenv, guest_image):
    base = cache_image(virtenv.state_dir, guest_image)
    st = os.stat(base)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, qemu_gid(), 0o440)
    assert os.stat(os.path.dirname(base)).st_mode & 0o777 == 0o750

    conn = virtenv.connect()
    try:
        g1 = Guest(virtenv, base, 20001, "vm-one", "10.0.0.5", "52:54:00:12:34:56")
        g2 = Guest(virtenv, base, 20002, "vm-two", "10.0.0.6", "52:54:00:12:34:57")
        t0 = time.monotonic()
        for g in (g1, g2):
            g.define_and_start(conn)
        for g in (g1, g2):
            wait_for(lambda g=g: g.ready_line() in g.console(), 180, f"{g.name} ready line")
            print(f"\n{g.name}: ready {time.monotonic() - t0:.1f} s after start (two guests, TCG)")

        for g in (g1, g2):
            # QEMU runs under the guest's own uid, in QEMU's group.
            ids = proc_ids(g.qemu_pid())
            assert ids["Uid"] == [g.uid] * 4, ids
            assert ids["Gid"] == [qemu_gid()] * 4, ids
            # libvirt plugged the tap into br-int with the port id.
            def port():
                out = virtenv.vsctl("--bare", "--columns=name,ofport", "find", "Interface",
                                    f"external_ids:iface-id={g.port_id}").split()
                return out if len(out) == 2 and out[1].isdigit() and int(out[1]) > 0 else None
            name, _ = wait_for(port, 10, f"{g.name}'s tap in OVS with an ofport")
            assert name.startswith("vnet"), name
            ports = virtenv.vsctl("list-ports", "br-int").split()
            assert any(p.startswith("vnet") for p in ports), ports

        # The overlay is relabeled to its guest; the shared base is not.
        assert os.stat(g1.disk).st_uid == 20001
        assert os.stat(base).st_uid == 0
        # Another guest's uid reads the shared base (group) but not g1's disk.
        assert as_uid(20002, "head", "-c", "4", base).returncode == 0
        r = as_uid(20002, "cat", g1.disk)
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        r = as_uid(20001, "cat", g2.disk)
        assert r.returncode != 0 and "Permission denied" in r.stderr, r

        # ACPI power button: the guest powers itself off.
        t1 = time.monotonic()
        for g in (g1, g2):
            g.dom.shutdown()
        for g in (g1, g2):
            wait_for(lambda g=g: g.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF, 60,
                     f"{g.name} shut off")
        print(f"ACPI shutdown of both: {time.monotonic() - t1:.1f} s")
    finally:
        conn.close()


def test_stop_is_complete_and_idempotent(virtenv, guest_image):
    base = cache_image(virtenv.state_dir, guest_image)
    conn = virtenv.connect()
    g = Guest(virtenv, base, 20001, "vm-left", "10.0.0.7", "52:54:00:12:34:58")
    g.define_and_start(conn)
    conn.close()
    qemu = g.qemu_pid()
    pids = [virtenv.pid(n) for n in ("supervisor", "ovsdb-server", "ovs-vswitchd", "virtlogd",
                                     "libvirtd")]
    # A running guest and every daemon: stop leaves nothing.
    virtenv.stop()
    assert not os.path.exists(virtenv.dir)
    for p in pids + [qemu]:
        assert not os.path.exists(f"/proc/{p}") or "State:\tZ" in open(f"/proc/{p}/status").read()
    virtenv.stop()
