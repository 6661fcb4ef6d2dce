"""bench/rtpload.py against a real rtpengine: the calls its transcode mode sets up are
transcoded by rtpengine (the callee is offered its own codec, the caller keeps opus),
and the audio comes out in the codec each side asked for; a run whose callees' side is
a second process counts every packet of both sides."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.rtpload import (
    PTIME_NS,
    CallPorts,
    opus,
    pcmu,
    rtp_socket,
    rtpengine_calls,
    run_streams,
    streams_for,
)
from tests.support.ports import LOOPBACK
from tests.support.processes import ServerProcess
from tests.support.rtpengine import NgClient, start_rtpengine


@pytest.fixture
def rtpengine(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_rtpengine(tmp_path, rtp_ports=40)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def engine(rtpengine: ServerProcess) -> Iterator[NgClient]:
    client = NgClient(rtpengine.port)
    try:
        yield client
    finally:
        client.close()


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


def test_a_run_with_the_callees_in_a_second_process_counts_both_sides(
    rtpengine: ServerProcess, engine: NgClient
) -> None:
    caller, callee = pcmu(), pcmu()
    a, b = rtp_socket(), rtp_socket()
    calls: list[tuple[str, str, CallPorts]] = []
    seconds = 1.0
    try:
        rtpengine_calls(engine, 3, caller, callee, (a.getsockname()[1], b.getsockname()[1]), calls)
        streams = streams_for([ports for _, _, ports in calls], a, b, caller, callee)
        core = min(os.sched_getaffinity(0))
        record = run_streams(streams, (a, b), seconds, rtpengine.pid, callee_core=core)
    finally:
        for call_id, _, _ in calls:
            engine.command("delete", **{"call-id": call_id})
        a.close()
        b.close()
    # The callees' packets are sent only by the second process, and read only there.
    assert record["sent"] == 6 * round(seconds * 1e9 / PTIME_NS)
    assert record["received"] == record["sent"]
    assert record["loss_pct_forward"] == record["loss_pct_backward"] == 0
    assert record["silent_streams"] == 0
    # Each stream's arrivals in order: a relay adds next to no delay on loopback.
    assert record["jitter_p99_ms"] < 5
    assert record["generator_cpu_pct"] > 0
