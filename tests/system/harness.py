"""Starts and stops the real parts for system tests: the devbus, agents, nodectl, kcat.

Every process is started by this module and ended by pid; every file lives in the test's
own temporary directory.  Only loopback is used.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid

from trust import SIGNATURE_HEADER, Authority, sign

BUILD = os.environ.get("NODEAGENT_BUILD", os.path.abspath("build/release"))
NODECTL = os.path.join(BUILD, "nodectl")
# The agent's consumer fetch wait on the devbus (deploy/run.sh's too): the mock cluster
# answers an empty fetch only when this has passed, even if a request arrived meanwhile.
DEVBUS_FETCH_WAIT_MS = 10


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Devbus:
    """nodeagent-devbus: librdkafka's mock cluster on loopback."""

    def __init__(self, workdir, prefix, nodes):
        self.prefix = prefix
        self.stderr = open(os.path.join(workdir, "devbus.log"), "w")
        args = [os.path.join(BUILD, "nodeagent-devbus"), "--prefix", prefix]
        for n in nodes:
            args += ["--node", n]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "devbus printed no bootstrap address"

    def outage(self, down):
        self.proc.send_signal(signal.SIGUSR1 if down else signal.SIGUSR2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class Agent:
    """One nodeagent process with its own config, state directory and admin socket."""

    def __init__(self, workdir, devbus, node_id, extra_config="", virtenv=None, authority=None):
        self.workdir = workdir
        self.devbus = devbus
        self.node_id = node_id
        self.virtenv = virtenv
        # Guests' QEMU uids must reach their instance directories: pytest's are 0700.
        self.state_dir = virtenv.state_dir if virtenv else os.path.join(workdir, f"state-{node_id}")
        self.socket = os.path.join(workdir, f"admin-{node_id}.sock")
        self.config = os.path.join(workdir, f"{node_id}.conf")
        # Signed like a production node: the cluster's control plane issues this node's key a
        # certificate for the tunnel endpoint the test gives it.  A test that wants another
        # identity (or none: insecure_unsigned) says so in its extra_config.
        identity = ""
        if authority and not re.search(r"^(insecure_unsigned|control_plane_key)\s*=",
                                        extra_config, re.M):
            endpoints = re.findall(r"^tunnel_endpoint\s*=\s*(\S+)", extra_config, re.M)
            identity = authority.agent_config(node_id, endpoints)
        with open(self.config, "w") as f:
            f.write(
                f"[agent]\nnode_id = {node_id}\nstate_dir = {self.state_dir}\n"
                f"shutdown_timeout = 10\n"
                f"[bus]\nbootstrap_servers = {devbus.bootstrap}\ntopic_prefix = {devbus.prefix}\n"
                + identity
                + f"[admin]\nsocket = {self.socket}\n"
                + (f"[hypervisor]\nuri = {virtenv.uri}\nvirt_type = qemu\n"
                   + ("" if re.search(r"^cpu_mode\s*=", extra_config, re.M) else
                      "cpu_mode = none\n")
                   + f"bridge = {virtenv.bridge}\n"
                   + "[network]\n" + "".join(
                       f"{k} = {v}\n" for k, v in (("ovsdb", virtenv.ovs_db),
                                                    ("datapath_type", "netdev"),
                                                    ("bind_timeout", 30))
                       if not re.search(rf"^{k}\s*=", extra_config, re.M)) if virtenv else
                   # No libvirtd unless the test brings one: a socket that is not there.
                   f"[hypervisor]\nuri = qemu:///system?socket={workdir}/no-libvirt-sock\n"
                   f"[network]\nenabled = false\n")
                # Test hosts have 2 CPUs and tests run up to ten 1-vCPU guests.
                + ("" if "vcpu_allocation_ratio" in extra_config else
                   "[capacity]\nvcpu_allocation_ratio = 16\n")
                # The test image servers are on loopback, which downloads may not reach by
                # default.  (A second [image_cache] section in extra_config is fine; a second
                # allowed_networks key is not, so a test that sets its own gets only its own.)
                + ("" if re.search(r"^allowed_networks\s*=", extra_config, re.M) else
                   "[image_cache]\nallowed_networks = 127.0.0.0/8\n")
                # The devbus (librdkafka's mock) waits out every empty fetch; like make run,
                # the dev stack fetches with a short wait (deploy/run.sh).
                + ("" if re.search(r"^fetch\.wait\.max\.ms\s*=", extra_config, re.M) else
                   f"[bus.rdkafka]\nfetch.wait.max.ms = {DEVBUS_FETCH_WAIT_MS}\n")
                + extra_config
            )
        self.proc = None
        self.runs = 0
        self.log_paths = []

    def start(self, env=None, wrapper=None, wait_healthy=True):
        self.runs += 1
        log_path = os.path.join(self.workdir, f"agent-{self.node_id}-{self.runs}.log")
        self.log_paths.append(log_path)
        self.log = open(log_path, "w")
        full_env = dict(os.environ)
        full_env.update(env or {})
        args = (wrapper or []) + [os.path.join(BUILD, "nodeagent"), "-c", self.config]
        self.proc = subprocess.Popen(args, stderr=self.log, stdout=self.log, env=full_env)
        if wait_healthy:
            self.wait_healthy()
        return self

    def checks(self):
        """{name: ok} of the agent's health checks."""
        _, body = self.get("/healthz")
        return {c["name"]: c["ok"] for c in json.loads(body)["checks"]}

    def wait_healthy(self, timeout=60, need=("bus", "database")):
        """Until the named checks pass (all of them with need=None)."""
        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}: {self.logs()[-2000:]}")
            try:
                checks = self.checks()
            except OSError:
                return False
            return all(checks.values()) if need is None else all(checks.get(n) for n in need)
        wait_for(healthy, timeout, f"agent health checks {need or 'all'} passing")

    def get(self, path):
        conn = UnixHTTPConnection(self.socket)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read().decode()
            return r.status, body
        finally:
            conn.close()

    def get_json(self, path):
        status, body = self.get(path)
        return status, json.loads(body)

    def logs(self):
        out = ""
        for p in self.log_paths:
            with open(p) as f:
                out += f.read()
        return out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def pid(self):
        return self.proc.pid


class Cluster:
    """A devbus, a control plane's key, and agents; the test's single point of teardown.

    nodectl signs with the control plane's key (NODEAGENT_CP_KEY): set in the environment
    while the cluster lives, so that tests which start nodectl themselves sign too."""

    def __init__(self, workdir, nodes=("n1",)):
        self.workdir = str(workdir)
        self.prefix = "t" + uuid.uuid4().hex[:10]
        self.authority = Authority(self.workdir)
        self.saved_key = os.environ.get("NODEAGENT_CP_KEY")
        os.environ["NODEAGENT_CP_KEY"] = self.authority.key
        self.devbus = Devbus(self.workdir, self.prefix, nodes)
        self.agents = {}

    def agent(self, node_id="n1", extra_config="", virtenv=None):
        if node_id not in self.agents:
            self.agents[node_id] = Agent(self.workdir, self.devbus, node_id, extra_config, virtenv,
                                         self.authority)
        return self.agents[node_id]

    def nodectl(self, *args, node="n1", timeout=120, check=None, env=None):
        cmd = [NODECTL, "--bootstrap", self.devbus.bootstrap, "--prefix", self.prefix,
               "--node", node] + [str(a) for a in args]
        full_env = dict(os.environ)
        full_env["NODEAGENT_CP_KEY"] = self.authority.key
        full_env.update(env or {})
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
        if check is not None and r.returncode != check:
            raise AssertionError(f"nodectl {args} exited {r.returncode}, want {check}:\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def events(self, timeout=60, **filters):
        """Every event on the events topic so far (JSON dicts), optionally filtered: read to
        the end the topic had when nodectl started (timeout bounds the read)."""
        args = ["events", "--from-beginning", "--to-end", "--json", "--timeout", timeout]
        r = self.nodectl(*args, timeout=timeout + 60, check=0)
        out = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        for k, v in filters.items():
            out = [e for e in out if e.get(k) == v]
        return out

    def kcat_produce(self, topic, files, headers=()):
        """Each file becomes one message, sent as-is; headers: ("name=value", ...) for all."""
        hargs = [a for h in headers for a in ("-H", h)]
        for i in range(0, len(files), 200):
            subprocess.run(["kcat", "-P", "-b", self.devbus.bootstrap, "-t", topic, *hargs]
                           + files[i:i + 200], check=True, timeout=120, capture_output=True)

    def send_signed(self, payload, node="n1"):
        """One request, signed with the cluster's control plane key, sent with kcat."""
        path = os.path.join(self.workdir, f"signed-{uuid.uuid4().hex}.bin")
        with open(path, "wb") as f:
            f.write(payload)
        self.kcat_produce(f"{self.prefix}.node.{node}", [path],
                          [f"{SIGNATURE_HEADER}={sign(self.authority.key, 'request', payload)}"])

    def close(self):
        for a in self.agents.values():
            a.stop(timeout=15)
        self.devbus.stop()
        if self.saved_key is None:
            os.environ.pop("NODEAGENT_CP_KEY", None)
        else:
            os.environ["NODEAGENT_CP_KEY"] = self.saved_key
