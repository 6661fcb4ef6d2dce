"""A real `ipbx serve` per test, on free loopback ports (tests/support/server.py starts it the
same way the interop tests and benchmarks do)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.server import IpbxServer, extension_range, start_ipbx  # noqa: E402


@pytest.fixture
def ipbx(tmp_path: Path) -> Iterator[IpbxServer]:
    """ipbx with extensions 1000-1002 (passwords secret1000 ...) and echo test 9196.
    Its log tail is printed at teardown, which pytest shows only for a failed test."""
    server = start_ipbx(tmp_path / "ipbx", extension_range(3))
    try:
        yield server
    finally:
        code = server.stop()
        print(f"--- ipbx (pid {server.pid}, exit {code}) log tail:\n{server.log_tail()}")
