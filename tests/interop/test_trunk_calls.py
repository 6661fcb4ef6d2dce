"""Interop: calls through trunks with Kamailio standing in for a provider and
SIPp for the phone network on both sides of it.

bench/kamailio/provider.cfg is the carrier: ipbx's trunk registers to it with digest;
it sends calls to its DIDs to the contact that registered (the DID stays in To) and
terminates ipbx's outbound calls, after a 407 challenge, at a SIPp "gateway". A second
SIPp gateway is an IP trunk (provider2, trusted by address) for failover. Extensions are
`ipbx phone` processes; the call records are read from ipbx's database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.kamailio import location, start_provider
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import ServerProcess, stop_process
from tests.support.records import call_records
from tests.support.server import CALLEE, CALLER, IpbxServer, start_configured_ipbx
from tests.support.sipp import SCENARIOS, SippProcess, run_sipp, start_sipp
from tests.support.softphone import ipbx_phone
from tests.support.trunks import cli_until, eventually

DID = "+15550100"  # one of the provider's DIDs (provider.cfg), to extension 1001
CALLER_ID = "+15550111"  # the route's caller ID
PSTN_CALLER = "+12125550199"  # who uac_did.xml calls as
DIALLED = "92125551234"  # 9 + a US national number, as extension 1000 dials it
E164 = "+12125551234"  # what the provider must be sent


def trunks(kamailio: int, gateway2: int) -> Callable[[dict[str, Any]], None]:
    """The config edit of docs/trunks.md's example: provider1 registers to Kamailio and sends
    P-Asserted-Identity; provider2 is an IP trunk (a SIPp gateway, no OPTIONS: SIPp
    would count each as a call)."""

    def edit(config: dict[str, Any]) -> None:
        config["country"] = "US"
        # An unanswered REGISTER fails in 64*T1 = 3.2 s, not 32 s.
        config["sip"]["timer_t1"] = 0.05
        config["trunks"] = [
            {
                "name": "provider1", "host": f"{LOOPBACK}:{kamailio}", "transport": "udp",
                "username": "ipbx", "password": "trunksecret", "register": True,
                "expires": 120, "pai": True, "options_interval": 1,
                "retry_interval": 0.5, "retry_max": 2,
            },
            {
                "name": "provider2", "host": f"{LOOPBACK}:{gateway2}",
                "allow_from": [f"{LOOPBACK}:{gateway2}"], "options_interval": 0,
            },
        ]  # fmt: skip
        config["numbers"] = [{"number": DID, "destination": "extension:1001"}]
        config["outbound_routes"] = [
            {
                "name": "national", "pattern": "_9NXXNXXXXXX", "strip": 1, "prepend": "+1",
                "trunks": ["provider1", "provider2"], "caller_id": CALLER_ID,
            }
        ]  # fmt: skip

    return edit


@dataclass
class Ports:
    kamailio: int
    gateway1: int  # Kamailio's termination gateway
    gateway2: int  # provider2


class Servers:
    """Every server a test starts, stopped by PID at its end (ipbx first, so that its
    un-REGISTER still finds the provider), with their log tails printed."""

    def __init__(self, tmp_path: Path, ports: Ports) -> None:
        self.tmp_path = tmp_path
        self.ports = ports
        self.started: list[ServerProcess] = []

    def provider(self) -> ServerProcess:
        termination = f'TERMINATION="sip:{LOOPBACK}:{self.ports.gateway1}"'
        server = start_provider(self.tmp_path / "kamailio", self.ports.kamailio, termination)
        self.started.append(server)
        return server

    def ipbx(self) -> IpbxServer:
        edit = trunks(self.ports.kamailio, self.ports.gateway2)
        server = start_configured_ipbx(self.tmp_path / "ipbx", edit)
        self.started.append(server)
        return server

    def close(self) -> None:
        for server in sorted(self.started, key=lambda s: s.name != "ipbx"):
            stop_process(server.process)
        for server in self.started:
            print(f"--- {server.name} log tail\n{server.log_tail(40)}")


@contextmanager
def servers(tmp_path: Path) -> Iterator[Servers]:
    ports = Ports(free_port("udp"), free_port("udp"), free_port("udp"))
    started = Servers(tmp_path, ports)
    try:
        yield started
    finally:
        started.close()


def registered(provider: ServerProcess, server: IpbxServer) -> None:
    contact = f"sip:ipbx@{LOOPBACK}:{server.port}"
    eventually(lambda: contact in location(provider), 10, "ipbx's contact at Kamailio")


def gateway(tmp_path: Path, port: int, scenario: str, name: str) -> SippProcess:
    """A SIPp UAS on `port` for one call, every message it receives logged."""
    workdir = tmp_path / "sipp"
    return start_sipp(
        scenario, None, "-trace_msg", "-message_file", str(workdir / f"{name}.messages.log"),
        calls=1, workdir=workdir, local_port=port, timeout=25, name=name,
    )  # fmt: skip


def received_invite(sipp: SippProcess) -> list[str]:
    """The first INVITE in SIPp's message log, as lines (request line first)."""
    text = (sipp.workdir / f"{sipp.name}.messages.log").read_text(errors="replace")
    start = text.find("INVITE sip:")
    assert start >= 0, f"{sipp.name} received no INVITE:\n{text[:2000]}"
    head = text[start:].split("\n\n", 1)[0]
    return [line.strip() for line in head.splitlines()]


def header(lines: list[str], name: str) -> str:
    values = [
        line.split(":", 1)[1].strip()
        for line in lines
        if line.lower().startswith(f"{name.lower()}:")
    ]
    assert values, f"no {name} in {lines}"
    return values[0]


def call_out(tmp_path: Path, server: IpbxServer) -> tuple[int, str, str]:
    """Extension 1000 dials DIALLED and hangs up 2 s after the answer."""
    with ipbx_phone(
        tmp_path, server.port, CALLER, "--call", DIALLED, "--duration", "2", "--timeout", "20"
    ) as phone:
        status, out = phone.finish(30)
        return status, out.strip().splitlines()[-1] if out.strip() else "", phone.log


def answered_through(server: IpbxServer, port: int) -> None:
    """The call record says 1000 called DIALLED, answered, its far leg at `port`."""
    [record] = call_records(server)
    assert (record.caller, record.callee, record.result) == ("1000", DIALLED, "answered")
    assert record.legs[1].peer == f"UDP:{LOOPBACK}:{port}"


def test_a_call_to_a_did_through_kamailio_rings_and_is_answered_at_its_extension(
    tmp_path: Path,
) -> None:
    with servers(tmp_path) as stack:
        ports = stack.ports
        kamailio = stack.provider()
        server = stack.ipbx()
        registered(kamailio, server)
        with ipbx_phone(
            tmp_path, server.port, CALLEE, "--register", "--answer", "--timeout", "25"
        ) as callee:
            callee.wait_for("registered as")
            result = run_sipp(
                SCENARIOS / "uac_did.xml", f"{LOOPBACK}:{ports.kamailio}", "-s", DID,
                "-d", "2000", calls=1, workdir=tmp_path / "sipp", timeout=15, name="pstn",
            )  # fmt: skip
            status, out = callee.finish(20)
        assert result.successful == 1, result.errors()
        assert (status, out.splitlines()[-1]) == (0, "result: answered"), callee.log
        # Kamailio sent it to the trunk's registered contact, the DID only in To.
        assert f"provider: DID {DID} from {LOOPBACK}:" in kamailio.log_tail(300)
        [record] = call_records(server)
        assert (record.caller, record.callee, record.result) == (PSTN_CALLER, DID, "answered")
        assert [leg.role for leg in record.legs] == ["caller", "callee"]
        assert record.legs[0].peer == f"UDP:{LOOPBACK}:{ports.kamailio}"


def test_a_call_out_leaves_through_kamailio_with_caller_id_and_e164(tmp_path: Path) -> None:
    with servers(tmp_path) as stack:
        ports = stack.ports
        gateway1 = gateway(tmp_path, ports.gateway1, "uas", "gateway1")
        kamailio = stack.provider()
        server = stack.ipbx()
        registered(kamailio, server)
        status, last, log = call_out(tmp_path, server)
        result = gateway1.finish(15)
        assert (status, last) == (0, "result: answered"), log
        assert result.successful == 1, result.errors()
        invite = received_invite(gateway1)
        assert invite[0].startswith(f"INVITE sip:{E164}@"), invite
        assert f"<sip:{CALLER_ID}@" in header(invite, "From"), invite
        assert f"<sip:{CALLER_ID}@" in header(invite, "P-Asserted-Identity"), invite
        # The provider challenged the INVITE; the call went through on the trunk's
        # credentials.
        text = kamailio.log_tail(300)
        assert "provider: challenge INVITE" in text, text
        assert f"provider: INVITE to {E164} from {CALLER_ID} terminated" in text, text
        answered_through(server, ports.kamailio)


def test_a_call_out_fails_over_to_the_ip_trunk_when_kamailio_answers_503(
    tmp_path: Path,
) -> None:
    with servers(tmp_path) as stack:
        ports = stack.ports
        overloaded = gateway(tmp_path, ports.gateway1, str(SCENARIOS / "uas_503.xml"), "gw503")
        gateway2 = gateway(tmp_path, ports.gateway2, "uas", "gateway2")
        kamailio = stack.provider()
        server = stack.ipbx()
        registered(kamailio, server)
        status, last, log = call_out(tmp_path, server)
        assert (status, last) == (0, "result: answered"), log
        assert overloaded.finish(10).successful == 1
        result = gateway2.finish(15)
        assert result.successful == 1, result.errors()
        assert received_invite(overloaded)[0].startswith(f"INVITE sip:{E164}@")
        invite = received_invite(gateway2)
        assert invite[0].startswith(f"INVITE sip:{E164}@{LOOPBACK}"), invite
        assert f"<sip:{CALLER_ID}@" in header(invite, "From"), invite
        answered_through(server, ports.gateway2)


def test_a_call_out_fails_over_to_the_ip_trunk_when_kamailio_is_down(tmp_path: Path) -> None:
    with servers(tmp_path) as stack:
        ports = stack.ports
        gateway2 = gateway(tmp_path, ports.gateway2, "uas", "gateway2")
        server = stack.ipbx()
        # Shown between registration attempts, longer after each: on a slow machine
        # `ipbx trunks` takes longer to start than the first ones last.
        cli_until(server.config_path, "failed", "down", 30)
        status, last, log = call_out(tmp_path, server)
        assert (status, last) == (0, "result: answered"), log
        result = gateway2.finish(15)
        assert result.successful == 1, result.errors()
        assert received_invite(gateway2)[0].startswith(f"INVITE sip:{E164}@"), log
        answered_through(server, ports.gateway2)
        assert "via trunk provider2" in server.log_tail(200)
