"""The golden domain XML files (tests/unit/data/domain-*.xml, which the unit tests compare
hv_domain_xml_build's output with) are valid against libvirt's own RNG schema, checked with
`virt-xml-validate FILE domain` (Debian package libvirt-clients; the schemas come with
libvirt0)."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = sorted(glob.glob(os.path.join(ROOT, "tests/unit/data/domain-*.xml")))


def test_golden_files_exist():
    assert len(GOLDEN) >= 9, GOLDEN


@pytest.mark.parametrize("path", GOLDEN, ids=[os.path.basename(p) for p in GOLDEN])
def test_golden_domain_xml_is_valid(path):
    tool = shutil.which("virt-xml-validate")
    assert tool, "virt-xml-validate is missing: apt-get install libvirt-clients (deploy/deps.sh)"
    r = subprocess.run([tool, path, "domain"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_golden_files_cover_the_limits():
    """The limits' elements are among what the schema checks (tests/unit/data/domain-limits*)."""
    text = "".join(open(p).read() for p in GOLDEN)
    for element in ("<cputune>", "<shares>", "<quota>", "<iotune>", "<write_bytes_sec>",
                    "<read_iops_sec>"):
        assert element in text, element
