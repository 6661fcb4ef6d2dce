"""MediaEndpoint over real loopback sockets, on uvloop as in production."""

import asyncio
import gc
import random
import socket
import wave
import weakref
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from ipbx.media.bridge import relay, transcode
from ipbx.media.codecs import PCMA, PCMU
from ipbx.media.endpoint import MediaEndpoint, MediaError
from ipbx.media.ports import PortPool
from ipbx.media.rtcp import ReceiverReport, SenderReport
from ipbx.media.rtp import RtpPacket
from ipbx.media.wav import read_wav
from tests.support.media import dominant_frequency, run

TONE = (8000 * np.sin(2 * np.pi * 1000 * np.arange(4000) / 8000)).astype(np.int16)


class Phone(asyncio.DatagramProtocol):
    """A bare UDP socket standing in for a SIP phone's RTP port."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.transport.get_extra_info("sockname")
        return host, port

    async def next(self) -> tuple[bytes, Any]:
        return await asyncio.wait_for(self.received.get(), 1)

    async def nothing(self) -> bool:
        await asyncio.sleep(0.1)
        return self.received.empty()


async def phone() -> Phone:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    return protocol


def rtp(ssrc: int, seq: int) -> bytes:
    return RtpPacket(0, seq, seq * 160, ssrc, b"\xff" * 160).serialize()


@pytest.mark.alone  # the pace of real time
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_played_tone_is_recorded_at_1_khz(pool: PortPool, tmp_path: Path, loop: str) -> None:
    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*b.local_address, PCMA)
        b.set_remote(*a.local_address, PCMA)
        b.record(tmp_path / "call.wav")
        started = asyncio.get_running_loop().time()
        await a.play(TONE)
        elapsed = asyncio.get_running_loop().time() - started
        await asyncio.sleep(0.1)
        assert b.stop_recording() == tmp_path / "call.wav"
        assert a.stats.packets_sent == b.stats.packets_received == 25
        assert a.stats.bytes_sent == 25 * (12 + 160)
        # Real-time pace: 25 frames of 20 ms, the first sent at once.
        assert 0.46 <= elapsed < 1.0
        a.close()
        b.close()

    run(scenario, loop)
    recorded = read_wav(tmp_path / "call.wav")
    assert len(recorded) == len(TONE)
    assert dominant_frequency(recorded) == pytest.approx(1000, abs=4)


def test_plays_a_wav_file(pool: PortPool, tmp_path: Path) -> None:

    prompt = tmp_path / "prompt.wav"
    with wave.open(str(prompt), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.repeat(TONE[:800], 2).tobytes())

    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*b.local_address, PCMU)
        b.set_remote(*a.local_address, PCMU)
        await a.play(prompt)
        await asyncio.sleep(0.05)
        assert b.stats.packets_received == 5
        a.close()
        b.close()

    run(scenario)


def test_echo_returns_the_tone(pool: PortPool, tmp_path: Path) -> None:
    async def scenario() -> None:
        caller, echo = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        caller.set_remote(*echo.local_address, PCMU)
        echo.set_remote("127.0.0.1", 9, PCMU)  # wrong SDP address: latching must fix it
        echo.echo()
        caller.record(tmp_path / "echo.wav")
        await caller.play(TONE)
        await asyncio.sleep(0.1)
        caller.close()
        echo.close()

    run(scenario)
    echoed = read_wav(tmp_path / "echo.wav")
    assert len(echoed) == len(TONE)
    assert dominant_frequency(echoed) == pytest.approx(1000, abs=4)


def test_dtmf_digits_arrive_as_sent(pool: PortPool) -> None:
    heard: list[str] = []

    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*b.local_address, PCMU, dtmf_pt=101)
        b.set_remote(*a.local_address, PCMU, dtmf_pt=101)
        b.on_dtmf = heard.append
        await a.send_dtmf("159#*0", duration_ms=60, gap_ms=20)
        await asyncio.sleep(0.1)
        a.close()
        b.close()

    run(scenario)
    assert heard == list("159#*0")


def test_dtmf_needs_negotiated_telephone_event(pool: PortPool) -> None:
    async def scenario() -> None:
        a = await MediaEndpoint.open(pool)
        with pytest.raises(MediaError):
            await a.send_dtmf("1")
        a.set_remote("127.0.0.1", 9, PCMU)
        with pytest.raises(MediaError):
            await a.send_dtmf("1")
        a.close()

    run(scenario)


def test_bridge_relays_both_ways_and_latches_to_the_real_source(pool: PortPool) -> None:
    async def scenario() -> None:
        caller, callee_sdp, callee_nat, caller_rtcp, callee_rtcp = [await phone() for _ in range(5)]
        x, y = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        x.set_remote(*caller.address, PCMU, rtcp_port=caller_rtcp.address[1])
        y.set_remote(*callee_sdp.address, PCMU, rtcp_port=callee_rtcp.address[1])
        relay(x, y)

        # Before the callee speaks, media goes to the address its SDP gave.
        caller.transport.sendto(rtp(1, 1), x.local_address)
        assert await callee_sdp.next() == (rtp(1, 1), y.local_address)

        # The callee is behind NAT: its packets come from elsewhere, and y latches there.
        callee_nat.transport.sendto(rtp(2, 1), y.local_address)
        assert await caller.next() == (rtp(2, 1), x.local_address)
        caller.transport.sendto(rtp(1, 2), x.local_address)
        assert await callee_nat.next() == (rtp(1, 2), y.local_address)
        assert y.remote_address == callee_nat.address

        # A packet from another address reusing the latched SSRC does not hijack the stream.
        callee_sdp.transport.sendto(rtp(2, 2), y.local_address)
        assert await caller.nothing()
        assert y.remote_address == callee_nat.address

        # RTCP takes the parallel path, port + 1.
        report = ReceiverReport(1).serialize()
        caller_rtcp.transport.sendto(report, (x.local_address[0], x.local_address[1] + 1))
        assert (await callee_rtcp.next())[0] == report

        assert (x.stats.packets_received, x.stats.packets_sent) == (2, 1)
        assert (y.stats.packets_received, y.stats.packets_sent) == (1, 2)

        x.close()
        # Closing one side detaches the other instead of relaying into a closed socket.
        callee_nat.transport.sendto(rtp(2, 3), y.local_address)
        assert await caller.nothing()
        y.close()

    run(scenario)


def test_close_returns_ports_to_the_pool(pool: PortPool) -> None:
    async def scenario() -> None:
        before = pool.available
        endpoint = await MediaEndpoint.open(pool)
        assert pool.available == before - 1
        endpoint.close()
        endpoint.close()
        assert pool.available == before

    run(scenario)


def test_a_closed_endpoint_is_freed_by_reference_counting(pool: PortPool) -> None:
    """A finished call's endpoints may still be referred to for 64*T1 (by a transaction
    lingering after the call); once that lets go they are freed at once, whatever mode
    they were in, without waiting for the cyclic garbage collector."""

    async def scenario() -> None:
        endpoints = [await MediaEndpoint.open(pool) for _ in range(5)]
        for endpoint in endpoints:
            endpoint.set_remote("127.0.0.1", 9, PCMU, dtmf_pt=101)
        endpoints[4].set_remote("127.0.0.1", 9, PCMA)
        digits: list[str] = []
        endpoints[0].on_dtmf = digits.append
        relay(endpoints[0], endpoints[1])
        endpoints[2].echo()
        transcode(endpoints[3], endpoints[4])
        freed = [weakref.ref(endpoint) for endpoint in endpoints]
        for endpoint in endpoints:
            endpoint.close()
        del endpoint, endpoints
        assert [ref() for ref in freed] == [None] * 5

    gc.disable()
    try:
        run(scenario)
    finally:
        gc.enable()


def _free_quad() -> int:
    """An even port whose next three ports are free on loopback right now."""
    for _ in range(50):
        base = random.randrange(40000, 60000, 2)
        socks = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no four free UDP ports in a row on loopback")


def test_open_skips_a_port_held_by_another_process() -> None:
    first = _free_quad()
    pool = PortPool("127.0.0.1", first, first + 3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", first + 1))

        async def scenario() -> None:
            endpoint = await MediaEndpoint.open(pool)
            assert endpoint.local_address == ("127.0.0.1", first + 2)
            endpoint.close()

        run(scenario)


def test_garbage_on_the_rtp_port_is_dropped_without_harm(pool: PortPool, tmp_path: Path) -> None:
    heard: list[str] = []

    async def scenario() -> None:
        stranger = await phone()
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*b.local_address, PCMU, dtmf_pt=101)
        b.set_remote(*stranger.address, PCMU, dtmf_pt=101)
        b.on_dtmf = heard.append
        b.record(tmp_path / "noise.wav")
        for junk in [
            b"\x00",
            b"\x80" * 11,
            SenderReport(9, 1, 2, 3, 4).serialize(),  # RTCP muxed onto the RTP port (RFC 5761)
            RtpPacket(101, 1, 1, 9, b"\x01").serialize(),  # truncated telephone-event
            RtpPacket(0, 2, 2, 9, b"\xff" * 160, padding=200).serialize()[:-1] + b"\xf0",
        ]:
            stranger.transport.sendto(junk, b.local_address)
        await asyncio.sleep(0.05)
        await a.send_dtmf("4", duration_ms=40)
        await asyncio.sleep(0.05)
        a.close()
        b.close()

    run(scenario)
    assert heard == ["4"]
