"""A real `ipbx serve` per test module, on free loopback ports (bench/harness.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.harness import IpbxServer, extension_range, start_ipbx, wait_ready  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpbxServer]:
    proc = start_ipbx(tmp_path_factory.mktemp("ipbx"), extension_range(4))
    yield proc
    alive = proc.process.poll() is None
    proc.stop()
    assert alive, f"the server died during the tests:\n{proc.log_tail()}"


def launch(workdir: Path, config: str, port: int) -> IpbxServer:
    """Run `ipbx serve` on a config the test wrote itself (TLS, restarts ...)."""
    config_path = workdir / "ipbx.yaml"
    config_path.write_text(config)
    log_path = workdir / "ipbx.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ipbx.cli", "serve", "--config", str(config_path)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = IpbxServer(
        "ipbx", port, process, log_path, workdir, workdir / "data", (0, 0), config_path
    )
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server
