"""The test guest would configure itself from our config drive as intended.

The unit test binary writes its config drive (2 NICs, one with 2 IPs, keys, non-ASCII and
JSON-special metadata) into a directory; blkid must see an iso9660 filesystem labelled
config-2 (how cloud-init finds it), xorriso extracts it, and then the guest's own code runs
on it: the awk JSON flattener and the config-drive part of /init, both cut out of
deploy/images/build-guest-image.sh, run by busybox sh and busybox awk as in the guest.
Absolute paths are redirected into a scratch root, /sys/class/net holds two fake NICs, and
ip, ifconfig, route and usleep are stubs that record their arguments. The test then checks
the commands the guest would have run (addresses, netmasks, MTU, default route), its
resolv.conf, authorized_keys and hostname."""
import os
import re
import shutil
import subprocess

import pytest

from harness import BUILD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "deploy/images/build-guest-image.sh")
MAC0, MAC1 = "52:54:00:aa:bb:01", "52:54:00:12:34:02"  # as in tests/unit/test_config_drive.c


def heredoc(text, opener):
    """The body of the quoted here-document that starts on the line `opener`."""
    start = text.index(opener + "\n") + len(opener) + 1
    return text[start:text.index("\nEOF\n", start) + 1]


def guest_config_code(init):
    """/init from its helper functions to the end of the config-drive block."""
    start = init.index("flat() {")
    end = init.index('hostname "$HOST"\n', start)
    return init[start:end]


def redirect(code, root):
    for old, new in [("/lib/nodeagent/jsonflat.awk", f"{root}/jsonflat.awk"),
                     ("/sys/class/net", f"{root}/sys/class/net"),
                     ("/root/.ssh", f"{root}/ssh"),
                     ("/etc/resolv.conf", f"{root}/resolv.conf"),
                     ("/run/", f"{root}/run/")]:
        code = code.replace(old, new)
    assert re.search(r'(?<![\w}])/(run|etc|root|sys|lib)/', code) is None, "unredirected path"
    return code


@pytest.fixture
def drive(tmp_path):
    for tool in ("xorriso", "busybox", "blkid"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (deploy/deps.sh installs it)")
    binary = os.path.join(BUILD, "tests/unit/test_config_drive")
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([binary], env=dict(os.environ, NODEAGENT_CONFIG_DRIVE_OUT=str(out)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "config.iso"


def test_guest_configures_itself_from_our_config_drive(drive, tmp_path):
    # How cloud-init finds a config drive: blkid, TYPE=iso9660 and LABEL=config-2.
    r = subprocess.run(["blkid", "-p", "-o", "export", str(drive)], capture_output=True,
                       text=True, check=True)
    assert "TYPE=iso9660" in r.stdout.splitlines()
    assert "LABEL=config-2" in r.stdout.splitlines()

    cfg = tmp_path / "cfg"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(drive), "-extract", "/",
                    str(cfg)], capture_output=True, check=True)
    latest = cfg / "openstack/latest"
    assert sorted(os.listdir(latest)) == ["meta_data.json", "network_data.json", "user_data",
                                          "vendor_data.json"]

    text = open(SCRIPT).read()
    root = tmp_path / "guest"
    for d in ("run", "ssh", "bin", "sys/class/net/eth0", "sys/class/net/eth1"):
        (root / d).mkdir(parents=True)
    (root / "sys/class/net/eth0/address").write_text(MAC0 + "\n")
    (root / "sys/class/net/eth1/address").write_text(MAC1 + "\n")
    (root / "jsonflat.awk").write_text(heredoc(text, """cat >"$R/lib/nodeagent/jsonflat.awk" <<'EOF'"""))
    log = root / "cmds"
    for cmd in ("ip", "ifconfig", "route", "usleep"):
        stub = root / "bin" / cmd
        stub.write_text(f'#!/bin/sh\necho "{cmd} $*" >>"{log}"\n')
        stub.chmod(0o755)
    init = heredoc(text, """cat >>"$R/init" <<'EOF'""")
    code = redirect(guest_config_code(init), root)
    busybox = shutil.which("busybox")
    script = root / "config.sh"
    script.write_text(
        "DEFAULT_HOSTNAME=nodeagent-guest\nDEBUG=0\n"
        'say() { echo "nodeagent-guest: $*"; }\n'
        'warn() { echo "nodeagent-guest: warning: $*"; }\n'
        "dbg() { :; }\n"
        f"CFG={latest}\n" + code +
        'echo "HOST=$HOST FIRST_IP=$FIRST_IP"\n')
    # busybox applets (awk, grep, sed, tr, ...) as the guest has them, then the stubs.
    bb = root / "bb"
    bb.mkdir()
    for applet in ("awk", "grep", "sed", "tr", "cut", "sort", "cat", "chmod", "sh"):
        os.symlink(busybox, bb / applet)
    env = {"PATH": f"{root}/bin:{bb}", "HOME": str(root)}
    r = subprocess.run([busybox, "sh", str(script)], capture_output=True, text=True, env=env,
                       timeout=60)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stdout, r.stdout
    assert "HOST=web1.example FIRST_IP=10.0.0.5" in r.stdout

    cmds = log.read_text().splitlines()
    assert cmds == [
        "ip link set dev eth0 mtu 1450",
        "ip link set dev eth0 up",
        "ip link set dev eth1 up",  # mtu null: left as it is
        "ifconfig eth0 10.0.0.5 netmask 255.255.255.0 up",
        "ip route replace default via 10.0.0.1 dev eth0",
        # NB: busybox ifconfig replaces the interface's primary address, so in a real
        # guest this second address would replace 10.0.0.5 (a limitation of the guest's
        # /init, not of the drive, which lists both).
        "ifconfig eth0 10.0.1.7 netmask 255.255.255.240 up",
        "ifconfig eth1 192.168.5.9 netmask 255.255.0.0 up",
    ], cmds
    assert (root / "resolv.conf").read_text() == "nameserver 10.0.0.2\nnameserver 2001:db8::53\n"
    keys = (root / "ssh/authorized_keys").read_text().splitlines()
    assert len(keys) == 2
    assert keys[0].startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0 alice@example")
    assert keys[1].startswith("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC bob@example")

    # The flattener also copes with the non-ASCII and JSON-special metadata.
    r = subprocess.run([busybox, "awk", "-f", str(root / "jsonflat.awk"),
                        str(latest / "meta_data.json")], capture_output=True, text=True,
                       check=True)
    flat = r.stdout.splitlines()
    assert "meta.ünïcødé ☃=値 😀 ß" in flat
    assert 'meta.role=db "primary" \\ back/slash\\n\ttab </script>' in flat
    assert "uuid=6f1c0f4e-5b0a-4d3c-9a2e-1d2c3b4a5f60" in flat
