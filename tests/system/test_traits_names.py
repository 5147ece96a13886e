"""Every trait name scheduler-client/traits.c can report is a real os-traits trait, spelled
as os-traits spells it (python3-os-traits, the library Placement itself uses)."""
import os
import re

import os_traits

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "scheduler-client", "traits.c")


def table_names():
    with open(SRC) as f:
        text = f.read()
    # Comments may name traits too ("HW_CPU_X86_*"); only string literals count.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.findall(r'"((?:HW|COMPUTE)_[A-Za-z0-9_]*)"', text)


def test_every_table_name_is_an_os_trait():
    names = table_names()
    # The tables: ~50 CPU flags and ~50 capabilities; a parse that finds few is broken.
    assert len(names) > 80, names
    known = set(os_traits.get_traits())
    unknown = sorted(set(names) - known)
    assert not unknown, f"not os-traits names: {unknown}"


def test_cpu_and_compute_tables_are_in_their_namespaces():
    names = table_names()
    cpu = [n for n in names if n.startswith("HW_")]
    assert cpu and all(n.startswith("HW_CPU_X86_") for n in cpu)
    assert "COMPUTE_NODE" in names
    # Each trait comes from one row: a duplicate is a copy-paste slip.
    assert len(names) == len(set(names))
