"""Interop: ipbx's trunk registers to Kamailio standing in for a provider.

Kamailio (bench/kamailio/provider.cfg) is a registrar with digest authentication; its
location table, read with `kamcmd ul.dump`, shows whether ipbx's contact is bound. The
trunk's state is read the way an operator does, with `ipbx trunks --config FILE`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kamailio import location, start_provider
from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import ServerProcess, stop_process
from tests.support.server import IpbxServer, extension_range, run_ipbx, write_ipbx_config
from tests.support.trunks import cli_until, columns, eventually, trunks_cli


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
    text = cli_until(setup.config, "failed", "down", 30)
    assert "408 Request Timeout" in text and "next attempt in" in text, text

    provider = setup.start_provider()
    eventually(lambda: setup.contact() in location(provider), 10, "registration after recovery")
    cli_until(setup.config, "registered", "up", 5)
