"""A real `ipbx serve` per test module, on free loopback ports (tests/support/server.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.server import IpbxServer, extension_range, start_ipbx  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpbxServer]:
    proc = start_ipbx(tmp_path_factory.mktemp("ipbx"), extension_range(4))
    yield proc
    alive = proc.process.poll() is None
    proc.stop()
    assert alive, f"the server died during the tests:\n{proc.log_tail()}"
