"""deploy/systemd/nodeagent.service, as `make install` installs it: systemd-analyze verify
accepts it without a warning, and it carries the hardening the agent is meant to run under.

systemd need not be PID 1 here: `systemd-analyze verify` and `security --offline` read the
unit file alone.  ExecStart points at /usr/local/bin, so the test verifies the copy that
`make install DESTDIR=...` wrote, with its paths pointed at the installed binaries."""
import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SAMPLE = os.path.join(REPO, "deploy", "nodeagent.conf.sample")
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(not ANALYZE, reason="systemd-analyze is not installed")

ALLOWED_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
# What the agent does as root, and the capability each needs (the unit says why in a comment).
NEEDED_CAPABILITIES = {"CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(path of the installed unit rewritten to the installed binaries, its text)."""
    dest = str(tmp_path_factory.mktemp("destdir"))
    r = subprocess.run(["make", "--no-print-directory", "-C", REPO, "install", f"DESTDIR={dest}"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    unit = os.path.join(dest, "lib/systemd/system/nodeagent.service")
    with open(unit) as f:
        text = f.read()
    bindir = os.path.join(dest, "usr/local/bin")
    assert os.access(os.path.join(bindir, "nodeagent"), os.X_OK)
    verify_dir = str(tmp_path_factory.mktemp("unit"))
    path = os.path.join(verify_dir, "nodeagent.service")
    with open(path, "w") as f:
        f.write(text.replace("/usr/local/bin/", bindir + "/"))
    return path, text


def directives(text):
    """{(section, key): [values in order]}; comments and blank lines skipped."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def sample_default(key):
    """A key's default as deploy/nodeagent.conf.sample shows it (";key = value")."""
    with open(SAMPLE) as f:
        m = re.search(rf"^;{key} = (\S+)$", f.read(), re.M)
    assert m, f"{key} not in the sample config"
    return m.group(1)


def test_systemd_analyze_verify_accepts_the_installed_unit(installed):
    path, _ = installed
    r = subprocess.run([ANALYZE, "verify", "--man=no", path], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(path))
    # Unknown or misspelt keys are only warnings: any output at all is a failure.
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
        r.returncode, r.stdout, r.stderr)


def test_unit_is_hardened(installed):
    _, text = installed
    d = directives(text)

    def one(key, section="Service"):
        values = d.get((section, key))
        assert values, f"[{section}] {key}= is missing"
        return values[-1]

    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "LockPersonality",
                "RestrictRealtime", "RestrictSUIDSGID"):
        assert one(key) == "yes", key
    assert one("ProtectSystem") == "strict"
    assert one("SystemCallArchitectures") == "native"

    # What the agent writes (the config's defaults) is writable; nothing else is named.
    writable = {p for v in d[("Service", "ReadWritePaths")] for p in v.split()}
    state_dir = sample_default("state_dir")
    socket_dir = os.path.dirname(sample_default("socket"))
    assert {state_dir, socket_dir} <= writable, writable
    assert writable <= {state_dir, socket_dir, "-/sys/kernel/mm/ksm"}, writable

    families = set(one("RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families <= ALLOWED_FAMILIES, families

    caps = set(one("CapabilityBoundingSet").split())
    assert caps == NEEDED_CAPABILITIES, caps
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for cap in caps:
        assert re.search(rf"^#\s+{cap}\s+\S", comments, re.M), f"{cap} has no reason given"
    assert one("AmbientCapabilities") == ""

    # Never left without its agent: no start limit, restarts paced.
    assert one("StartLimitIntervalSec", "Unit") == "0"
    assert one("Restart") in ("always", "on-failure")
    assert int(one("RestartSec").rstrip("s")) > 0


def test_systemd_analyze_security_offline(installed):
    """The exposure score systemd computes, reported (no threshold)."""
    path, _ = installed
    r = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", path],
                       capture_output=True, text=True, timeout=60, cwd=os.path.dirname(path))
    if r.returncode != 0 and "offline" in r.stderr:
        pytest.skip(f"systemd-analyze security --offline is not supported: {r.stderr.strip()}")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    print(f"systemd-analyze security --offline: exposure {m.group(1)} {m.group(2)}")
