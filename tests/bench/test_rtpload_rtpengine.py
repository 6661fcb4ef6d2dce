"""bench/rtpload.py against a real rtpengine: the calls its transcode mode sets up are
transcoded by rtpengine (the callee is offered its own codec, the caller keeps opus),
and the audio comes out in the codec each side asked for."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.rtpload import CallPorts, opus, pcmu, rtpengine_calls
from tests.support.ports import LOOPBACK
from tests.support.rtpengine import NgClient, start_rtpengine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[NgClient]:
    server = start_rtpengine(tmp_path, rtp_ports=40)
    client = NgClient(server.port)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(2)
    return sock


def test_the_transcode_mode_makes_rtpengine_transcode_opus_to_pcmu(engine: NgClient) -> None:
    caller, callee = opus(), pcmu()
    a, b = _socket(), _socket()
    calls: list[tuple[str, str, CallPorts]] = []
    try:
        rtpengine_calls(engine, 1, caller, callee, (a.getsockname()[1], b.getsockname()[1]), calls)
        [(call_id, _, ports)] = calls
        # A few of the caller's Opus packets, as rtpload sends them.
        for index, payload in enumerate(caller.payloads[:10]):
            header = bytes([0x80, caller.payload_type]) + index.to_bytes(2, "big")
            header += (index * caller.timestamp_step).to_bytes(4, "big") + b"\x00\x00\x00\x01"
            a.sendto(header + payload, (LOOPBACK, ports.for_caller))
        data, source = b.recvfrom(2048)
        assert source[1] == ports.for_callee
        assert data[1] & 0x7F == callee.payload_type  # PCMU, which the caller never sent
        assert len(data) == 12 + 160  # 20 ms of G.711
    finally:
        for call_id, _, _ in calls:
            engine.command("delete", **{"call-id": call_id})
        a.close()
        b.close()
