"""The impairment proxy (tests/support/impairment.py) does what netem would: it drops the
configured fraction of datagrams, delays each by base ± uniform jitter (reordering them),
per direction, repeatably for a seed, and routes replies back through the port the phone
sent to. Checked with plain UDP sockets on loopback, then in front of a real ipbx that
advertises `media.public_address`: `ipbx phone` calls the echo test through it.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from tests.support.impairment import Impairment, ImpairmentProxy, loopback_alias
from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.server import extension_range, run_ipbx, write_ipbx_config
from tests.support.softphone import analyse, ipbx_phone, write_tone

Address = tuple[Any, ...]
# Every asyncio test is bounded as a whole, whatever goes wrong inside it.
TEST_TIMEOUT = 30.0
# Socket buffers big enough that the kernel never drops on loopback during a test burst.
BUFFER = 1 << 22


class Peer(asyncio.DatagramProtocol):
    """A UDP socket that records what it receives (payload, source, arrival time) and,
    as a stand-in for a latching media server, may echo it to its source."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.loop = asyncio.get_running_loop()
        self.received: list[tuple[bytes, Address, float]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.append((data, addr, self.loop.time()))
        if self.echo:
            self.sendto(data, addr)

    def sendto(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        return cast(Address, self.transport.get_extra_info("sockname"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_peer(host: str = LOOPBACK, port: int = 0, echo: bool = False) -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(lambda: Peer(echo), local_addr=(host, port))
    return peer


async def settle(done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `done()` (bounded), then a little more for stragglers."""
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.01)


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT):
            await coroutine

    asyncio.run(bounded())


async def send_paced(
    sender: Peer, targets: list[Address], count: int, interval: float, size: int = 172
) -> None:
    """`count` datagrams, round robin over `targets`, one every `interval` seconds on
    average (sent in small bursts so that a 1 ms timer is good enough). Each starts with
    its 32-bit sequence number."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in range(count):
        payload = seq.to_bytes(4, "big") + bytes(size - 4)
        sender.sendto(payload, targets[seq % len(targets)])
        if seq % 10 == 9:
            delay = start + (seq + 1) * interval - loop.time()
            await asyncio.sleep(max(0.0, delay))


def seq_of(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


def test_loopback_aliases_carry_udp() -> None:
    """The proxy's premise: on Linux all of 127.0.0.0/8 is local, so a socket can bind
    127.0.0.N beside 127.0.0.1 on the same port, and each gets its own datagrams."""
    alias = loopback_alias()
    assert alias != LOOPBACK
    port = free_port("udp")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as on_alias,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as on_one,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        on_alias.bind((alias, port))
        on_one.bind((LOOPBACK, port))
        on_alias.settimeout(2)
        on_one.settimeout(2)
        sender.bind((LOOPBACK, 0))
        sender.sendto(b"alias", (alias, port))
        sender.sendto(b"one", (LOOPBACK, port))
        assert on_alias.recvfrom(100) == (b"alias", sender.getsockname())
        assert on_one.recvfrom(100) == (b"one", sender.getsockname())


def test_loss_drops_the_configured_fraction() -> None:
    """5 % loss over 4000 datagrams: 200 expected, σ ≈ 14; everything not dropped
    arrives, once."""
    count = 4000

    async def scenario() -> None:
        first, last = free_udp_range(2)
        server = await open_peer(port=first)
        phone = await open_peer()
        proxy = ImpairmentProxy(loopback_alias(), (first, last), to_server=Impairment(loss=0.05))
        async with proxy:
            await send_paced(phone, [(proxy.public_host, first)], count, 0.0002)
            await settle(lambda: proxy.stats["to_server"].in_flight == 0)
            await settle(lambda: len(server.received) >= proxy.stats["to_server"].forwarded)
        server.close()
        phone.close()
        stats = proxy.stats["to_server"]
        assert stats.received == count
        assert stats.loss_ratio == pytest.approx(0.05, abs=0.015)
        assert len(server.received) == stats.forwarded == count - stats.dropped
        assert len({seq_of(data) for data, _, _ in server.received}) == stats.forwarded
        assert proxy.stats["to_phone"].received == 0

    run(scenario())


def test_delay_and_jitter_spread_like_netem() -> None:
    """`delay 50ms 40ms`: each datagram is held 10-90 ms, spread over the whole range,
    so datagrams sent 2 ms apart overtake each other."""
    count = 500
    impairment = Impairment(delay=0.050, jitter=0.040)

    async def scenario() -> None:
        first, last = free_udp_range(2)
        server = await open_peer(port=first)
        phone = await open_peer()
        proxy = ImpairmentProxy(loopback_alias(), (first, last), to_server=impairment, seed=3)
        sent: dict[int, float] = {}
        loop = asyncio.get_running_loop()
        async with proxy:
            for seq in range(count):
                sent[seq] = loop.time()
                phone.sendto(seq.to_bytes(4, "big") + bytes(168), (proxy.public_host, first))
                await asyncio.sleep(0.002)
            await settle(lambda: len(server.received) == count)
        server.close()
        phone.close()
        delays = [arrived - sent[seq_of(data)] for data, _, arrived in server.received]
        deciles = statistics.quantiles(delays, n=10)
        # Never earlier than scheduled (the lower bound is inherent); the upper bound
        # only allows for a busy machine.
        assert min(delays) >= 0.010 - 0.001
        assert max(delays) < 0.090 + 0.250
        assert deciles[0] < 0.030 and deciles[-1] > 0.070, deciles
        assert statistics.mean(delays) == pytest.approx(0.050, abs=0.012)
        arrival_order = [seq_of(data) for data, _, _ in server.received]
        overtaken = sum(1 for a, b in itertools.pairwise(arrival_order) if b < a)
        assert overtaken > count // 10, overtaken
        stats = proxy.stats["to_server"]
        assert (stats.received, stats.forwarded, stats.dropped) == (count, count, 0)
        assert 0.010 <= stats.delay_min < 0.015 and 0.085 < stats.delay_max <= 0.090

    run(scenario())


def test_replies_come_back_from_the_port_the_phone_sent_to() -> None:
    """Four ports (two RTP/RTCP pairs): the server, echoing like a latching media
    server, sees the proxy's upstream sockets; the phone gets every reply from the
    public address and port it sent to. Each direction loses its own fraction."""
    count = 3000

    async def scenario() -> None:
        first, last = free_udp_range(4)
        ports = range(first, last + 1)
        servers = {port: await open_peer(port=port, echo=True) for port in ports}
        phone = await open_peer()
        proxy = ImpairmentProxy(
            loopback_alias(),
            (first, last),
            to_server=Impairment(loss=0.10),
            to_phone=Impairment(loss=0.20),
            seed=11,
        )
        async with proxy:
            targets = [(proxy.public_host, port) for port in ports]
            await send_paced(phone, targets, count, 0.0003)
            up, down = proxy.stats["to_server"], proxy.stats["to_phone"]
            await settle(lambda: up.in_flight == 0 and down.received == up.forwarded)
            await settle(lambda: down.in_flight == 0 and len(phone.received) == down.forwarded)
        phone.close()
        for server in servers.values():
            server.close()
        echoed = sum(len(server.received) for server in servers.values())
        assert (up.received, echoed, down.received) == (count, up.forwarded, up.forwarded)
        assert up.loss_ratio == pytest.approx(0.10, abs=0.025)
        assert down.loss_ratio == pytest.approx(0.20, abs=0.03)
        assert len(phone.received) == down.forwarded
        for server in servers.values():
            sources = {addr for _, addr, _ in server.received}
            assert len(sources) == 1 and phone.address not in sources
            assert next(iter(sources))[0] == LOOPBACK
        for data, addr, _ in phone.received:
            assert addr == targets[seq_of(data) % len(targets)]
        assert proxy.phones == {port: phone.address for port in ports}

    run(scenario())


def test_each_direction_has_its_own_delay() -> None:
    """No delay towards the server, 60 ms back: a round trip takes 60 ms."""

    async def scenario() -> None:
        first, last = free_udp_range(2)
        server = await open_peer(port=first, echo=True)
        phone = await open_peer()
        proxy = ImpairmentProxy(loopback_alias(), (first, last), to_phone=Impairment(delay=0.060))
        loop = asyncio.get_running_loop()
        sent: dict[int, float] = {}
        async with proxy:
            for seq in range(50):
                sent[seq] = loop.time()
                phone.sendto(seq.to_bytes(4, "big"), (proxy.public_host, first))
                await asyncio.sleep(0.005)
            await settle(lambda: len(phone.received) == 50)
        server.close()
        phone.close()
        round_trips = [arrived - sent[seq_of(data)] for data, _, arrived in phone.received]
        assert min(round_trips) >= 0.059
        assert statistics.median(round_trips) < 0.060 + 0.100
        assert proxy.stats["to_server"].delay_max == 0.0
        assert proxy.stats["to_phone"].delay_min == proxy.stats["to_phone"].delay_max == 0.060

    run(scenario())


def test_the_same_seed_loses_the_same_datagrams() -> None:
    async def delivered(seed: int) -> set[int]:
        first, last = free_udp_range(2)
        server = await open_peer(port=first)
        phone = await open_peer()
        proxy = ImpairmentProxy(
            loopback_alias(), (first, last), to_server=Impairment(loss=0.3), seed=seed
        )
        async with proxy:
            await send_paced(phone, [(proxy.public_host, first)], 500, 0.0002)
            await settle(lambda: len(server.received) == proxy.stats["to_server"].forwarded)
        server.close()
        phone.close()
        return {seq_of(data) for data, _, _ in server.received}

    async def scenario() -> None:
        first_run, second_run, other_seed = (
            await delivered(7),
            await delivered(7),
            await delivered(8),
        )
        assert first_run == second_run
        assert other_seed != first_run
        assert 300 < len(first_run) < 400

    run(scenario())


def test_a_taken_port_fails_start_and_releases_the_others() -> None:
    async def scenario() -> None:
        alias = loopback_alias()
        first, last = free_udp_range(4)
        squatter = await open_peer(alias, first + 2)
        proxy = ImpairmentProxy(alias, (first, last))
        with pytest.raises(OSError):
            await proxy.start()
        squatter.close()
        await asyncio.sleep(0)
        # Every port the failed start had bound is free again: a new proxy gets them all.
        async with ImpairmentProxy(alias, (first, last)):
            pass

    run(scenario())


def test_impairment_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Impairment(loss=1.5)
    with pytest.raises(ValueError):
        Impairment(delay=-0.01)
    with pytest.raises(ValueError):
        ImpairmentProxy(LOOPBACK, (2000, 1000))


def test_threaded_proxy_serves_blocking_sockets() -> None:
    """`in_thread()` runs the proxy in a thread, for tests that block."""
    first, last = free_udp_range(2)
    alias = loopback_alias()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone,
        ImpairmentProxy(
            alias, (first, last), to_phone=Impairment(delay=0.020)
        ).in_thread() as network,
    ):
        server.bind((LOOPBACK, first))
        phone.bind((LOOPBACK, 0))
        server.settimeout(2)
        phone.settimeout(2)
        for seq in range(20):
            phone.sendto(bytes([seq]), (alias, first))
            data, source = server.recvfrom(100)
            assert data == bytes([seq]) and source != phone.getsockname()
            server.sendto(data, source)
            assert phone.recvfrom(100) == (bytes([seq]), (alias, first))
    assert network.stats["to_server"].forwarded == network.stats["to_phone"].forwarded == 20


def test_echo_test_through_the_proxy(tmp_path: Path) -> None:
    """A real ipbx binding 127.0.0.1 and advertising 127.0.0.N (`media.public_address`):
    `ipbx phone` calls the echo test 9196, sends to the SDP address, i.e. through the
    proxy (ipbx does not listen on 127.0.0.N), and hears its tone come back through it.
    0 % loss here, 20 ± 10 ms each way."""
    alias = loopback_alias()
    user = extension_range(1)[0]
    workdir = tmp_path / "ipbx"
    (workdir / "data").mkdir(parents=True)
    port = free_port("both")
    rtp_range = free_udp_range(20)
    config = write_ipbx_config(
        workdir / "ipbx.yaml",
        port=port,
        data_dir=workdir / "data",
        rtp_range=rtp_range,
        extensions=[user],
        media=[f"public_address: {alias}"],
    )
    tone = write_tone(tmp_path / "1000hz.wav", 1000, 2)
    heard = tmp_path / "echo.wav"
    phone_rtp = free_udp_range(10)
    network_delay = Impairment(delay=0.020, jitter=0.010)
    server = run_ipbx(workdir, config, port, rtp_range)
    try:
        network = ImpairmentProxy(
            alias, rtp_range, to_server=network_delay, to_phone=network_delay
        ).in_thread()
        with network as proxy, ipbx_phone(
            tmp_path, port, user,
            "--call", "9196", "--play", str(tone), "--record", str(heard),
            "--rtp-ports", f"{phone_rtp[0]}-{phone_rtp[1]}", "--timeout", "15",
        ) as phone:  # fmt: skip
            status, out = phone.finish()
    finally:
        server.stop()
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log
    up, down = proxy.stats["to_server"], proxy.stats["to_phone"]
    # 2 s of 20 ms packets went out through the proxy, and came back through it.
    assert up.forwarded >= 90 and up.dropped == 0, up
    assert down.forwarded >= 0.9 * up.forwarded and down.dropped == 0, down
    assert down.delay_max <= 0.030
    # The proxy saw the phone's own RTP (and RTCP) sockets as the senders.
    assert proxy.phones, "nothing was sent to the advertised address"
    for host, source_port in proxy.phones.values():
        assert host == LOOPBACK and phone_rtp[0] <= source_port <= phone_rtp[1]
    echoed = analyse(heard)
    assert echoed.dominant_hz == pytest.approx(1000, abs=20)
    assert echoed.seconds >= 1.5
