"""The Debian packages (debian/, `make deb`), installed into a Debian 12 chroot made with
debootstrap: their files, modes and owners, the unit (systemd-analyze verify against the
chroot, installed disabled), `nodeagent --check-config` on the installed configuration
through an operator's first steps, and a purge that leaves nothing of the packages' and
keeps what the agent wrote for its guests.  lintian reports no errors.

The machine itself is not touched.  The chroot (minbase, systemd and the packages'
dependencies) is made once and kept as an uncompressed tarball in build/deb-chroot/, named
after what it holds, so later runs unpack it in seconds and need no network; making it
needs Debian's mirror (NODEAGENT_DEBIAN_MIRROR, default http://deb.debian.org/debian).
`make deb` reuses packages already built from the same files."""
import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SAMPLE = os.path.join(REPO, "deploy", "nodeagent.conf.sample")
CHROOT_CACHE = os.path.join(REPO, "build", "deb-chroot")
MIRROR = os.environ.get("NODEAGENT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
CONF = "etc/nodeagent/nodeagent.conf"
STATE_DIR = "var/lib/nodeagent"
UNIT = "lib/systemd/system/nodeagent.service"
# A guest's files as the agent lays them out (DESIGN.md section 6): a purge keeps them.
GUEST_UUID = "3f9b2c1e-0d4a-4c55-9e1f-5a6b7c8d9e0f"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and dpkg need root")


def run(argv, timeout=600, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def debs():
    """{package: path of its .deb}, from `make deb`."""
    r = run(["make", "--no-print-directory", "-C", REPO, "deb"], timeout=3600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = {}
    for line in r.stdout.split():
        name = os.path.basename(line)
        if line.endswith(".deb") and "-dbgsym_" not in name:
            out[name.split("_")[0]] = line
    assert set(out) == {"nodeagent", "nodeagent-devbus"}, r.stdout
    return out


def depends(deb):
    """The package names a .deb depends on (first of each alternative, no versions)."""
    field = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
    return {dep.split("|")[0].split("(")[0].strip() for dep in field.split(",") if dep.strip()}


def base_tarball(debs):
    """build/deb-chroot/<suite>-<hash>.tar: minbase with systemd and every dependency."""
    include = sorted({"systemd"}.union(*(depends(d) for d in debs.values())))
    key = hashlib.sha256(" ".join([SUITE, MIRROR] + include).encode()).hexdigest()[:16]
    tarball = os.path.join(CHROOT_CACHE, f"{SUITE}-{key}.tar")
    if os.path.exists(tarball):
        return tarball
    assert shutil.which("debootstrap"), "debootstrap is not installed (deploy/deps.sh)"
    os.makedirs(CHROOT_CACHE, exist_ok=True)
    root = tempfile.mkdtemp(prefix="debootstrap.", dir=CHROOT_CACHE)
    try:
        r = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(include), SUITE,
                 root, MIRROR], timeout=1800)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        partial = f"{tarball}.{os.getpid()}.tmp"
        r = run(["tar", "-C", root, "--numeric-owner", "-cf", partial, "."])
        assert r.returncode == 0, r.stderr
        os.rename(partial, tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


@pytest.fixture(scope="module")
def chroot(debs):
    root = tempfile.mkdtemp(prefix="nodeagent-deb-chroot.")
    try:
        r = run(["tar", "-C", root, "--numeric-owner", "-xpf", base_tarball(debs)])
        assert r.returncode == 0, r.stderr
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def inside(root, *argv, env=None):
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    return run(["chroot", root, *argv], env=dict(base, **(env or {})))


def tree(root):
    """Every path below root (relative), directories included."""
    out = set()
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(d, name), root))
    return out


def mode_owner(root, path):
    st = os.lstat(os.path.join(root, path))
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def set_key(root, key, value):
    """Uncomments the sample's `;key = ...` line with value (the operator's edit)."""
    path = os.path.join(root, CONF)
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.startswith(f";{key} = ")]
    assert len(hits) == 1, key
    lines[hits[0]] = f"{key} = {value}\n"
    with open(path, "w") as f:
        f.writelines(lines)


def test_install_check_config_and_purge(debs, chroot):
    before = tree(chroot)
    for deb in debs.values():
        shutil.copy(deb, os.path.join(chroot, "tmp"))
    r = inside(chroot, "dpkg", "-i", *("/tmp/" + os.path.basename(d) for d in debs.values()))
    assert r.returncode == 0, r.stdout + r.stderr

    # Files, modes and owners.
    expected = {
        "usr/bin/nodeagent": 0o755, "usr/bin/nodectl": 0o755,
        "usr/bin/nodeagent-devbus": 0o755, UNIT: 0o644,
        "etc/nodeagent": 0o755, CONF: 0o640, STATE_DIR: 0o711,
        "usr/share/man/man8/nodeagent.8.gz": 0o644, "usr/share/man/man8/nodectl.8.gz": 0o644,
        "usr/share/man/man1/nodeagent-devbus.1.gz": 0o644,
        "usr/share/doc/nodeagent/examples/nodeagent.conf.sample": 0o644,
    }
    for path, mode in expected.items():
        assert mode_owner(chroot, path) == (mode, 0, 0), path
    with open(SAMPLE) as f, open(os.path.join(chroot, CONF)) as g:
        assert f.read() == g.read()
    with open(os.path.join(chroot, "var/lib/dpkg/info/nodeagent.conffiles")) as f:
        assert f.read().split() == ["/" + CONF]
    with gzip.open(os.path.join(chroot, "usr/share/man/man8/nodeagent.8.gz"), "rt") as f:
        man = f.read()
    assert ".TH NODEAGENT" in man and "check\\-config" in man
    with open(os.path.join(chroot, UNIT)) as f:
        unit = f.read()
    assert "ExecStart=/usr/bin/nodeagent -c /etc/nodeagent/nodeagent.conf\n" in unit
    assert "/usr/local" not in unit

    # The unit: valid against the installed system, installed but neither enabled nor
    # started by the maintainer scripts (no configuration yet).
    analyze = run(["systemd-analyze", "verify", "--man=no", f"--root={chroot}",
                   "nodeagent.service"], timeout=120)
    assert analyze.returncode == 0 and not (analyze.stdout + analyze.stderr).strip(), analyze
    r = inside(chroot, "systemctl", "is-enabled", "nodeagent.service")
    assert r.stdout.strip() == "disabled", r.stdout + r.stderr
    assert not os.path.lexists(os.path.join(
        chroot, "etc/systemd/system/multi-user.target.wants/nodeagent.service"))
    with open(os.path.join(chroot, "var/lib/dpkg/info/nodeagent.postinst")) as f:
        postinst = f.read()
    assert "deb-systemd-invoke start" not in postinst and "try-restart" in postinst

    # --check-config on the installed file names what the operator must provide (the
    # control plane's key, and the certificate for the node key it makes), then what is
    # left, until the configuration is complete.
    set_key(chroot, "node_id", "compute-1")
    r = inside(chroot, "nodeagent", "--check-config")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "/etc/nodeagent/nodeagent.conf: [bus] control_plane_key is not set" in r.stderr, r.stderr
    assert ("[bus] node_cert `/var/lib/nodeagent/node.cert` does not exist yet: have the "
            "control plane issue one" in r.stderr), r.stderr
    assert "nodectl node-cert issue --node-id compute-1" in r.stderr, r.stderr
    assert mode_owner(chroot, STATE_DIR + "/node.key") == (0o600, 0, 0)
    assert inside(chroot, "nodectl", "keygen", "/root/cp.key").returncode == 0
    shutil.copy(os.path.join(chroot, "root/cp.pub"),
                os.path.join(chroot, "etc/nodeagent/control-plane.pub"))
    set_key(chroot, "control_plane_key", "/etc/nodeagent/control-plane.pub")
    r = inside(chroot, "nodeagent", "--check-config")
    assert r.returncode == 1 and "no node certificate" in r.stderr, r.stdout + r.stderr
    assert "control_plane_key" not in r.stderr, r.stderr
    r = inside(chroot, "nodectl", "node-cert", "issue", "--node-id", "compute-1",
               "--public-key", "/var/lib/nodeagent/node.pub",
               "--cert-out", "/var/lib/nodeagent/node.cert",
               env={"NODEAGENT_CP_KEY": "/root/cp.key"})
    assert r.returncode == 0, r.stdout + r.stderr
    r = inside(chroot, "nodeagent", "--check-config")
    assert r.returncode == 0 and "configuration is valid (node_id compute-1" in r.stdout, (
        r.stdout + r.stderr)

    # What the agent would have written for a guest.
    guest = os.path.join(chroot, STATE_DIR, "instances", GUEST_UUID)
    os.makedirs(guest)
    for path in (os.path.join(guest, "disk"), os.path.join(chroot, STATE_DIR, "state.db")):
        with open(path, "w") as f:
            f.write("guest data\n")

    r = inside(chroot, "dpkg", "--purge", "nodeagent-devbus", "nodeagent")
    assert r.returncode == 0, r.stdout + r.stderr

    # Nothing of the packages' is left; the operator's and the agent's files are.
    ours = {"tmp/" + os.path.basename(d) for d in debs.values()} | {
        "root/cp.key", "root/cp.pub", "etc/nodeagent", "etc/nodeagent/control-plane.pub"}
    agents = {STATE_DIR} | {os.path.join(STATE_DIR, p) for p in (
        "node.key", "node.pub", "node.cert", "state.db", "instances",
        "instances/" + GUEST_UUID, "instances/" + GUEST_UUID + "/disk")}
    dpkg_books = ("var/lib/dpkg/", "var/log/dpkg.log")
    left = {p for p in tree(chroot) - before if not p.startswith(dpkg_books)}
    assert left == ours | agents, sorted(left ^ (ours | agents))
    for path in ("usr/bin/nodeagent", "usr/bin/nodectl", "usr/bin/nodeagent-devbus", UNIT, CONF):
        assert not os.path.lexists(os.path.join(chroot, path)), path
    with open(os.path.join(guest, "disk")) as f:
        assert f.read() == "guest data\n"


def test_lintian_reports_no_errors(debs):
    if not shutil.which("lintian"):
        pytest.fail("lintian is not installed (deploy/deps.sh)")
    r = run(["lintian", "--fail-on", "error", "--no-tag-display-limit",
             debs["nodeagent"], debs["nodeagent-devbus"]], timeout=900)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [line for line in r.stdout.splitlines() if line.startswith("E:")], r.stdout
