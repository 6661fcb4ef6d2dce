"""media.relay: kernel (media/kernel.py): the kernel forwards a standing relay bridge's RTP
between two phones (real UDP sockets on loopback) from the right ports, ipbx reads none
of it, counts it for the media time-out and the record, and takes the bridge back when a
phone moves or the call ends. Needs root and libnftables (make peers; CI runs as root)."""

import asyncio
import os
import random
import secrets
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from subprocess import PIPE

import pytest

from ipbx.media.bridge import connect
from ipbx.media.codecs import OPUS, PCMU, Codec
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.kernel import KernelRelay
from ipbx.media.nftables import Nftables, NftablesError
from ipbx.media.ports import PortPool
from tests.support.first_hour import Namespace, _ip
from tests.support.media import run


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "nftables needs root (CI runs the suite as root)"
    try:
        Nftables().close()
    except NftablesError as exc:
        return str(exc)
    return None


WHY_NOT = _why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))

PAYLOAD = bytes(160)


class Phone:
    """A phone's RTP socket: sends numbered PCMU packets with its SSRC, and reads."""

    def __init__(self, ssrc: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.ssrc = ssrc
        self.seq = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def send(self, to: tuple[str, int], count: int = 1) -> None:
        for _ in range(count):
            header = struct.pack("!BBHII", 0x80, 0, self.seq, self.seq * 160, self.ssrc)
            self.sock.sendto(header + PAYLOAD, to)
            self.seq += 1

    async def heard(self, count: int) -> list[tuple[int, tuple[str, int]]]:
        """The sequence numbers and sources of the next `count` packets."""
        got: list[tuple[int, tuple[str, int]]] = []
        for _ in range(1000):  # two seconds at most
            try:
                data, source = self.sock.recvfrom(2048)
            except BlockingIOError:
                await asyncio.sleep(0.002)
                continue
            got.append((struct.unpack_from("!H", data, 2)[0], source))
            if len(got) == count:
                break
        return got


async def bridged(
    pool: PortPool,
    kernel: KernelRelay,
    a_phone: tuple[str, int],
    b_phone: tuple[str, int],
    b_codec: Codec = PCMU,
) -> tuple[MediaEndpoint, MediaEndpoint]:
    """Two server legs toward these phones, bridged, with `kernel` to take them over."""
    a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
    a.set_remote(*a_phone, PCMU, 101)
    b.set_remote(*b_phone, b_codec, 101)
    pool.offload = kernel.offload
    connect(a, b)
    return a, b


async def standing_call(
    pool: PortPool, kernel: KernelRelay
) -> tuple[Phone, MediaEndpoint, MediaEndpoint, Phone]:
    """x -- a [ipbx] b -- y, relayed; both phones have sent (so a and b latched), and the
    kernel has taken the bridge over."""
    x, y = Phone(0x1111), Phone(0x2222)
    a, b = await bridged(pool, kernel, x.address, y.address)
    x.send(a.local_address, 3)
    y.send(b.local_address, 3)
    assert len(await y.heard(3)) == len(await x.heard(3)) == 3  # relayed by ipbx
    for _ in range(100):
        if a.away is not None:
            return x, a, b, y
        await asyncio.sleep(0.01)
    raise AssertionError("the kernel never took the bridge over")


@contextmanager
def kernel_relay() -> Iterator[KernelRelay]:
    """A started kernel relay that moves bridges after 0.1 s, closed after the block."""
    kernel = KernelRelay("127.0.0.1")
    kernel.move_after = 0.1
    assert kernel.start() is None
    try:
        yield kernel
    finally:
        kernel.close()


def elements(kernel: KernelRelay) -> str:
    return Nftables().run(f"list set ip {kernel.table} legs")


def test_the_kernel_forwards_a_standing_relay_from_the_legs_own_ports(pool: PortPool) -> None:
    async def scenario() -> None:
        with kernel_relay() as kernel:
            x, a, b, y = await standing_call(pool, kernel)
            assert a.away is b.away is not None
            read_by_ipbx = a._rtp.packets_received, b._rtp.packets_received
            # What ipbx metered itself (RFC 3550 A.1: a source counts once past probation).
            metered = a.meter.reading().packets_received, b.meter.reading().packets_received
            x.send(a.local_address, 50)
            y.send(b.local_address, 20)
            heard_by_y, heard_by_x = await y.heard(50), await x.heard(20)
            # From the other leg's port, in order, the phone's own numbers: as ipbx relays.
            assert heard_by_y == [(seq, b.local_address) for seq in range(3, 53)]
            assert heard_by_x == [(seq, a.local_address) for seq in range(3, 23)]
            assert (a._rtp.packets_received, b._rtp.packets_received) == read_by_ipbx
            # Counted by the kernel; the meters read them when asked (the media time-out
            # asks at each sweep).
            assert a.meter.reading().packets_received == metered[0]
            kernel.refresh()
            assert a.meter.reading().packets_received == metered[0] + 50
            assert b.meter.reading().packets_received == metered[1] + 20
            a.close()  # the call ends: the kernel forwards no more
            assert a.away is None and b.away is None
            assert "elements" not in elements(kernel)
            final = a.meter.reading()
            assert (final.packets_received, final.packets_lost) == (metered[0] + 50, 0)
            b.close()

    run(scenario)


def test_two_calls_between_the_same_two_phone_ports_are_both_forwarded(pool: PortPool) -> None:
    """A gateway may send every call's RTP from one port: each leg's own port tells the
    calls apart."""

    async def scenario() -> None:
        with kernel_relay() as kernel:
            x, a, b, y = await standing_call(pool, kernel)
            c, d = await bridged(pool, kernel, x.address, y.address)
            x.send(c.local_address, 1)
            y.send(d.local_address, 1)
            assert len(await y.heard(1)) == len(await x.heard(1)) == 1
            await asyncio.sleep(0.3)
            assert c.away is d.away is not None and a.away is not None
            x.send(a.local_address, 1)
            x.send(c.local_address, 1)
            assert [source for _, source in await y.heard(2)] == [
                b.local_address,
                d.local_address,
            ]
            for endpoint in (a, b, c, d):
                endpoint.close()

    run(scenario)


def test_a_phone_that_moves_brings_the_bridge_back_to_ipbx(pool: PortPool) -> None:
    async def scenario() -> None:
        with kernel_relay() as kernel:
            x, a, b, y = await standing_call(pool, kernel)
            metered = a.meter.reading().packets_received
            x.send(a.local_address, 5)
            assert len(await y.heard(5)) == 5
            moved = Phone(0x3333)  # the phone behind a NAT that rebinds: a new source
            moved.send(a.local_address, 1)
            assert await y.heard(1) == [(0, b.local_address)]
            assert a.away is None and b.away is None
            assert a.remote_address == moved.address
            y.send(b.local_address, 2)
            assert [source for _, source in await moved.heard(2)] == [a.local_address] * 2
            assert "elements" not in elements(kernel)
            # The kernel's 5, and the moved phone's first packet, on probation.
            assert a.meter.reading().packets_received == metered + 5
            a.close()
            b.close()

    run(scenario)


def test_a_transcoded_bridge_goes_to_the_fallback(pool: PortPool) -> None:
    """The kernel only relays: a transcoded bridge goes where the fallback sends it."""

    async def scenario() -> None:
        with kernel_relay() as kernel:
            handed: list[tuple[MediaEndpoint, MediaEndpoint]] = []
            kernel.fallback = lambda a, b: handed.append((a, b))
            a, b = await bridged(pool, kernel, ("127.0.0.1", 9), ("127.0.0.1", 11), OPUS)
            await asyncio.sleep(0.3)
            assert handed == [(a, b)] and a.away is None
            a.close()
            b.close()

    run(scenario)


def test_a_phone_that_sends_late_is_forwarded_once_it_has(pool: PortPool) -> None:
    async def scenario() -> None:
        with kernel_relay() as kernel:
            x, y = Phone(0x1111), Phone(0x2222)
            a, b = await bridged(pool, kernel, x.address, y.address)
            x.send(a.local_address, 3)
            await asyncio.sleep(0.35)  # three looks: y has not sent yet
            assert a.away is None
            y.send(b.local_address, 1)
            await asyncio.sleep(0.2)
            assert a.away is b.away is not None
            a.close()
            b.close()

    run(scenario)


def test_a_table_left_by_a_dead_process_is_removed_and_ours_at_close() -> None:
    async def scenario() -> None:
        nft = Nftables()
        nft.run("add table ip ipbx_999999999")  # no such process
        with kernel_relay() as kernel:
            tables = nft.run("list tables ip")
            assert "ipbx_999999999" not in tables and kernel.table in tables
        assert kernel.table not in nft.run("list tables ip")

    run(scenario)


_PHONE = """
import socket, struct, sys
to = (sys.argv[1], int(sys.argv[2]))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[3], 40000))
def send(seq, pt, payload, ts=None):
    ts = seq * 160 if ts is None else ts
    sock.sendto(struct.pack("!BBHII", 0x80, pt, seq, ts, 0x1111) + payload, to)
for seq in range(3):  # ipbx latches on these, sent at once: all pass before the drop
    send(seq, 0, bytes(160))
input()  # once ipbx drops this phone's voice
for seq in range(3, 23):
    send(seq, 0, bytes(160))
for seq, end in ((23, 0), (24, 0), (25, 0x80)):  # the key 5 as RFC 4733 events (4 bytes)
    send(seq, 101, struct.pack("!BBH", 5, end, 800), ts=23 * 160)  # one event, one time
input()
for seq in range(26, 29):
    send(seq, 0, bytes(160))
"""


def test_a_listening_legs_voice_is_dropped_in_the_kernel_and_its_events_still_read() -> None:
    """A caller waiting in a queue, on another machine (a network namespace behind a veth
    pair): its phone's voice never reaches ipbx, its RFC 4733 events do, and the dropped
    packets count for the media time-out and the record, not as lost."""
    subnet = f"10.{random.randrange(100, 250)}.{random.randrange(0, 250)}"
    ours, theirs = f"{subnet}.1", f"{subnet}.2"

    async def scenario(namespace: str) -> None:
        with kernel_relay() as kernel:
            first = random.randrange(30000, 39800, 2)
            a = await MediaEndpoint.open(PortPool(ours, first, first + 19))
            a.set_remote(theirs, 40000, PCMU, 101)
            heard: list[str] = []
            a.on_dtmf = heard.append
            listening = kernel.quieten(a)
            command = [sys.executable, "-c", _PHONE, ours, str(a.local_address[1]), theirs]
            phone = subprocess.Popen(["ip", "netns", "exec", namespace, *command], stdin=PIPE)
            assert phone.stdin is not None
            try:
                await asyncio.sleep(0.4)  # latched on the phone's first packets, then quiet
                assert listening.key == (theirs, 40000, a.local_address[1])
                read, metered = a._rtp.packets_received, a.meter.reading().packets_received
                phone.stdin.write(b"\n")
                phone.stdin.flush()
                await asyncio.sleep(0.3)
                assert a._rtp.packets_received == read + 3  # the events alone
                assert heard == ["5"]
                kernel.refresh()  # the drops counted by the kernel, as the time-out asks
                assert a.meter.reading().packets_received == metered + 20
                listening.close()
                assert "elements" not in Nftables().run(f"list set ip {kernel.table} listening")
                phone.stdin.write(b"\n")
                phone.stdin.flush()
                await asyncio.sleep(0.3)
                assert a._rtp.packets_received == read + 6  # heard by ipbx again
                # The events, the voice dropped, and the voice read after (a new count for
                # the source, which RFC 3550 A.1 takes up from its second packet).
                final = a.meter.reading()
                assert (final.packets_received, final.packets_lost) == (metered + 3 + 20 + 2, 0)
            finally:
                phone.stdin.close()
                phone.wait(5)
                a.close()

    with Namespace("kq") as namespace:
        link, peer = f"v{secrets.token_hex(4)}", f"v{secrets.token_hex(4)}"
        _ip("link", "add", link, "type", "veth", "peer", "name", peer, "netns", namespace.name)
        _ip("addr", "add", f"{ours}/24", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", namespace.name, "addr", "add", f"{theirs}/24", "dev", peer)
        _ip("-n", namespace.name, "link", "set", peer, "up")
        run(lambda: scenario(namespace.name))


def test_a_listening_phone_on_this_machine_sends_without_errors(pool: PortPool) -> None:
    """Its packets are dropped as they come back in over loopback (prerouting), after its
    sends succeeded: dropped on their way out, its sends would fail (EPERM)."""

    async def scenario() -> None:
        with kernel_relay() as kernel:
            x = Phone(0x1111)
            a = await MediaEndpoint.open(pool)
            a.set_remote(*x.address, PCMU, 101)
            listening = kernel.quieten(a)
            x.send(a.local_address, 3)
            await asyncio.sleep(0.3)
            assert listening.key is not None
            x.send(a.local_address, 5)  # raises nothing
            await asyncio.sleep(0.1)
            assert a._rtp.packets_received == 3
            listening.close()
            a.close()

    run(scenario)
