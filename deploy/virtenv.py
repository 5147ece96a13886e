#!/usr/bin/python3
"""A private virtualization stack for one test "host": Open vSwitch and libvirt.

    deploy/virtenv.py start DIR [--netns NAME|host] [--bridge br-int]
    deploy/virtenv.py stop DIR
    deploy/virtenv.py exec DIR -- CMD...      # run CMD inside the host's namespaces

`start` runs, with all state under DIR, in a mount namespace of their own:

    ovsdb-server   fresh database (ovsdb-tool create, ovs-vswitchd's schema)
    ovs-vswitchd   bridge br-int, datapath_type=netdev, fail_mode=secure
    virtlogd, libvirtd
                   private /etc/libvirt (a copy of the defaults, own host_uuid),
                   /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt;
                   /var/run/openvswitch is the private OVS run directory, so that
                   libvirt's <virtualport type='openvswitch'> (ovs-vsctl) reaches this OVS;
                   a /dev without kvm (TCG only, see _Supervisor.private_dev).

The daemons are children of a small supervisor (`_supervise`, the namespace's first
process, a child subreaper so that QEMU processes stay below it too). `start` writes
DIR/env (shell, `. DIR/env`) with the libvirt URI to use from outside the namespace
(qemu:///system?socket=DIR/libvirt/run/libvirt-sock), the OVS database and paths, and a
pid file per daemon in DIR/pids/. `stop` destroys and undefines every domain, stops the
daemons by pid (SIGTERM, SIGKILL after a bound), kills what is left of the QEMU processes,
and removes DIR; it is idempotent and works after a failed start or a crashed daemon.

Several can run at once with different DIRs. Each process started here carries
NODEAGENT_VIRTENV=DIR in its environment; `stop` signals a pid only when it does, so a
reused pid is never hit.

Network: by default each host gets a network namespace of its own (only loopback, up):
OVS's netdev datapath creates taps named `ovs-netdev` and after each bridge, and libvirt
names guest taps vnetN, so two hosts in one network namespace would fight over those names.
`netns=NAME` runs the host in an existing `ip netns` instead (to wire hosts together), and
`netns="host"` in the caller's. In a namespace of its own, /sys is a sysfs of that
namespace (as `ip netns exec` does), with the cgroup hierarchies carried over.
`nsenter -t $(cat DIR/pids/supervisor.pid) -m -n CMD` (or `virtenv.py exec DIR CMD`) runs a
command inside.

Used as a module: VirtEnv(DIR, netns=None, bridge="br-int").start() ... .stop().
"""
import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
ENV_MARK = "NODEAGENT_VIRTENV"
# libvirt probes each QEMU binary (several seconds under TCG) and caches the result in
# /var/cache/libvirt/qemu/capabilities; libvirt checks every entry (QEMU's and libvirtd's
# ctime, kernel, microcode, CPU) and probes again when it is stale. Hosts share that cache
# through this directory: seeded at start, saved at stop.
CAPS_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "build", "virtenv-cache", "qemu-capabilities")
START_TIMEOUT = 90
STOP_TIMEOUT = 10
# The daemons in start order; stopped in reverse order.
DAEMONS = ("ovsdb-server", "ovs-vswitchd", "virtlogd", "libvirtd")
CAPS_SUBDIR = "libvirt/cache/qemu/capabilities"
# Host paths replaced inside the namespace: (mount point, directory under DIR).
LIBVIRT_MOUNTS = (
    ("/etc/libvirt", "libvirt/etc"),
    ("/run/libvirt", "libvirt/run"),
    ("/var/lib/libvirt", "libvirt/lib"),
    ("/var/log/libvirt", "libvirt/log"),
    ("/var/cache/libvirt", "libvirt/cache"),
    ("/run/openvswitch", "ovs/run"),  # /var/run is a symlink to /run on Debian 12
)


class VirtEnvError(Exception):
    pass


def _log(msg):
    print(f"virtenv: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- process helpers

def _proc_env(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def _alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _ours(pid, topdir):
    """pid runs with NODEAGENT_VIRTENV=topdir (so it is one of this env's processes)."""
    env = _proc_env(pid)
    return env is not None and f"{ENV_MARK}={topdir}".encode() in env


def _terminate(pids, timeout=STOP_TIMEOUT, what=""):
    """SIGTERM every pid, wait up to timeout, then SIGKILL those still alive."""
    pids = [p for p in pids if _alive(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if _alive(p):
            _log(f"{what or 'process'} {p} did not stop in {timeout} s; killing it")
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _children(ppid, zombies_only=False):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == ppid and (not zombies_only or fields[0] == "Z"):
            out.append(int(d))
    return out


def _read_envfile(topdir):
    """DIR/env as a dict (empty when there is none)."""
    out = {}
    try:
        with open(os.path.join(topdir, "env")) as f:
            for line in f:
                k, _, v = line.removeprefix("export ").strip().partition("=")
                out[k] = v.strip("'")
    except OSError:
        pass
    return out


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait(predicate, timeout, what, procs=()):
    deadline = time.monotonic() + timeout
    while True:
        for name, p in procs:
            if p.poll() is not None:
                raise VirtEnvError(f"{name} exited with {p.returncode} while waiting for {what}")
        if predicate():
            return
        if time.monotonic() > deadline:
            raise VirtEnvError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _can_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------- the environment

class VirtEnv:
    def __init__(self, topdir, netns=None, bridge="br-int", caps_cache=None):
        self.dir = os.path.abspath(topdir)
        self.caps_cache = caps_cache or os.environ.get("NODEAGENT_VIRTENV_CACHE") or CAPS_CACHE
        self.netns = netns
        self.bridge = bridge
        self.ovs_rundir = os.path.join(self.dir, "ovs/run")
        self.ovs_db_sock = os.path.join(self.ovs_rundir, "db.sock")
        self.ovs_db = "unix:" + self.ovs_db_sock
        self.libvirt_sock = os.path.join(self.dir, "libvirt/run/libvirt-sock")
        self.uri = f"qemu:///system?socket={self.libvirt_sock}"
        self.logdir = os.path.join(self.dir, "log")
        self.piddir = os.path.join(self.dir, "pids")
        self.envfile = os.path.join(self.dir, "env")
        # A traversable place for instance disks and cached images (DIR itself is 0711).
        self.state_dir = os.path.join(self.dir, "state")
        self._run = subprocess.run  # the supervisor tracks its children

    # --- paths and handy commands

    def pidfile(self, name):
        return os.path.join(self.piddir, f"{name}.pid")

    def pid(self, name):
        return _read_pid(self.pidfile(name))

    def restart_ovs(self, name, timeout=60):
        """Kills ovsdb-server or ovs-vswitchd (by its pid) and has the supervisor start it
        again with the same arguments; returns once the bridge's OpenFlow socket answers."""
        assert name in ("ovsdb-server", "ovs-vswitchd")
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), timeout, f"{name} (pid {pid}) to die")
        os.kill(self.pid("supervisor"), signal.SIGUSR1)
        _wait(lambda: self.pid(name) != pid and _can_connect(self.ovs_db_sock) and
              _can_connect(os.path.join(self.ovs_rundir, f"{self.bridge}.mgmt")),
              timeout, f"{name} to answer again")

    def restart_libvirtd(self, timeout=60):
        """Starts libvirtd again after it was killed; returns once it answers."""
        os.kill(self.pid("supervisor"), signal.SIGUSR1)
        _wait(lambda: _can_connect(self.libvirt_sock) and subprocess.run(
            ["virsh", "-q", "-c", self.uri, "version"], capture_output=True,
            timeout=30).returncode == 0, timeout, "libvirtd to answer again")

    def vsctl(self, *args, check=True, timeout=30):
        r = self._run(["ovs-vsctl", f"--db={self.ovs_db}", f"--timeout={timeout}", *args],
                           capture_output=True, text=True, timeout=timeout + 5)
        if check and r.returncode != 0:
            raise VirtEnvError(f"ovs-vsctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def virsh(self, *args, check=True, timeout=60):
        r = self._run(["virsh", "-q", "-c", self.uri, *args],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise VirtEnvError(f"virsh {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def connect(self):
        import libvirt
        return libvirt.open(self.uri)

    def nsenter(self):
        """Command prefix that runs a command inside this host's namespaces."""
        pid = self.pid("supervisor")
        if pid is None:
            raise VirtEnvError(f"{self.dir}: not running")
        return ["nsenter", "-t", str(pid), "-m"] + ([] if self.netns == "host" else ["-n"])

    def env_vars(self):
        return {
            ENV_MARK: self.dir,
            "LIBVIRT_DEFAULT_URI": self.uri,
            "NODEAGENT_LIBVIRT_URI": self.uri,
            "NODEAGENT_OVS_DB": self.ovs_db,
            "NODEAGENT_OVS_RUNDIR": self.ovs_rundir,
            "NODEAGENT_BRIDGE": self.bridge,
            "NODEAGENT_STATE_DIR": self.state_dir,
            "NODEAGENT_VIRTENV_NETNS": self.netns or "",
            "NODEAGENT_VIRTENV_NSENTER": " ".join(self.nsenter()),
        }

    # --- start

    def start(self, timeout=START_TIMEOUT):
        if os.path.exists(self.dir) and os.listdir(self.dir):
            raise VirtEnvError(f"{self.dir} exists and is not empty (stop it first)")
        for host_path, _ in LIBVIRT_MOUNTS:
            os.makedirs(host_path, exist_ok=True)  # mount points; empty on the host
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o711)
        try:
            self._prepare()
            self._launch(timeout)
            with open(self.envfile, "w") as f:
                for k, v in self.env_vars().items():
                    f.write(f"export {k}='{v}'\n")
        except BaseException:
            self.stop(keep_dir=True)
            raise
        return self

    def _prepare(self):
        for d in ("ovs/run", "log", "pids", "state", "libvirt/run", "libvirt/log",
                  "libvirt/cache"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        self._copy_caps(self.caps_cache, os.path.join(self.dir, CAPS_SUBDIR))
        os.chmod(self.state_dir, 0o711)
        subprocess.run(["ovsdb-tool", "create", os.path.join(self.dir, "ovs/conf.db"), OVS_SCHEMA],
                       check=True, capture_output=True)
        # /etc/libvirt: the installed defaults, without any domain, network autostart,
        # storage pool or secret that happens to be on the machine; a host_uuid of its own.
        etc = os.path.join(self.dir, "libvirt/etc")
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        for rel in ("qemu/autostart", "qemu/networks/autostart", "storage", "secrets",
                    "nwfilter-bindings"):
            shutil.rmtree(os.path.join(etc, rel), ignore_errors=True)
        qemu_etc = os.path.join(etc, "qemu")
        if os.path.isdir(qemu_etc):
            for n in os.listdir(qemu_etc):
                if n.endswith(".xml"):
                    os.unlink(os.path.join(qemu_etc, n))
        # Live migration between two hosts: libvirt must not try to restore the owner of a
        # disk the other host's libvirt labelled (DESIGN.md's test facts).
        with open(os.path.join(qemu_etc, "qemu.conf"), "a") as f:
            f.write("\n# deploy/virtenv.py: migration between test hosts\nremember_owner = 0\n")
        self.host_uuid = str(uuid.uuid4())
        with open(os.path.join(etc, "libvirtd.conf"), "a") as f:
            f.write(f"\n# deploy/virtenv.py: this test host's identity\nhost_uuid = \"{self.host_uuid}\"\n")
            if os.environ.get("NODEAGENT_VIRTENV_DEBUG"):
                f.write('log_filters = "1:qemu 1:security 1:util.command 1:conf 3:object 3:json 3:event"\n'
                        'log_outputs = "1:file:/var/log/libvirt/libvirtd-debug.log"\n')
        # /var/lib/libvirt: like the package makes it; QEMU (group libvirt-qemu) must be
        # able to traverse qemu/.
        lib = os.path.join(self.dir, "libvirt/lib")
        os.makedirs(lib, mode=0o755)
        os.chmod(lib, 0o755)
        qemu_lib = os.path.join(lib, "qemu")
        os.makedirs(qemu_lib)
        shutil.chown(qemu_lib, "libvirt-qemu", "libvirt-qemu")
        os.chmod(qemu_lib, 0o750)
        for d, mode in (("images", 0o711), ("boot", 0o711), ("sanlock", 0o700)):
            os.makedirs(os.path.join(lib, d), mode=mode)
        # /run/libvirt and /var/run/openvswitch are reached through /run: 0755 like the
        # originals.
        os.chmod(os.path.join(self.dir, "ovs"), 0o755)
        for d in ("ovs/run", "libvirt", "libvirt/run"):
            os.chmod(os.path.join(self.dir, d), 0o755)

    def _launch(self, timeout):
        env = dict(os.environ)
        env[ENV_MARK] = self.dir
        cmd = ["unshare", "--mount", "--propagation", "private"] + \
            (["--net"] if self.netns is None else []) + ["--",
               sys.executable, os.path.abspath(__file__), "_supervise", self.dir,
               "--bridge", self.bridge] + (["--netns", self.netns] if self.netns else [])
        if self.netns not in (None, "host"):
            netns_path = f"/run/netns/{self.netns}"
            if not os.path.exists(netns_path):
                raise VirtEnvError(f"network namespace {self.netns} does not exist")
            cmd = ["nsenter", f"--net={netns_path}", "--"] + cmd
        log = open(os.path.join(self.logdir, "supervisor.log"), "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log, env=env, start_new_session=True)
        log.close()
        # nsenter and unshare exec: the supervisor has the Popen's pid.
        with open(self.pidfile("supervisor"), "w") as f:
            f.write(f"{proc.pid}\n")
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise VirtEnvError(f"start timed out after {timeout} s; see {self.logdir}")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        proc.stdout.close()
        sel.close()
        if line.strip() != b"ready":
            raise VirtEnvError(f"start failed: {line.decode(errors='replace').strip() or 'supervisor exited'}; "
                               f"see {self.logdir}")
        # Popen would reap it only on poll(); the supervisor outlives this object.
        proc.returncode = 0

    # --- stop

    def stop(self, keep_dir=False):
        """Idempotent teardown: domains, daemons by pid, leftover QEMUs, then DIR."""
        if not os.path.isdir(self.dir):
            return
        libvirtd = self.pid("libvirtd")
        if libvirtd and _alive(libvirtd) and _can_connect(self.libvirt_sock):
            try:
                self._remove_domains()
            except Exception as e:  # noqa: BLE001 - teardown goes on regardless
                _log(f"{self.dir}: removing domains: {e}")
        qemu_pids = self._qemu_pids()
        saved = _read_envfile(self.dir)
        netns = saved.get("NODEAGENT_VIRTENV_NETNS") or None
        bridge = saved.get("NODEAGENT_BRIDGE") or self.bridge
        if netns not in (None, "host"):
            # A named namespace outlives this host: take the bridge's tap away with it.
            vswitchd = self.pid("ovs-vswitchd")
            if vswitchd and _alive(vswitchd) and _can_connect(self.ovs_db_sock):
                self.vsctl("--if-exists", "del-br", bridge, check=False, timeout=10)
        for name in reversed(DAEMONS):
            pid = self.pid(name)
            if pid and _ours(pid, self.dir):
                _terminate([pid], what=name)
        if netns not in (None, "host"):
            for dev in (bridge, "ovs-netdev"):
                subprocess.run(["ip", "-n", netns, "link", "del", dev], capture_output=True)
        qemu_pids = [p for p in qemu_pids + self._qemu_pids() if _alive(p)]
        if qemu_pids:
            _terminate(qemu_pids, what="qemu")
        sup = self.pid("supervisor")
        if sup and _ours(sup, self.dir):
            _terminate([sup], what="supervisor")
        try:
            self._copy_caps(os.path.join(self.dir, CAPS_SUBDIR), self.caps_cache)
        except OSError as e:
            _log(f"saving QEMU capabilities to {self.caps_cache}: {e}")
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            if os.path.exists(self.dir):
                _log(f"{self.dir}: could not remove everything")

    @staticmethod
    def _copy_caps(src, dst):
        """Copies libvirt's QEMU capability files that are new or changed (atomically)."""
        try:
            names = [n for n in os.listdir(src) if n.endswith(".xml")]
        except OSError:
            return
        os.makedirs(dst, mode=0o755, exist_ok=True)
        for n in names:
            s, d = os.path.join(src, n), os.path.join(dst, n)
            try:
                with open(s, "rb") as f:
                    data = f.read()
                with open(d, "rb") as f:
                    if f.read() == data:
                        continue
            except FileNotFoundError:
                pass
            tmp = f"{d}.{os.getpid()}.tmp"
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(data)
            os.rename(tmp, d)

    def _remove_domains(self):
        names = self.virsh("list", "--all", "--name", timeout=30).split()
        for n in names:
            self.virsh("destroy", n, check=False, timeout=60)
            self.virsh("undefine", n, "--managed-save", "--snapshots-metadata",
                       "--checkpoints-metadata", "--nvram", check=False, timeout=60)

    def _qemu_pids(self):
        """QEMU processes from libvirt's pid files, checked against their domain's uuid."""
        out = []
        d = os.path.join(self.dir, "libvirt/run/qemu")
        try:
            names = os.listdir(d)
        except OSError:
            return out
        for n in names:
            if not n.endswith(".pid"):
                continue
            pid = _read_pid(os.path.join(d, n))
            if not pid or not _alive(pid):
                continue
            try:
                with open(os.path.join(d, n[:-4] + ".xml")) as f:
                    status = f.read()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().split(b"\0")
            except OSError:
                continue
            i = status.find("<uuid>")
            dom_uuid = status[i + 6:status.find("</uuid>", i)].encode() if i >= 0 else None
            if dom_uuid and b"-uuid" in cmdline and dom_uuid in cmdline:
                out.append(pid)
        return out


# ---------------------------------------------------------------- the supervisor

class _Supervisor:
    """The namespace's first process: mounts, daemons, then waits until told to stop."""

    def __init__(self, topdir, bridge, netns, kvm=False):
        self.kvm = kvm
        self.env = VirtEnv(topdir, netns=netns, bridge=bridge)
        self.env._run = self.run_cmd
        self.spawn_args = {}
        self.procs = []  # (name, Popen)
        self.stopping = False
        # As a subreaper this process inherits libvirt's daemonized QEMUs (the capability
        # probe's too): until the main loop reaps everything, a thread reaps every zombie
        # child that is not one of the processes started here.
        self.lock = threading.Lock()
        self.managed = set()
        self.reaping = True

    def run_cmd(self, args, timeout=None, check=False, **kw):
        with self.lock:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            self.managed.add(p.pid)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        finally:
            with self.lock:
                self.managed.discard(p.pid)
        r = subprocess.CompletedProcess(args, p.returncode, out, err)
        if check:
            r.check_returncode()
        return r

    def reaper(self):
        me = os.getpid()
        while self.reaping:
            with self.lock:
                for pid in _children(me, zombies_only=True):
                    if pid not in self.managed:
                        try:
                            os.waitpid(pid, os.WNOHANG)
                        except ChildProcessError:
                            pass
            time.sleep(0.1)

    def mounts(self):
        if self.env.netns != "host":
            # As `ip netns exec`: /sys shows this network namespace's devices; libvirt
            # still finds the cgroup hierarchies under /sys/fs/cgroup.
            stage = os.path.join(self.env.dir, "sys")
            os.makedirs(stage, exist_ok=True)
            self.run_cmd(["mount", "-t", "sysfs", "sysfs", stage], check=True)
            if os.path.ismount("/sys/fs/cgroup"):
                self.run_cmd(["mount", "--rbind", "/sys/fs/cgroup",
                              os.path.join(stage, "fs/cgroup")], check=True)
            self.run_cmd(["umount", "--recursive", "--lazy", "/sys"], check=True)
            self.run_cmd(["mount", "--move", stage, "/sys"], check=True)
            self.run_cmd(["ip", "link", "set", "lo", "up"], check=True)
        for host_path, sub in LIBVIRT_MOUNTS:
            self.run_cmd(["mount", "--bind", os.path.join(self.env.dir, sub), host_path],
                         check=True)
        if not self.kvm and os.path.exists("/dev/kvm"):
            self.private_dev()

    def private_dev(self):
        """A /dev without kvm: TCG only (nested KVM hangs guests).

        With a /dev/kvm that QEMU's user cannot open (0600 root here: no udev), libvirt
        probes QEMU with CAP_DAC_OVERRIDE and finds KVM, then finds its capability cache
        stale at every lookup because QEMU's user cannot use KVM, and probes again and again
        (about 0.7 s each, 9 s per domain definition). A bind mount over /dev/kvm does not
        work either: libvirt moves every /dev submount into each QEMU's own /dev, which
        fails for a file. So: a tmpfs with copies (mknod) of the host's device nodes but kvm,
        a devpts instance of its own and a /dev/shm.
        """
        stage = os.path.join(self.env.dir, "dev")
        os.makedirs(stage, exist_ok=True)
        self.run_cmd(["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "virtenv-dev", stage],
                     check=True)
        skip = {"kvm", "pts", "shm", "ptmx"}
        for root, dirs, files in os.walk("/dev"):
            rel = os.path.relpath(root, "/dev")
            if rel == ".":
                dirs[:] = [d for d in dirs if d not in skip]
            dst_root = os.path.normpath(os.path.join(stage, rel))
            for n in dirs + files:
                if rel == "." and n in skip:
                    continue
                src, dst = os.path.join(root, n), os.path.join(dst_root, n)
                st = os.lstat(src)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(dst)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    os.mknod(dst, st.st_mode, st.st_rdev)
                else:
                    continue  # sockets, fifos, files: nothing QEMU or libvirt needs
                os.chown(dst, st.st_uid, st.st_gid)
                os.chmod(dst, stat.S_IMODE(st.st_mode))
        for d in ("pts", "shm"):
            os.mkdir(os.path.join(stage, d))
        os.chmod(os.path.join(stage, "shm"), 0o1777)
        os.symlink("pts/ptmx", os.path.join(stage, "ptmx"))
        # The host's /dev goes away with its submounts: libvirt's list of /dev submounts to
        # carry into QEMU's /dev must not include covered ones.
        self.run_cmd(["sh", "-ec", 'umount --recursive --lazy /dev; mount --move "$0" /dev',
                      stage], check=True)
        self.run_cmd(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620",
                      "devpts", "/dev/pts"], check=True)
        self.run_cmd(["mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", "/dev/shm"],
                     check=True)

    def spawn(self, name, args, extra_env=None):
        env = dict(os.environ)
        env[ENV_MARK] = self.env.dir
        env.update(extra_env or {})
        log = open(os.path.join(self.env.logdir, f"{name}.log"), "ab")
        with self.lock:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
            self.managed.add(p.pid)
        log.close()
        self.procs.append((name, p))
        with open(self.env.pidfile(name), "w") as f:
            f.write(f"{p.pid}\n")
        self.spawn_args[name] = (args, extra_env)
        return p

    def start_daemons(self):
        e = self.env
        run = e.ovs_rundir
        ovs_env = {"OVS_RUNDIR": run, "OVS_DBDIR": os.path.join(e.dir, "ovs"),
                   "OVS_LOGDIR": e.logdir}
        self.spawn("ovsdb-server", [
            "ovsdb-server", os.path.join(e.dir, "ovs/conf.db"),
            f"--remote=punix:{e.ovs_db_sock}",
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            f"--unixctl={run}/ovsdb-server.ctl", f"--pidfile={run}/ovsdb-server.pid",
            "--no-chdir", "-vconsole:off", f"--log-file={e.logdir}/ovsdb-server.log"],
            ovs_env)
        _wait(lambda: _can_connect(e.ovs_db_sock), 30, "ovsdb-server", self.procs)
        e.vsctl("--no-wait", "init")
        e.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                f"external_ids:system-id={uuid.uuid4()}",
                f"external_ids:hostname=virtenv-{os.path.basename(e.dir)}")
        self.spawn("ovs-vswitchd", [
            "ovs-vswitchd", e.ovs_db, f"--unixctl={run}/ovs-vswitchd.ctl",
            f"--pidfile={run}/ovs-vswitchd.pid", "--no-chdir", "-vconsole:off",
            f"--log-file={e.logdir}/ovs-vswitchd.log"], ovs_env)
        # Without --no-wait, ovs-vsctl waits until ovs-vswitchd has applied the change.
        e.vsctl("add-br", e.bridge, "--", "set", "Bridge", e.bridge,
                "datapath_type=netdev", "fail_mode=secure",
                "external_ids:nodeagent-virtenv=true", timeout=30)

        self.spawn("virtlogd", ["virtlogd", "--pid-file", os.path.join(e.piddir, "virtlogd.own.pid")])
        _wait(lambda: _can_connect("/run/libvirt/virtlogd-sock"), 30, "virtlogd", self.procs)
        self.spawn("libvirtd", ["libvirtd", "--pid-file", os.path.join(e.piddir, "libvirtd.own.pid")])
        _wait(lambda: _can_connect("/run/libvirt/libvirt-sock"), 60, "libvirtd", self.procs)
        _wait(lambda: self.run_cmd(["virsh", "-q", "-c", "qemu:///system", "version"],
                                   timeout=60).returncode == 0,
              60, "libvirtd to answer", self.procs)

    def on_term(self, *_):
        self.stopping = True

    def on_usr1(self, *_):
        self.respawn = True

    def respawn_libvirtd(self):
        """SIGUSR1: start libvirtd, ovsdb-server or ovs-vswitchd again if it died (tests
        kill them to see the agent reconnect), with the arguments of its first start."""
        self.respawn = False
        for name in ("ovsdb-server", "ovs-vswitchd", "libvirtd"):
            for i, (n, p) in enumerate(self.procs):
                if n == name and (p.returncode is not None or not _alive(p.pid)):
                    self.procs.pop(i)
                    self.spawn(name, *self.spawn_args[name])
                    _log(f"{name} started again")
                    break

    def reap_and_wait(self):
        """Reaps every child (adopted QEMUs too) until SIGTERM. A daemon that dies is
        logged, not restarted: the host stays as it is until `stop`."""
        while not self.stopping:
            if getattr(self, "respawn", False):
                self.respawn_libvirtd()
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                time.sleep(0.2)
                continue
            for name, p in self.procs:
                if p.pid == pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    _log(f"{name} (pid {pid}) exited with {p.returncode}")

    def shutdown(self):
        for name, p in reversed(self.procs):
            if p.returncode is None and _alive(p.pid):
                _terminate([p.pid], what=name)
        # Anything left below us (QEMU processes adopted as subreaper).
        rest = _children(os.getpid())
        _terminate(rest, what="leftover")
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break

    def run(self):
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, self.on_usr1)
        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        reaper = threading.Thread(target=self.reaper, daemon=True)
        reaper.start()
        try:
            self.mounts()
            self.start_daemons()
        except Exception as e:  # noqa: BLE001 - reported to `start` on stdout
            _log(f"start failed: {e}")
            sys.stdout.write(f"error: {e}\n")
            sys.stdout.flush()
            self.shutdown()
            return 1
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        _log(f"ready: {json.dumps({n: p.pid for n, p in self.procs})}")
        self.reaping = False
        reaper.join()
        self.reap_and_wait()
        _log("stopping")
        self.shutdown()
        _log("stopped")
        return 0


# ---------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(prog="virtenv.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a private host in DIR")
    s.add_argument("dir")
    s.add_argument("--netns", help="an existing network namespace (ip netns) to run in, or "
                   "`host` for the caller's (default: a new one of its own)")
    s.add_argument("--bridge", default="br-int")
    s = sub.add_parser("stop", help="stop the host in DIR and remove DIR")
    s.add_argument("dir")
    s = sub.add_parser("exec", help="run a command inside the host's namespaces")
    s.add_argument("dir")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("_supervise")
    s.add_argument("dir")
    s.add_argument("--netns")
    s.add_argument("--bridge", default="br-int")
    a = ap.parse_args(argv)

    if a.cmd == "_supervise":
        return _Supervisor(a.dir, a.bridge, a.netns).run()
    if a.cmd == "start":
        e = VirtEnv(a.dir, netns=a.netns, bridge=a.bridge)
        try:
            e.start()
        except VirtEnvError as err:
            _log(str(err))
            return 1
        print(f"virtenv: started in {e.dir}; `. {e.envfile}` then virsh list / "
              f"ovs-vsctl --db=$NODEAGENT_OVS_DB show")
        return 0
    if a.cmd == "stop":
        VirtEnv(a.dir).stop()
        return 0
    if a.cmd == "exec":
        envs = _read_envfile(os.path.abspath(a.dir))
        if not envs:
            _log(f"{a.dir}: not running")
            return 1
        e = VirtEnv(a.dir, netns=envs.get("NODEAGENT_VIRTENV_NETNS") or None)
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        os.execvp("nsenter", e.nsenter() + (cmd or ["sh"]))
    return 2


if __name__ == "__main__":
    sys.exit(main())
