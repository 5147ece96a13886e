"""storage/qcow2 agrees with qemu-img: images qemu-img creates (v2, v3, compressed, with
snapshots, raw, ...) pass the validator with qemu-img's virtual size, the hostile ones are
refused, and the overlays we write pass `qemu-img check` and match `qemu-img info`."""
import os
import subprocess

from harness import BUILD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_validator_and_overlays_agree_with_qemu_img():
    r = subprocess.run([os.path.join(ROOT, "tests/system/qcow2_corpus.sh"), os.path.relpath(BUILD, ROOT)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    print(r.stdout[-4000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
