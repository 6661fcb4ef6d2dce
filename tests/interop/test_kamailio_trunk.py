"""Interop: ipbx's trunk registers to Kamailio standing in for a provider (issue 4).

Kamailio (bench/kamailio/provider.cfg) is a registrar with digest authentication; its
location table, read with `kamcmd ul.dump`, shows whether ipbx's contact is bound. The
trunk's state is read the way an operator does, with `ipbx trunks --config FILE`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import REPO_ROOT, ServerProcess, stop_process, wait_ready
from tests.support.server import IpbxServer, extension_range, run_ipbx, write_ipbx_config

PROVIDER_CFG = REPO_ROOT / "bench" / "kamailio" / "provider.cfg"


def start_provider(workdir: Path, port: int, *defines: str) -> ServerProcess:
    """Kamailio as the provider on udp:127.0.0.1:port, its control socket in workdir;
    `defines` are more -A NAME=VALUE for the cfg (TERMINATION, ...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "kamailio.log"
    command = [
        "kamailio", "-f", str(PROVIDER_CFG), "-DD", "-E", "-w", str(workdir),
        "-P", str(workdir / "kamailio.pid"), "-Y", str(workdir),
        "-A", f"LISTEN=udp:{LOOPBACK}:{port}", "-A", f'CTL="unix:{workdir / "ctl"}"',
        *(arg for define in defines for arg in ("-A", define)),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess("kamailio", port, process, log_path, workdir)
    try:
        wait_ready(server, 10)
    except BaseException:
        server.stop()
        raise
    return server


def location(provider: ServerProcess) -> str:
    """Kamailio's location table as `kamcmd ul.dump` prints it."""
    result = subprocess.run(
        ["kamcmd", "-s", f"unix:{provider.workdir / 'ctl'}", "ul.dump"],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return result.stdout


def trunks_cli(config: Path) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "ipbx.cli", "trunks", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.returncode, result.stdout + result.stderr


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def columns(text: str, trunk: str) -> list[str]:
    """The `ipbx trunks` row of one trunk, split into its columns (detail words last)."""
    for line in text.splitlines():
        if line.split()[:1] == [trunk]:
            return line.split()
    return []


def cli_until(config: Path, registration: str, health: str, timeout: float) -> str:
    """`ipbx trunks` output once provider1 shows that state (it changes between calls)."""
    deadline = time.monotonic() + timeout
    while True:
        text = trunks_cli(config)[1]
        if columns(text, "provider1")[1:3] == [registration, health]:
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"ipbx trunks did not show {registration}, {health}:\n{text}")
        time.sleep(0.2)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.provider_port = free_port("udp")
        self.ipbx_port = free_port("both")
        self.servers: list[ServerProcess] = []
        workdir = tmp_path / "ipbx"
        workdir.mkdir()
        self.config = write_ipbx_config(
            workdir / "ipbx.yaml",
            port=self.ipbx_port,
            data_dir=workdir / "data",
            rtp_range=free_udp_range(20),
            extensions=extension_range(2),
        )
        # A short T1 makes an unanswered REGISTER fail in 64*T1 = 3.2 s, not 32 s.
        text = self.config.read_text().replace("sip:\n", "sip:\n  timer_t1: 0.05\n", 1)
        text += (
            "trunks:\n"
            f"  - {{name: provider1, host: '{LOOPBACK}:{self.provider_port}', transport: udp,\n"
            "     username: ipbx, password: trunksecret, register: true, expires: 120,\n"
            "     options_interval: 1, retry_interval: 0.5, retry_max: 2}\n"
        )
        self.config.write_text(text)

    def contact(self) -> str:
        return f"sip:ipbx@{LOOPBACK}:{self.ipbx_port}"

    def start_ipbx(self) -> IpbxServer:
        server = run_ipbx(self.config.parent, self.config, self.ipbx_port)
        self.servers.append(server)
        return server

    def start_provider(self) -> ServerProcess:
        server = start_provider(self.tmp_path / "kamailio", self.provider_port)
        self.servers.append(server)
        return server

    def close(self) -> None:
        # ipbx first, so that its un-REGISTER still finds the provider.
        for server in sorted(self.servers, key=lambda s: s.name != "ipbx"):
            stop_process(server.process)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    yield s
    s.close()
    for server in s.servers:
        print(f"\n--- {server.name} log tail\n{server.log_tail(30)}")


def test_ipbx_registers_its_trunk_to_kamailio_with_digest(setup: Setup) -> None:
    provider = setup.start_provider()
    ipbx = setup.start_ipbx()
    eventually(lambda: setup.contact() in location(provider), 10, "ipbx's contact at Kamailio")
    code, text = trunks_cli(setup.config)
    assert code == 0, text
    assert columns(text, "provider1")[1:3] == ["registered", "up"], text
    assert f"udp:{LOOPBACK}:{setup.provider_port}" in text
    # Kamailio challenged the first REGISTER: the binding exists only because the
    # digest answer was right.
    assert "challenge REGISTER" in provider.log_tail(200)

    # A stopping server takes its registration away (REGISTER with Expires: 0).
    assert ipbx.stop() == 0
    assert setup.contact() not in location(provider)
    code, text = trunks_cli(setup.config)
    assert code == 1 and "ipbx is not running" in text, text
    assert columns(text, "provider1")[1] == "unregistered", text


def test_a_trunk_whose_provider_is_down_recovers_when_it_comes_up(setup: Setup) -> None:
    setup.start_ipbx()
    text = cli_until(setup.config, "failed", "down", 10)
    assert "408 Request Timeout" in text and "next attempt in" in text, text

    provider = setup.start_provider()
    eventually(lambda: setup.contact() in location(provider), 10, "registration after recovery")
    cli_until(setup.config, "registered", "up", 5)
