"""A simulated network for media tests: a UDP proxy in front of every RTP/RTCP port of
ipbx that drops and delays datagrams, like `tc qdisc ... netem loss 5% delay 50ms 40ms`
but in the test process, on loopback, with a seeded random generator and counters.

Why this shape: ipbx latches media (RFC 4961 symmetric RTP: it answers wherever a
stream's packets come from), so a proxy only has to sit where phones *send*. ipbx binds
`media.address` (127.0.0.1) and advertises `media.public_address` (127.0.0.N) in its SDP;
the proxy binds every port of `media.rtp_ports` on 127.0.0.N and relays

    phone -> 127.0.0.N:P  ==[to_server impairment]==>  upstream socket -> 127.0.0.1:P
    phone <- 127.0.0.N:P  <==[to_phone impairment]==  upstream socket <- 127.0.0.1:P

with one upstream socket per port. ipbx latches onto that upstream socket, so its replies
come back through the proxy and out of the phone-facing socket to the phone's last
source address: the whole media path crosses the simulated network both ways. (Packets
ipbx sends before the phone's first packet arrives go to the phone's SDP address
directly; a phone sends first in practice, and the echo test only ever answers.)

Delays are scheduled with `loop.call_at` on the arrival time, so each datagram leaves at
arrival + its own delay whatever else the loop is doing; with jitter wider than the
packet interval datagrams overtake each other, as netem reorders.

Use it from async code (`async with ImpairmentProxy(...)`) or, from a synchronous test
that waits on subprocesses, as `with ImpairmentProxy(...).in_thread() as network:`,
which runs the proxy's event loop in a background thread:

    lossy = Impairment(loss=0.05, delay=0.050, jitter=0.040)
    with ImpairmentProxy("127.0.0.2", server.rtp_range, to_server=lossy).in_thread() as net:
        ...  # a call whose SDP says 127.0.0.2
    net.stats["to_server"].dropped, net.stats["to_phone"].forwarded
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

Direction = Literal["to_server", "to_phone"]
Address = tuple[Any, ...]


@dataclass(frozen=True)
class Impairment:
    """What one direction of the network does to a datagram.

    `loss` is the probability it is dropped; a kept one is delayed by `delay` plus a
    uniform offset in [-jitter, +jitter] (netem's `delay 50ms 40ms`), never below zero.
    Times are in seconds.
    """

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability, got {self.loss}")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")


NONE = Impairment()


def loopback_alias() -> str:
    """A 127.0.0.N other than 127.0.0.1 (Linux answers for all of 127/8 on `lo`), picked
    at random so that proxies of tests running side by side rarely share one."""
    return f"127.0.0.{2 + secrets.randbelow(252)}"


@dataclass
class DirectionStats:
    """Counters of one direction: every datagram received is dropped, forwarded, or
    still in flight (delayed, not yet sent)."""

    received: int = 0
    dropped: int = 0
    forwarded: int = 0
    delay_min: float = float("inf")
    delay_max: float = 0.0
    delay_sum: float = 0.0

    @property
    def in_flight(self) -> int:
        return self.received - self.dropped - self.forwarded

    @property
    def loss_ratio(self) -> float:
        return self.dropped / self.received if self.received else 0.0

    @property
    def delay_mean(self) -> float:
        """Mean of the delays drawn for kept datagrams (what was scheduled, not measured)."""
        kept = self.received - self.dropped
        return self.delay_sum / kept if kept else 0.0


class _Link:
    """Drops or schedules datagrams of one direction; shared by all ports."""

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.impairment = impairment
        self.rng = rng
        self.stats = DirectionStats()
        self.closed = False

    def carry(self, loop: asyncio.AbstractEventLoop, send: Callable[[], None]) -> None:
        stats, imp = self.stats, self.impairment
        stats.received += 1
        if imp.loss and self.rng.random() < imp.loss:
            stats.dropped += 1
            return
        delay = imp.delay
        if imp.jitter:
            delay = max(0.0, delay + self.rng.uniform(-imp.jitter, imp.jitter))
        stats.delay_min = min(stats.delay_min, delay)
        stats.delay_max = max(stats.delay_max, delay)
        stats.delay_sum += delay
        if delay == 0.0:
            self._send(send)
        else:
            loop.call_at(loop.time() + delay, self._send, send)

    def _send(self, send: Callable[[], None]) -> None:
        if self.closed:
            return
        self.stats.forwarded += 1
        send()


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        # Room for bursts (a delayed batch leaves at once) without kernel drops.
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a phone or server that went away: a real network
        # would lose those datagrams silently too.
        pass

    def sendto(self, data: bytes, addr: Address | None = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class _PortRelay:
    """One port: the phone-facing socket on the public address, the upstream socket
    towards the server's same port."""

    def __init__(self, proxy: ImpairmentProxy, port: int) -> None:
        self.proxy = proxy
        self.port = port
        self.phone: Address | None = None
        self.facing = _Socket(self._from_phone)
        self.upstream = _Socket(self._from_server)

    async def open(self, loop: asyncio.AbstractEventLoop) -> None:
        proxy = self.proxy
        await loop.create_datagram_endpoint(
            lambda: self.facing, local_addr=(proxy.public_host, self.port)
        )
        await loop.create_datagram_endpoint(
            lambda: self.upstream,
            local_addr=(proxy.server_host, 0),
            remote_addr=(proxy.server_host, self.port),
        )

    def _from_phone(self, data: bytes, addr: Address) -> None:
        self.phone = addr
        self.proxy.phones[self.port] = addr
        self.proxy.links["to_server"].carry(self.proxy.loop, lambda: self.upstream.sendto(data))

    def _from_server(self, data: bytes, addr: Address) -> None:
        phone = self.phone
        if phone is None:
            # Nobody has sent to this port yet: nowhere to deliver, as with a NAT.
            self.proxy.unroutable += 1
            return
        self.proxy.links["to_phone"].carry(self.proxy.loop, lambda: self.facing.sendto(data, phone))

    def close(self) -> None:
        for sock in (self.facing, self.upstream):
            if sock.transport is not None:
                sock.transport.close()


class ImpairmentProxy:
    """Relay UDP ports `first..last` of `public_host` to the same ports of `server_host`,
    impairing each direction. `start()` binds every port (RTP and RTCP alike) or none;
    `stop()` closes them and drops what is still in flight.

    `to_server` applies to phone -> server datagrams, `to_phone` to the replies. Each
    direction has its own random generator seeded from `seed`, so a run is repeatable.
    """

    def __init__(
        self,
        public_host: str,
        ports: tuple[int, int],
        *,
        server_host: str = "127.0.0.1",
        to_server: Impairment = NONE,
        to_phone: Impairment = NONE,
        seed: int = 0,
    ) -> None:
        first, last = ports
        if not 0 < first <= last <= 65535:
            raise ValueError(f"bad port range {first}-{last}")
        self.public_host = public_host
        self.server_host = server_host
        self.ports = ports
        self.links: dict[Direction, _Link] = {
            "to_server": _Link(to_server, random.Random(2 * seed)),
            "to_phone": _Link(to_phone, random.Random(2 * seed + 1)),
        }
        # The last source address seen on each port: where the phones are.
        self.phones: dict[int, Address] = {}
        # Datagrams from the server to a port no phone has sent to yet.
        self.unroutable = 0
        self._relays: list[_PortRelay] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the proxy is not started")
        return self._loop

    @property
    def stats(self) -> dict[Direction, DirectionStats]:
        return {direction: link.stats for direction, link in self.links.items()}

    def set_impairment(self, direction: Direction, impairment: Impairment) -> None:
        """Change a direction's impairment from now on (call from the proxy's loop or,
        for a threaded proxy, through `ThreadedProxy.set_impairment`)."""
        self.links[direction].impairment = impairment

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for link in self.links.values():
            link.closed = False
        first, last = self.ports
        try:
            for port in range(first, last + 1):
                relay = _PortRelay(self, port)
                self._relays.append(relay)
                await relay.open(self._loop)
        except BaseException:
            self._close()
            await asyncio.sleep(0)
            raise

    async def stop(self) -> None:
        self._close()
        # A transport closes its socket on the loop's next turn: let it, so that the
        # ports are free again when stop() returns.
        await asyncio.sleep(0)

    def _close(self) -> None:
        for link in self.links.values():
            link.closed = True
        for relay in self._relays:
            relay.close()
        self._relays.clear()

    async def __aenter__(self) -> ImpairmentProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def in_thread(self) -> ThreadedProxy:
        """`with proxy.in_thread() as network:` runs the proxy in a background thread
        while the block runs, for a synchronous test."""
        return ThreadedProxy(self)


class ThreadedProxy:
    """An ImpairmentProxy whose event loop runs in a daemon thread, for synchronous
    tests that block on subprocesses. Read `stats` after `stop()` for final figures."""

    def __init__(self, proxy: ImpairmentProxy) -> None:
        self.proxy = proxy
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="impairment-proxy", daemon=True
        )

    @property
    def stats(self) -> dict[Direction, DirectionStats]:
        return self.proxy.stats

    @property
    def phones(self) -> dict[int, Address]:
        return self.proxy.phones

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(timeout)
        except BaseException:
            self.stop(timeout)
            raise

    def set_impairment(self, direction: Direction, impairment: Impairment) -> None:
        self._loop.call_soon_threadsafe(self.proxy.set_impairment, direction, impairment)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> ThreadedProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
