#!/usr/bin/python3
"""bench/create_latency.py: instance create latency through the agent, against `virsh create`
and `virt-install --import`, and ten concurrent creates against ten sequential ones (issue 3,
benchmarks (a) and (c)).

    /usr/bin/python3 bench/create_latency.py --build build/release [--count 10] [--rounds 3]

Everything runs on loopback on one private host (deploy/virtenv.py: libvirtd, virtlogd, OVS in
namespaces of their own, guests under TCG): the devbus and one agent (`[agent] workers = 12`,
`virt_type = qemu`, `cpu_mode = none`, the dev stack's `[bus.rdkafka] fetch.wait.max.ms = 10`)
started with tests/system/harness.py, the test guest
image (tests/system/guests.py) served by deploy/imageserver.py.  Modules are imported from
their place in the tree, not copied.  The guest image is downloaded once, by an untimed
warm-up create; every timed create uses the cached image.

(a) Latency, interleaved: each round runs one sample of each tool, the order rotating every
round, and every guest is deleted before the next sample (untimed), so one guest at a time
boots.
  - agent: the driver's wall clock (time.time()) just before it starts `nodectl create`
    (without --wait), to the `time_ms` the agent stamped on the request's DONE event (state
    RUNNING).  This includes nodectl's start and its Kafka produce, the bus, the agent's work
    (overlay, config drive, define, start, power check) and nothing of the event's way back.
    ACCEPTED's `time_ms` splits it into "until accepted" and "agent".  The DONE events are
    read by one `nodectl events` started before the first sample.
  - virsh create: the agent's own domain XML (`virsh dumpxml --inactive` of the warm-up
    instance), with a fresh uuid, name, MAC, OVS port id and tap name, files in a fresh place,
    and without the agent's <metadata> (so that the agent never takes the domain for one of
    its own); per sample a fresh overlay (`qemu-img create -f qcow2 -b BASE -F qcow2`, on the
    agent's cached image) and a copy of the warm-up instance's config drive, made untimed.
    Timed: `virsh -c URI create FILE` from spawn to exit (it returns once the domain runs).
  - virt-install --import: the same kind of overlay and config drive, flags chosen to give the
    guest the agent gives (see VIRT_INSTALL_FLAGS), timed from spawn to exit (with
    --noautoconsole it returns once the domain runs).
  - libvirt define + create: the agent's own two libvirt calls (defineXML, create) on virsh's
    XML and files, made on the driver's libvirt connection and timed around the two calls:
    the floor under the agent's create.
  After each sample the driver checks with libvirt that the domain is running.

(c) Ten creates through the agent, sent one after another each waiting for its DONE
(sequential) or all at once (concurrent), `--rounds` times each, alternating which goes
first; wall time from the first `nodectl create` started to the last DONE's time_ms.  The ten
guests are deleted (untimed) after each phase.

Output: Markdown sections on stdout for docs/benchmarks.md; progress on stderr.  Exit status 1
on any failure (a failed create, a domain not running, a tool's non-zero exit), after
cleaning up everything started here (agent, devbus, image server, virtenv).
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
sys.path.insert(0, os.path.join(ROOT, "deploy"))

TARGET_RATIO = 1.0  # issue 11: the agent at or below virsh create (ratio of medians)
MEMORY_MIB = 256
DISK_GIB = 1
# Every guest on the one tenant network of VNI 7 (the agent refuses two networks with one VNI).
BENCH_NETWORK = "5e0f7a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
PEER_UID = 79990  # peers' guests' uid: in the agent's range's top, one guest at a time
EVENT_TIMEOUT = 180

# virt-install flags giving the guest the agent gives (compare hypervisor/domain_xml.c):
# TCG, machine pc, 1 vCPU, 256 MiB, no KSM, qcow2 root disk on virtio, the config drive as a
# read-only IDE cdrom, one virtio NIC on the OVS bridge with a port id, a pty serial console
# logged to a file, no graphics, a virtio RNG, the guest under its own +uid:+gid.
# --osinfo generic: no OS-specific device choices (and no osinfo-db lookups of the disk).
# The defaults virt-install would add beyond libvirt's are overridden where it allows: one
# piix3 USB controller instead of four ich9 ones, QEMU's own timers (naming one timer stops
# virt-install adding its three; hpet present is QEMU's default for pc).  What is left
# different: <pm> suspend disabled, hpet named, no <title>, and the base image relabelled (virt-install has no
# relabel=no for a backing file; its overlays get a copy of the base of their own, so that
# the agent's cached image is never relabelled).
VIRT_INSTALL_FLAGS = (
    "--import --noautoconsole --osinfo generic --virt-type qemu --machine pc "
    "--vcpus 1 --memory 256 --memorybacking nosharepages=on --cpu none "
    "--clock offset=utc,timer0.name=hpet,timer0.present=yes "
    "--disk path=DISK,format=qcow2,bus=virtio,discard=unmap "
    "--disk path=CONFIG,device=cdrom,bus=ide,target.dev=hdc,format=raw,readonly=on "
    "--network bridge=BRIDGE,model=virtio,mac=MAC,mtu.size=1450,target.dev=TAP,"
    "virtualport.type=openvswitch,virtualport.parameters.interfaceid=PORT "
    "--controller usb,model=piix3-uhci --memballoon model=virtio,stats.period=10 "
    "--serial pty,log.file=CONSOLE,log.append=on --graphics none --rng /dev/urandom "
    "--events on_poweroff=destroy,on_reboot=restart,on_crash=destroy "
    "--seclabel type=static,model=dac,label=+UID:+GID,relabel=yes")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def stats(values):
    """median, p90 (nearest rank, as bench/overlay.c), mean, min, max."""
    v = sorted(values)
    n = len(v)
    p90 = v[(9 * n + 9) // 10 - 1]
    return {"median": statistics.median(v), "p90": p90, "mean": statistics.fmean(v),
            "min": v[0], "max": v[-1]}


def rand_mac():
    return "52:54:00:" + os.urandom(3).hex(":")


# --- the stack -----------------------------------------------------------------------------

class Events:
    """One `nodectl events --json` for the whole run; events by request id."""

    def __init__(self, cluster, logdir):
        from harness import NODECTL
        self.stderr = open(os.path.join(logdir, "events.log"), "w")
        self.proc = subprocess.Popen(
            [NODECTL, "--bootstrap", cluster.devbus.bootstrap, "--prefix", cluster.prefix,
             "--node", "n1", "events", "--json"],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.cond = threading.Condition()
        self.by_request = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            e = json.loads(line)
            with self.cond:
                self.by_request.setdefault(e.get("request_id"), []).append(e)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def terminal(self, request_id, timeout=EVENT_TIMEOUT):
        """(ACCEPTED, DONE) of a request; raises on FAILED, a DONE not RUNNING, or a timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                evs = self.by_request.get(request_id, [])
                end = [e for e in evs if e["kind"] in ("DONE", "FAILED")]
                if end:
                    break
                if self.proc.poll() is not None:
                    raise BenchError(f"nodectl events exited with {self.proc.returncode}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"no DONE or FAILED for request {request_id} in {timeout} s")
                self.cond.wait(min(left, 1.0))
        done = end[0]
        if done["kind"] != "DONE" or done.get("state") != "RUNNING":
            raise BenchError(f"request {request_id} ended {done['kind']} "
                             f"state={done.get('state')}: {json.dumps(done)}")
        acc = [e for e in evs if e["kind"] == "ACCEPTED"]
        if not acc:
            raise BenchError(f"request {request_id}: DONE without ACCEPTED")
        return acc[0], done

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)
        self.stderr.close()


class Stack:
    """Image server, virtenv, devbus, agent, events follower: started in order, stopped in
    reverse, each by what started it."""

    def __init__(self, build, agent_config=""):
        """agent_config: more of the agent's configuration (bench/guest_metrics_scrape.py)."""
        os.environ["NODEAGENT_BUILD"] = build
        self.agent_config = agent_config
        self.work = tempfile.mkdtemp(prefix="nodeagent-bench-create-")
        os.chmod(self.work, 0o755)
        self.images_root = None
        self.server = None
        self.env = None
        self.cluster = None
        self.agent = None
        self.events = None
        self.conn = None

    def start(self):
        import guests
        import harness
        from virtenv import VirtEnv
        self.images_root = os.path.join(self.work, "images")
        os.mkdir(self.images_root)
        image = os.path.join(self.images_root, "guest.qcow2")
        shutil.copy(guests.guest_image(), image)
        self.image_sha = guests.sha256_file(image)
        self.server = subprocess.Popen([sys.executable, os.path.join(ROOT, "deploy/imageserver.py"),
                                        "--root", self.images_root], stdout=subprocess.PIPE,
                                       text=True)
        self.image_url = self.server.stdout.readline().strip() + "guest.qcow2"
        if not self.image_url.startswith("http://"):
            raise BenchError("deploy/imageserver.py printed no URL")

        # QEMU's uids must traverse the virtenv's directory: under /tmp, as the tests do.
        self.env = VirtEnv(tempfile.mkdtemp(prefix="nodeagent-virtenv-bench-"))
        os.rmdir(self.env.dir)
        self.env.start()
        import libvirt
        self.conn = libvirt.open(self.env.uri)

        logdir = os.path.join(self.work, "logs")
        os.mkdir(logdir)
        self.cluster = harness.Cluster(logdir)
        self.agent = self.cluster.agent(virtenv=self.env, extra_config="[agent]\nworkers = 12\n"
                                        + self.agent_config)
        self.agent.start()
        self.agent.wait_healthy(need=("bus", "database", "libvirt"))
        self.events = Events(self.cluster, logdir)
        time.sleep(1)  # the follower's partitions are assigned at the end of the topic

    def stop(self, failed):
        if failed and self.agent and self.agent.log_paths:
            try:
                log("agent log (tail):\n" + self.agent.logs()[-4000:])
            except OSError:
                pass
        steps = (("events", lambda: self.events and self.events.stop()),
                 ("libvirt connection", lambda: self.conn and self.conn.close()),
                 ("agent and devbus", lambda: self.cluster and self.cluster.close()),
                 ("virtenv", lambda: self.env and self.env.stop()),
                 ("image server", self._stop_server))
        for what, fn in steps:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - teardown is best effort, and says so
                log(f"stopping {what}: {e}")
        shutil.rmtree(self.work, ignore_errors=True)

    def _stop_server(self):
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(10)

    def domain_running(self, name=None, dom_uuid=None):
        import libvirt
        dom = self.conn.lookupByName(name) if name else self.conn.lookupByUUIDString(dom_uuid)
        state = dom.state()[0]
        if state != libvirt.VIR_DOMAIN_RUNNING:
            raise BenchError(f"domain {dom.name()} is in state {state}, not running")

    # --- the agent

    def send_create(self, inst, name, memory_mib=MEMORY_MIB, ip="10.0.0.5"):
        """Starts `nodectl create` (no --wait); returns (request_id, wall clock at spawn, proc).
        Guests that live at the same time need addresses of their own (ip)."""
        from harness import NODECTL
        rid = str(uuid.uuid4())
        args = [NODECTL, "--bootstrap", self.cluster.devbus.bootstrap, "--prefix",
                self.cluster.prefix, "--node", "n1", "create", "--uuid", inst, "--name", name,
                "--tenant", "bench", "--vcpus", "1", "--memory-mib", str(memory_mib),
                "--disk-gib", str(DISK_GIB), "--image-id", "guest", "--image-url",
                self.image_url, "--image-sha256", self.image_sha, "--image-format", "qcow2",
                "--hostname", name, "--nic",
                f"port={uuid.uuid4()},network={BENCH_NETWORK},vni=7,mac={rand_mac()},"
                f"ip={ip}/24,gateway=10.0.0.1,mtu=1450", "--request-id", rid]
        t0 = time.time()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return rid, t0, proc

    @staticmethod
    def sent(proc):
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise BenchError(f"nodectl create exited {proc.returncode}: {err.strip()}")

    def agent_create(self, name):
        """One timed create; returns (instance, {"done", "accepted", "nodectl"}: ms from the
        spawn of nodectl to DONE, to ACCEPTED, and to nodectl's exit)."""
        inst = str(uuid.uuid4())
        rid, t0, proc = self.send_create(inst, name)
        self.sent(proc)
        exited = time.time()
        acc, done = self.events.terminal(rid)
        self.domain_running(dom_uuid=inst)
        return inst, {"done": done["time_ms"] - t0 * 1000,
                      "accepted": acc["time_ms"] - t0 * 1000, "nodectl": (exited - t0) * 1000}

    def agent_delete(self, inst):
        r = self.cluster.nodectl("delete", inst, "--wait", "--json", "--timeout", 120,
                                 timeout=180)
        if r.returncode != 0:
            raise BenchError(f"nodectl delete {inst} exited {r.returncode}: {r.stdout} {r.stderr}")


# --- the peers -----------------------------------------------------------------------------

class Peers:
    """Files and domains of `virsh create` and `virt-install` samples."""

    def __init__(self, stack, template_xml, config_drive, base):
        self.stack = stack
        # virt-install's guests relabel their backing file: theirs is a copy of the agent's
        # cached image (same bytes, same group and mode), outside the agent's cache.
        copy_dir = os.path.join(stack.env.state_dir, "bench-base")
        os.makedirs(copy_dir)
        os.chmod(copy_dir, 0o711)
        copy = os.path.join(copy_dir, os.path.basename(base))
        shutil.copyfile(base, copy)
        st = os.stat(base)
        os.chown(copy, st.st_uid, st.st_gid)
        os.chmod(copy, st.st_mode & 0o7777)
        self.base = {"virsh": base, "virt-install": copy, "api": base}
        self.config_drive = config_drive
        self.gid = __import__("guests").qemu_gid()
        # One directory per tool (virt-install makes a storage pool of a disk's directory:
        # one pool for the run, made by the warm-up).
        self.dirs = {}
        for tool in ("virsh", "virt-install", "api"):
            d = os.path.join(stack.env.state_dir, f"bench-{tool}")
            os.makedirs(d)
            os.chmod(d, 0o711)
            self.dirs[tool] = d
        self.template = template_xml

    def files(self, tool, dom_uuid):
        d = self.dirs[tool]
        disk = os.path.join(d, f"{dom_uuid}.disk")
        config = os.path.join(d, f"{dom_uuid}.config")
        console = os.path.join(d, f"{dom_uuid}.console.log")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", self.base[tool], "-F",
                        "qcow2", disk, f"{DISK_GIB}G"], check=True, capture_output=True,
                       timeout=60)
        shutil.copyfile(self.config_drive, config)
        return disk, config, console

    def remove_files(self, tool, dom_uuid):
        d = self.dirs[tool]
        for n in os.listdir(d):
            if n.startswith(dom_uuid):
                os.unlink(os.path.join(d, n))

    def virsh_xml(self, name, dom_uuid, disk, config, console):
        """The agent's XML with a fresh identity and files."""
        root = ET.fromstring(self.template)
        root.find("name").text = name
        root.find("uuid").text = dom_uuid
        md = root.find("metadata")
        if md is not None:
            root.remove(md)
        for d in root.find("devices").findall("disk"):
            src = d.find("source")
            src.set("file", disk if d.get("device") == "disk" else config)
        for tag in ("serial", "console"):
            for el in root.find("devices").findall(tag):
                lg = el.find("log")
                if lg is not None:
                    lg.set("file", console)
        port = str(uuid.uuid4())
        for nic in root.find("devices").findall("interface"):
            nic.find("mac").set("address", rand_mac())
            nic.find("virtualport/parameters").set("interfaceid", port)
            nic.find("target").set("dev", "tap" + port[:11])
        label = root.find("seclabel/label")
        label.text = f"+{PEER_UID}:+{self.gid}"
        return ET.tostring(root, encoding="unicode")

    def virsh_create(self, i):
        dom_uuid = str(uuid.uuid4())
        name = f"bench-virsh-{i}"
        disk, config, console = self.files("virsh", dom_uuid)
        xml_path = os.path.join(self.stack.work, f"{name}.xml")
        with open(xml_path, "w") as f:
            f.write(self.virsh_xml(name, dom_uuid, disk, config, console))
        cmd = ["virsh", "-q", "-c", self.stack.env.uri, "create", xml_path]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        ms = (time.monotonic() - t0) * 1000
        if r.returncode != 0:
            raise BenchError(f"virsh create exited {r.returncode}: {r.stderr.strip()}")
        self.stack.domain_running(name=name)
        return name, dom_uuid, ms

    def api_create(self, i):
        """The agent's two libvirt calls, defineXML and create, made here on the driver's own
        connection: what libvirt alone takes for the agent's persistent domain."""
        dom_uuid = str(uuid.uuid4())
        name = f"bench-api-{i}"
        disk, config, console = self.files("api", dom_uuid)
        xml = self.virsh_xml(name, dom_uuid, disk, config, console)
        t0 = time.monotonic()
        dom = self.stack.conn.defineXML(xml)
        dom.create()
        ms = (time.monotonic() - t0) * 1000
        self.stack.domain_running(name=name)
        return name, dom_uuid, ms

    def virt_install_args(self, name, dom_uuid, disk, config, console):
        port = str(uuid.uuid4())
        sub = {"DISK": disk, "CONFIG": config, "BRIDGE": self.stack.env.bridge,
               "MAC": rand_mac(), "PORT": port, "TAP": "tap" + port[:11],
               "CONSOLE": console, "UID": str(PEER_UID), "GID": str(self.gid)}
        flags = re.sub("|".join(sub), lambda m: sub[m.group(0)], VIRT_INSTALL_FLAGS)
        return ["virt-install", "--connect", self.stack.env.uri, "--name", name,
                "--uuid", dom_uuid] + flags.split()

    def virt_install(self, i):
        dom_uuid = str(uuid.uuid4())
        name = f"bench-vi-{i}"
        disk, config, console = self.files("virt-install", dom_uuid)
        cmd = self.virt_install_args(name, dom_uuid, disk, config, console)
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        ms = (time.monotonic() - t0) * 1000
        if r.returncode != 0:
            raise BenchError(f"virt-install exited {r.returncode}: {r.stderr.strip()}")
        self.stack.domain_running(name=name)
        return name, dom_uuid, ms

    def remove(self, tool, name, dom_uuid):
        import libvirt
        try:
            dom = self.stack.conn.lookupByName(name)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            persistent = dom.isPersistent()  # virt-install defines; virsh create does not
            if dom.isActive():
                dom.destroy()
            if persistent:
                dom.undefine()
        self.remove_files(tool, dom_uuid)


# --- (a) latency ---------------------------------------------------------------------------

TOOLS = ("agent", "virsh create", "virt-install", "libvirt define + create")


def bench_latency(stack, peers, count, tools=TOOLS):
    """count interleaved rounds; returns {tool: [ms]} and the agent's split."""
    samples = {t: [] for t in tools}
    split = {"accepted": [], "nodectl": []}
    for i in range(count):
        order = tools[i % len(tools):] + tools[:i % len(tools)]
        for tool in order:
            if tool == "agent":
                inst, t = stack.agent_create(f"lat{i}")
                stack.agent_delete(inst)
                ms = t["done"]
                split["accepted"].append(t["accepted"])
                split["nodectl"].append(t["nodectl"])
            elif tool == "virsh create":
                name, dom_uuid, ms = peers.virsh_create(i)
                peers.remove("virsh", name, dom_uuid)
            elif tool == "libvirt define + create":
                name, dom_uuid, ms = peers.api_create(i)
                peers.remove("api", name, dom_uuid)
            else:
                name, dom_uuid, ms = peers.virt_install(i)
                peers.remove("virt-install", name, dom_uuid)
            samples[tool].append(ms)
        log(f"latency round {i + 1}/{count}: " +
            ", ".join(f"{t} {samples[t][-1]:.0f} ms" for t in tools))
    return samples, split


# --- (c) concurrency -----------------------------------------------------------------------

N_CONCURRENT = 10


def ten_creates(stack, concurrent, tag):
    """Ten creates; wall ms from the first nodectl started to the last DONE."""
    insts = [str(uuid.uuid4()) for _ in range(N_CONCURRENT)]
    t_first = None
    last_done = 0
    if concurrent:
        sent = [stack.send_create(inst, f"{tag}{k}", ip=f"10.0.0.{10 + k}")
                for k, inst in enumerate(insts)]
        t_first = sent[0][1]
        for _, _, proc in sent:
            stack.sent(proc)
        for rid, _, _ in sent:
            last_done = max(last_done, stack.events.terminal(rid)[1]["time_ms"])
    else:
        for k, inst in enumerate(insts):
            rid, t0, proc = stack.send_create(inst, f"{tag}{k}", ip=f"10.0.0.{10 + k}")
            t_first = t0 if t_first is None else t_first
            stack.sent(proc)
            last_done = stack.events.terminal(rid)[1]["time_ms"]
    for inst in insts:
        stack.domain_running(dom_uuid=inst)
    ms = last_done - t_first * 1000
    for inst in insts:
        stack.agent_delete(inst)
    return ms


def bench_concurrency(stack, rounds):
    out = {"sequential": [], "concurrent": []}
    for r in range(rounds):
        order = ("sequential", "concurrent") if r % 2 == 0 else ("concurrent", "sequential")
        for mode in order:
            out[mode].append(ten_creates(stack, mode == "concurrent", f"{mode[0]}{r}x"))
            log(f"ten creates, {mode}, round {r + 1}/{rounds}: {out[mode][-1]:.0f} ms")
    return out


# --- report --------------------------------------------------------------------------------

def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def split_rows(p, lat, split):
    accepted = split["accepted"]
    agent_part = [d - a for d, a in zip(lat, accepted)]
    for what, v in (("agent: nodectl spawn to its exit (sent, delivery acknowledged)",
                     split["nodectl"]),
                    ("agent: nodectl spawn to ACCEPTED", accepted),
                    ("agent: ACCEPTED to DONE", agent_part)):
        s = stats(v)
        p(f"| {what} | {s['median']:.0f} | {s['p90']:.0f} | {s['mean']:.0f} | "
          f"{s['min']:.0f} | {s['max']:.0f} |")
    return agent_part


def report(count, rounds, lat, split, conc, setup_s):
    from harness import DEVBUS_FETCH_WAIT_MS
    p = print
    st = {t: stats(lat[t]) for t in TOOLS}
    qemu = version(["qemu-system-x86_64", "--version"])
    libvirt_v = version(["libvirtd", "--version"])
    p("## Create latency, cached image: the agent against virsh create and virt-install")
    p()
    p(f"`bench/create_latency.py` created {count} guests per tool on one private host")
    p("(`deploy/virtenv.py`: its own libvirtd and Open vSwitch, guests under TCG as there is no")
    p(f"KVM here; {libvirt_v}, {qemu}, virt-install {version(['virt-install', '--version'])}),")
    p("interleaved one sample per tool per round (the order rotating every round), each guest")
    p("deleted before the next sample, so one guest at a time boots.  Every guest: 1 vCPU,")
    p(f"{MEMORY_MIB} MiB, a {DISK_GIB} GiB qcow2 overlay on the cached test guest image, the config drive as")
    p("an IDE cdrom, one virtio NIC on the OVS bridge, a logged pty serial console, its own")
    p("uid.  The image was downloaded by an untimed warm-up create, and each peer ran once")
    p("untimed before the samples.  After each sample libvirt must report the domain running.")
    p()
    p("- **agent**: from the driver's clock just before it starts `nodectl create` (no")
    p("  `--wait`) to the `time_ms` the agent stamps on the DONE event (state RUNNING): nodectl's")
    p("  start and Kafka produce, the devbus, and the agent's whole create (overlay, config")
    p("  drive, define, start, power check); not the event's way back to a client.")
    p("- **virsh create**: `virsh -c URI create FILE`, spawn to exit, FILE being the agent's own")
    p("  domain XML (`virsh dumpxml --inactive` of the warm-up instance) with a fresh uuid, name,")
    p("  MAC, port id and tap, its own files, and without the agent's `<metadata>`.  Its overlay")
    p("  (`qemu-img create -f qcow2 -b BASE -F qcow2`) and config drive copy are made untimed")
    p("  beforehand: the agent's time includes making both, virsh's does not.")
    p("- **virt-install**: spawn to exit of `virt-install --connect URI --name N --uuid U`")
    p(f"  `{VIRT_INSTALL_FLAGS}`")
    p("  on an overlay and config drive made like virsh's (with `--noautoconsole`, an `--import`")
    p("  returns once the domain runs).  Like the agent it defines a persistent domain.")
    p("- **libvirt define + create**: the agent's own two libvirt calls (`virDomainDefineXML`,")
    p("  `virDomainCreate`) on virsh's XML and files, made by this driver on its open libvirt")
    p("  connection and timed around the two calls: what libvirt alone needs for the agent's")
    p("  persistent domain, with no process start, bus, store or file of the agent's.")
    p()
    p("Milliseconds:")
    p()
    p("| tool | median | p90 | mean | min | max |")
    p("|------|-------:|----:|-----:|----:|----:|")
    for t in TOOLS:
        s = st[t]
        p(f"| {t} | {s['median']:.0f} | {s['p90']:.0f} | {s['mean']:.0f} | {s['min']:.0f} | "
          f"{s['max']:.0f} |")
    agent_part = split_rows(p, lat["agent"], split)
    p()
    r_virsh = st["agent"]["median"] / st["virsh create"]["median"]
    r_vi = st["agent"]["median"] / st["virt-install"]["median"]
    p("| ratio of medians | value |")
    p("|------------------|------:|")
    p(f"| agent / virsh create | {r_virsh:.2f}x |")
    p(f"| agent / virt-install | {r_vi:.2f}x |")
    p(f"| agent p90 / virsh create p90 | "
      f"{st['agent']['p90'] / st['virsh create']['p90']:.2f}x |")
    api_med = st["libvirt define + create"]["median"]
    p(f"| agent ACCEPTED to DONE / libvirt define + create | "
      f"{stats(agent_part)['median'] / api_med:.2f}x |")
    p(f"| virsh create / libvirt define + create | "
      f"{st['virsh create']['median'] / api_med:.2f}x |")
    p()
    acc_med = stats(split["accepted"])["median"]
    nodectl_med = stats(split["nodectl"])["median"]
    own = stats(agent_part)["median"] / st["virsh create"]["median"]
    p(f"Where the agent's time goes: nodectl has the request acknowledged by the devbus after "
      f"{nodectl_med:.0f} ms (median), the agent records it ACCEPTED after {acc_med:.0f} ms; "
      f"from ACCEPTED to DONE (the agent's own create: its four recorded phases, disk, "
      f"define, start and bind, each written to the store before its step) takes "
      f"**{own:.2f}x** virsh create's median.  The wait before ACCEPTED is mostly the "
      f"agent's Kafka consumer waiting out an empty fetch: a real Kafka broker answers a "
      f"long-poll as soon as data arrives, but the devbus is librdkafka's mock cluster, "
      f"whose Fetch handler (`src/rdkafka_mock_handlers.c`) says \"If there was no data, "
      f"delay up to MaxWait.  This isn't strictly correct since we should cut the wait short "
      f"and feed newly produced data if a producer writes to the partitions\".  The dev "
      f"stack (`make run`, the tests and this benchmark) therefore runs the agent with "
      f"`[bus.rdkafka] fetch.wait.max.ms = {DEVBUS_FETCH_WAIT_MS}`; the agent's own default "
      f"(100 ms, for a real broker, where a shorter long-poll buys no latency and costs idle "
      f"fetches) is unchanged.")
    p()
    met = r_virsh <= TARGET_RATIO and own <= TARGET_RATIO
    p(f"**Target** (issue 11): the agent's create, ACCEPTED to DONE, no slower against "
      f"`virsh create` than before its steps were recorded (about 1.0x), and the whole "
      f"request as shipped on the devbus at or below {TARGET_RATIO}x (ratios of medians).  "
      f"**This run: {'met' if met else 'not met'}** (ACCEPTED to DONE {own:.2f}x; as shipped "
      f"{r_virsh:.2f}x, which still counts nodectl's start, its produce and the mock's "
      f"residual fetch wait against the agent).  The floor under both: libvirt's own "
      f"define and start of the agent's domain take {api_med:.0f} ms (median) here, so the "
      f"agent's own work from ACCEPTED to DONE (files, store, events) costs "
      f"{stats(agent_part)['median'] - api_med:.0f} ms over what libvirt alone needs, and the "
      f"whole request as shipped {st['agent']['median'] - api_med:.0f} ms.")
    p()

    sq, cc = stats(conc["sequential"]), stats(conc["concurrent"])
    p("## Ten concurrent creates against ten sequential ones, through the agent")
    p()
    p("Same host and cached image, agent with `[agent] workers = 12`.  Sequential: ten")
    p("`nodectl create`, each started after the previous one's DONE.  Concurrent: ten")
    p("`nodectl create` started at once.  Wall time from the first `nodectl create` started")
    p("to the last DONE's `time_ms`; the ten guests keep booting (TCG, 2 CPUs shared with")
    p(f"everything else) until all are deleted, untimed, after the phase.  {rounds} rounds of")
    p("each, alternating which goes first.  Seconds:")
    p()
    p("| mode | median | min | max | every round |")
    p("|------|-------:|----:|----:|-------------|")
    for mode, s in (("10 sequential", sq), ("10 concurrent", cc)):
        vals = conc["sequential" if mode.endswith("sequential") else "concurrent"]
        p(f"| {mode} | {s['median'] / 1000:.2f} | {s['min'] / 1000:.2f} | "
          f"{s['max'] / 1000:.2f} | {', '.join(f'{v / 1000:.2f}' for v in vals)} |")
    p()
    p(f"Speed-up of concurrent over sequential (ratio of medians): "
      f"**{sq['median'] / cc['median']:.2f}x**.")
    p()
    p(f"A sequential create takes {sq['median'] / N_CONCURRENT / 1000:.2f} s here against "
      f"{st['agent']['median'] / 1000:.2f} s alone in the latency benchmark: each one waits "
      f"for the previous DONE to reach the client (through the agent's producer and the "
      f"client's consumer, whose empty fetches the mock holds for librdkafka's default "
      f"500 ms), and the guests already started boot under TCG on the same 2 CPUs.")
    p()
    p(f"Setup (image server, virtenv, devbus, agent, warm-ups) took {setup_s:.0f} s of this "
      f"benchmark.")


def port_bind_report(stack):
    """Issue 4: from a guest's tap appearing on br-int to its flows installed."""
    ms = [float(m) for m in re.findall(r'msg="port bound".* ms=([0-9.]+)', stack.agent.logs())]
    if not ms:
        raise BenchError("the agent logged no `port bound` line")
    s = stats(ms)
    p = print
    p("## Port binding: from the tap on br-int to its flows installed")
    p()
    p(f"Every guest created through the agent above ({len(ms)}: the warm-up, the latency")
    p("samples and the concurrency rounds, one NIC each) is bound by net/ovs, which logs")
    p("`port bound` with the time from its OVS thread first seeing the tap on the bridge")
    p("(libvirt plugs it during the domain's start; the OVS database tells the thread, with")
    p("the OpenFlow port number ovs-vswitchd gave it) to ovs-vswitchd having taken the port's")
    p("flows in one bundle.  Until then the tap sends and receives nothing (default drop); a")
    p("create reports RUNNING only after it.  Milliseconds:")
    p()
    p("| ports bound | median | p90 | mean | min | max |")
    p("|------------:|-------:|----:|-----:|----:|----:|")
    p(f"| {len(ms)} | {s['median']:.2f} | {s['p90']:.2f} | {s['mean']:.2f} | "
      f"{s['min']:.2f} | {s['max']:.2f} |")


# --- main ----------------------------------------------------------------------------------

def warm_up(stack, xml_dir):
    """The image download, the template XML and config drive, and one untimed run of each
    peer."""
    inst, t = stack.agent_create("warmup")
    log(f"warm-up create (downloads the image): {t['done']:.0f} ms")
    xml = stack.env.virsh("dumpxml", "--inactive", f"na-{inst}")
    inst_dir = os.path.join(stack.env.state_dir, "instances", inst)
    config = os.path.join(stack.work, "template.config")
    shutil.copyfile(os.path.join(inst_dir, "disk.config"), config)
    base = os.path.join(stack.env.state_dir, "images", stack.image_sha)
    if not os.path.exists(base):
        raise BenchError(f"the agent's cached image is not at {base}")
    stack.agent_delete(inst)
    peers = Peers(stack, xml, config, base)
    saved = {"agent": xml}
    name, dom_uuid, _ = peers.virsh_create("warmup")
    saved["virsh-create"] = stack.env.virsh("dumpxml", name)
    peers.remove("virsh", name, dom_uuid)
    name, dom_uuid, _ = peers.virt_install("warmup")
    saved["virt-install"] = stack.env.virsh("dumpxml", name)
    peers.remove("virt-install", name, dom_uuid)
    name, dom_uuid, _ = peers.api_create("warmup")
    peers.remove("api", name, dom_uuid)
    if xml_dir:
        os.makedirs(xml_dir, exist_ok=True)
        for k, v in saved.items():
            with open(os.path.join(xml_dir, f"{k}.xml"), "w") as f:
                f.write(v)
    return peers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="the build directory (nodeagent, nodectl, "
                    "nodeagent-devbus)")
    ap.add_argument("--count", type=int, default=10, help="latency samples per tool (10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (c), each mode (3)")
    ap.add_argument("--xml-dir", help="write the warm-up domains' XML there (agent.xml, "
                    "virsh-create.xml, virt-install.xml) to compare the guests")
    a = ap.parse_args()
    if a.count < 1 or a.rounds < 1:
        ap.error("--count and --rounds must be at least 1")
    for tool in ("virsh", "virt-install", "qemu-img"):
        if not shutil.which(tool):
            log(f"{tool} not found (deploy/deps.sh installs it)")
            return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    stack = Stack(os.path.abspath(a.build))
    failed = True
    try:
        t0 = time.monotonic()
        stack.start()
        peers = warm_up(stack, a.xml_dir)
        setup_s = time.monotonic() - t0
        lat, split = bench_latency(stack, peers, a.count)
        conc = bench_concurrency(stack, a.rounds)
        report(a.count, a.rounds, lat, split, conc, setup_s)
        print()
        port_bind_report(stack)
        failed = False
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - loud, then clean up
        traceback.print_exc()
        log(f"FAILED: {e}")
    finally:
        stack.stop(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
