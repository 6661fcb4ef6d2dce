"""Fixtures for interop tests: a real ipbx process on free loopback ports, real peers.

The process handling lives in tests/support/, shared with the benchmarks, so a test
starts the server exactly as `make bench` does: `python -m ipbx.cli serve --config FILE`
with the running venv's interpreter, ready once it answers OPTIONS over UDP.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support import ports  # noqa: E402
from tests.support.ports import PortKind  # noqa: E402
from tests.support.server import (  # noqa: E402
    Extension,
    IpbxFactory,
    IpbxServer,
    extension_range,
    start_ipbx,
)

_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the test's call-phase report, so fixtures know at teardown if it failed."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


class FreePort(Protocol):
    def __call__(self, kind: PortKind = "both") -> int: ...


@pytest.fixture(scope="session", autouse=True)
def _require_peers() -> None:
    # `make test` installs the peers; a missing one is a broken set-up, not a reason to
    # report the interop tests as skipped.
    tools = ("sipp", "taskset", "baresip", "svwar", "linphonec")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"interop peers not installed ({', '.join(missing)}): run make peers")


@pytest.fixture
def free_port() -> FreePort:
    """free_port(kind="udp"|"tcp"|"both"): a port free on 127.0.0.1 right now."""
    return ports.free_port


@pytest.fixture
def ipbx_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IpbxFactory]:
    """Factory: ipbx_server(extensions=N, extra=[...]) starts a server and returns it.

    Extensions 1000, 1001, ... get password "secret<number>"; `extra` adds more. Each
    server is stopped by PID at teardown (SIGTERM, then SIGKILL); when the test failed,
    the tail of its log is printed.
    """
    started: list[IpbxServer] = []

    def start(extensions: int = 2, extra: Sequence[Extension] = ()) -> IpbxServer:
        workdir = tmp_path / f"ipbx-{len(started)}"
        server = start_ipbx(workdir, [*extension_range(extensions), *extra])
        started.append(server)
        return server

    yield start

    report = request.node.stash.get(_CALL_REPORT, None)
    for server in started:
        exited_early = server.process.poll() is not None
        code = server.stop()
        if exited_early or (report is not None and report.failed):
            print(f"\n--- ipbx (pid {server.pid}, exit {code}) log tail: {server.log_path}")
            print(server.log_tail())
