import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
