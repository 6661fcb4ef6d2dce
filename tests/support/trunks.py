"""Trunks in tests: providers played by raw SIP sockets on loopback (Gateway), a DID and
a national outbound route over two trunks as a configuration edit, and `ipbx trunks`
read the way an operator reads it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ipbx.sip.message import Request
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.server import IpbxServer, start_configured_ipbx
from tests.support.sipclient import SipClient, next_request, reply_to

DID = "+15550100"
CALLER_ID = "+15550111"


def offer(port: int | None = None) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port or free_port('udp')} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def received(client: SipClient, seconds: float) -> list[bytes]:
    """Every datagram that reaches the client within `seconds`."""
    deadline = time.monotonic() + seconds
    out: list[bytes] = []
    while (left := deadline - time.monotonic()) > 0:
        client.sock.settimeout(left)
        try:
            out.append(client.sock.recv(65535))
        except TimeoutError:
            break
    return out


class Gateway:
    """A provider's SIP side: one UDP socket on 127.0.0.1 that ipbx's trunk points at."""

    def __init__(self) -> None:
        self.client = SipClient(0, timeout=5)
        self.port = self.client.local_port

    @property
    def headers(self) -> list[str]:
        """Contact and Content-Type of an INVITE with SDP from this gateway."""
        return [f"Contact: <sip:gw@{LOOPBACK}:{self.port}>", "Content-Type: application/sdp"]

    def attach(self, server: IpbxServer) -> None:
        self.client.port = server.port

    def invite(self) -> Request:
        return next_request(self.client, "INVITE")

    def reply(self, request: Request, status: int, extra: list[str] | None = None) -> None:
        self.client.send(reply_to(request, status, extra or []))

    def answer(self, invite: Request) -> None:
        contact = f"Contact: <sip:gw@{LOOPBACK}:{self.port}>"
        body = offer()
        self.client.send(reply_to(invite, 200, [contact, "Content-Type: application/sdp"], body))
        ack = next_request(self.client, "ACK")
        assert ack.call_id == invite.call_id

    def nothing(self, seconds: float) -> list[bytes]:
        """What arrives within `seconds` (expected: nothing)."""
        return received(self.client, seconds)

    def close(self) -> None:
        self.client.close()


def routing(
    provider1: dict[str, Any], provider2: dict[str, Any], **extension: Any
) -> Callable[[dict[str, Any]], None]:
    """docs/trunks.md's example: DID -> 1001, national route over provider1 then provider2."""

    def edit(config: dict[str, Any]) -> None:
        config["country"] = "US"
        config["sip"]["timer_t1"] = 0.05  # an unanswered transaction fails in 3.2 s
        config["trunks"] = [
            {"name": "provider1", "options_interval": 0, **provider1},
            {"name": "provider2", "options_interval": 0, **provider2},
        ]
        config["numbers"] = [{"number": DID, "destination": "extension:1001"}]
        config["outbound_routes"] = [
            {
                "name": "national", "pattern": "_9NXXNXXXXXX", "strip": 1, "prepend": "+1",
                "trunks": ["provider1", "provider2"], "caller_id": CALLER_ID,
            }
        ]  # fmt: skip
        config["extensions"][0].update(extension)

    return edit


def ip_trunk(gateway: Gateway, **fields: Any) -> dict[str, Any]:
    peer = f"{LOOPBACK}:{gateway.port}"
    return {"host": peer, "allow_from": [peer], **fields}


@contextmanager
def ipbx(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Iterator[IpbxServer]:
    server = start_configured_ipbx(tmp_path / "ipbx", edit)
    try:
        yield server
    finally:
        code = stop_process(server.process)
        print(f"--- ipbx (exit {code}) log tail:\n{server.log_tail(60)}")


@contextmanager
def gateways(count: int) -> Iterator[list[Gateway]]:
    made = [Gateway() for _ in range(count)]
    try:
        yield made
    finally:
        for gateway in made:
            gateway.close()


def registered(server: IpbxServer, number: str, password: str) -> SipClient:
    phone = SipClient(server.port, timeout=5)
    answer = phone.register(number, password)
    assert answer is not None and answer.status == 200, answer
    return phone


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
