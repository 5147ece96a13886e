"""Test guests on a private virtualization host (deploy/virtenv.py).

The guest image is built once by deploy/images/build-guest-image.sh into build/images
(or $NODEAGENT_IMAGES) and reused while it is there and the builder is unchanged (its
sha256 is kept beside the image).  On a host, an image is cached as
<state>/images/<sha256> (root:libvirt-qemu 0440 in a root:libvirt-qemu 0750 directory) and
each instance gets <state>/instances/<uuid>/ (owned by the guest's uid, 0700) with a qcow2
overlay `disk`, a config drive `disk.config` and `console.log`, as DESIGN.md section 6 lays
out.  The domain XML follows DESIGN.md section 10: TCG, machine pc, IDE cdrom config drive,
an OVS port on br-int, and a static DAC label per guest uid.
"""
import grp
import hashlib
import json
import os
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGES = os.environ.get("NODEAGENT_IMAGES", os.path.join(ROOT, "build", "images"))
IMAGE_NAME = "nodeagent-guest.qcow2"
QEMU_GROUP = "libvirt-qemu"


def qemu_gid():
    return grp.getgrnam(QEMU_GROUP).gr_gid


def guest_image():
    """Path of the test guest image, built when it is not there yet or was built by another
    version of the builder (about 10 s; the downloads stay cached)."""
    path = os.path.join(IMAGES, IMAGE_NAME)
    builder = os.path.join(ROOT, "deploy/images/build-guest-image.sh")
    stamp = path + ".builder-sha256"
    want = sha256_file(builder)
    try:
        with open(stamp) as f:
            have = f.read().strip()
    except FileNotFoundError:
        have = None
    if not os.path.exists(path) or have != want:
        subprocess.run([builder, IMAGES], check=True, capture_output=True, timeout=600)
        with open(stamp, "w") as f:
            f.write(want + "\n")
    return path


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_image(state_dir, src):
    """Copies src into <state_dir>/images/<sha256>, read-only for root and QEMU's group."""
    gid = qemu_gid()
    images = os.path.join(state_dir, "images")
    os.makedirs(images, exist_ok=True)
    os.chown(images, 0, gid)
    os.chmod(images, 0o750)
    digest = sha256_file(src)
    dst = os.path.join(images, digest)
    if not os.path.exists(dst):
        tmp = dst + ".part"
        shutil.copyfile(src, tmp)
        os.chown(tmp, 0, gid)
        os.chmod(tmp, 0o440)
        os.rename(tmp, dst)
    return dst


def config_drive(path, workdir, name, hostname, inst_uuid, mac, ip, prefix=24, gateway=None):
    """An OpenStack config-2 ISO9660 image with meta_data.json and network_data.json."""
    tree = os.path.join(workdir, "config-drive")
    latest = os.path.join(tree, "openstack", "latest")
    os.makedirs(latest)
    with open(os.path.join(latest, "meta_data.json"), "w") as f:
        json.dump({"uuid": inst_uuid, "name": name, "hostname": hostname}, f)
    netmask = ".".join(str((0xFFFFFFFF << (32 - prefix) >> s) & 0xFF) for s in (24, 16, 8, 0))
    routes = []
    if gateway:
        routes = [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": gateway}]
    with open(os.path.join(latest, "network_data.json"), "w") as f:
        json.dump({
            "links": [{"id": "l0", "type": "phy", "ethernet_mac_address": mac, "mtu": 1450}],
            "networks": [{"id": "n0", "link": "l0", "type": "ipv4", "ip_address": ip,
                          "netmask": netmask, "routes": routes}],
            "services": [],
        }, f)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-J", "-R",
                    "-o", path, tree], check=True, capture_output=True, timeout=60)
    shutil.rmtree(tree)
    return path


def domain_xml(name, dom_uuid, disk, base, config_iso, console_log, bridge, port_id, mac,
               uid, gid, memory_mib=256):
    d = ET.Element("domain", type="qemu")
    ET.SubElement(d, "name").text = name
    ET.SubElement(d, "uuid").text = dom_uuid
    ET.SubElement(d, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(d, "vcpu").text = "1"
    os_ = ET.SubElement(d, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    features = ET.SubElement(d, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    ET.SubElement(d, "clock", offset="utc")
    ET.SubElement(d, "on_poweroff").text = "destroy"
    ET.SubElement(d, "on_reboot").text = "restart"
    ET.SubElement(d, "on_crash").text = "destroy"
    dev = ET.SubElement(d, "devices")

    disk_el = ET.SubElement(dev, "disk", type="file", device="disk")
    ET.SubElement(disk_el, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk_el, "source", file=disk)
    bs = ET.SubElement(disk_el, "backingStore", type="file")
    ET.SubElement(bs, "format", type="qcow2")
    bs_src = ET.SubElement(bs, "source", file=base)
    ET.SubElement(bs_src, "seclabel", model="dac", relabel="no")
    ET.SubElement(bs, "backingStore")
    ET.SubElement(disk_el, "target", dev="vda", bus="virtio")

    cd = ET.SubElement(dev, "disk", type="file", device="cdrom")
    ET.SubElement(cd, "driver", name="qemu", type="raw")
    ET.SubElement(cd, "source", file=config_iso)
    ET.SubElement(cd, "target", dev="hdc", bus="ide")
    ET.SubElement(cd, "readonly")

    nic = ET.SubElement(dev, "interface", type="bridge")
    ET.SubElement(nic, "mac", address=mac)
    ET.SubElement(nic, "source", bridge=bridge)
    vp = ET.SubElement(nic, "virtualport", type="openvswitch")
    ET.SubElement(vp, "parameters", interfaceid=port_id)
    ET.SubElement(nic, "model", type="virtio")

    serial = ET.SubElement(dev, "serial", type="pty")
    ET.SubElement(serial, "log", file=console_log, append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(dev, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    ET.SubElement(dev, "memballoon", model="none")

    sl = ET.SubElement(d, "seclabel", type="static", model="dac", relabel="yes")
    ET.SubElement(sl, "label").text = f"+{uid}:+{gid}"
    return ET.tostring(d, encoding="unicode")


class Guest:
    """One instance on a VirtEnv: its files, its domain, its OVS port."""

    def __init__(self, env, base, uid, name, ip, mac):
        self.env = env
        self.uid = uid
        self.gid = qemu_gid()
        self.name = name
        self.uuid = str(uuid.uuid4())
        self.port_id = str(uuid.uuid4())
        self.ip = ip
        self.mac = mac
        self.dir = os.path.join(env.state_dir, "instances", self.uuid)
        self.disk = os.path.join(self.dir, "disk")
        self.config = os.path.join(self.dir, "disk.config")
        self.console_log = os.path.join(self.dir, "console.log")
        os.makedirs(os.path.join(env.state_dir, "instances"), mode=0o711, exist_ok=True)
        os.chmod(os.path.join(env.state_dir, "instances"), 0o711)
        os.makedirs(self.dir)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
                        self.disk], check=True, capture_output=True, timeout=60)
        config_drive(self.config, self.dir, name, name, self.uuid, mac, ip)
        os.chown(self.dir, uid, self.gid)
        os.chmod(self.dir, 0o700)
        self.xml = domain_xml(name, self.uuid, self.disk, base, self.config, self.console_log,
                              env.bridge, self.port_id, mac, uid, self.gid)
        self.dom = None

    def define_and_start(self, conn):
        self.dom = conn.defineXML(self.xml)
        self.dom.create()
        return self.dom

    def console(self):
        try:
            with open(self.console_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def ready_line(self):
        return f"nodeagent-guest: ready {self.name} {self.ip}"

    def qemu_pid(self):
        with open(os.path.join(self.env.dir, "libvirt/run/qemu", f"{self.name}.pid")) as f:
            return int(f.read().strip())
