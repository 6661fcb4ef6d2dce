"""A leg read on the media clock (channel.py), over real sockets on loopback: its packets
wait in the socket and are handed on together at a tick, each stamped with the time the
kernel received it; relayed again, the leg forwards each packet as it comes; its socket
serves the next call from the warm pool."""

from __future__ import annotations

import asyncio
import socket
import time

from ipbx.media.bridge import relay
from ipbx.media.channel import arrival_clock
from ipbx.media.clock import media_clock
from ipbx.media.codecs import PCMU
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool
from tests.support.media import run

GAP = 0.005


def packet(seq: int) -> bytes:
    return (
        bytes([0x80, 0, 0, seq]) + (seq * 160).to_bytes(4, "big") + b"\x01\x02\x03\x04" + bytes(160)
    )


def test_a_leg_read_on_the_clock_keeps_each_packets_arrival_time_and_relays_again(
    pool: PortPool,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        clock = arrival_clock(loop)
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        phone.setblocking(False)
        ours = await MediaEndpoint.open(pool)
        ours.set_remote(*phone.getsockname(), PCMU, 101)
        ticks = [0]
        stop_counting = media_clock().subscribe(lambda now: ticks.__setitem__(0, ticks[0] + 1))
        handled: list[tuple[float, int]] = []  # (arrival, tick) of each packet
        ours.set_tap(lambda data: handled.append((clock(), ticks[0])))
        ours.read_on_clock()
        assert media_clock().readers == 1
        # The loop is busy while the phone sends: the packets wait in the socket.
        for seq in range(5):
            phone.sendto(packet(seq), ours.local_address)
            time.sleep(GAP)
        async with asyncio.timeout(2):
            while len(handled) < 5:
                await asyncio.sleep(0.005)
        arrivals = [arrival for arrival, _ in handled]
        # Stamped as they came (the kernel may stamp two together when it is busy), not
        # as they were read, together.
        assert max(arrivals) - min(arrivals) >= 2 * GAP
        assert len({tick for _, tick in handled}) == 1  # all at one tick
        stop_counting()
        assert arrivals[-1] <= loop.time() + 0.002  # uvloop's clock counts milliseconds

        # Relayed to another leg: read as packets come, forwarded at once.
        other, far = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        other.set_remote(*far.local_address, PCMU)
        far.set_remote(*other.local_address, PCMU)
        relay(ours, other)
        assert media_clock().readers == 0
        phone.sendto(packet(5), ours.local_address)
        async with asyncio.timeout(2):
            while far.stats.packets_received < 1:
                await asyncio.sleep(0.005)
        for endpoint in (ours, other, far):
            endpoint.close()

        # The socket, warm, serves the next call; the clock has nothing left to read.
        pool.quarantine = 0
        again = await MediaEndpoint.open(pool)
        assert again.local_address == ours.local_address
        again.set_remote(*phone.getsockname(), PCMU)
        again.echo()
        phone.sendto(packet(6), again.local_address)
        async with asyncio.timeout(2):
            while True:
                try:
                    assert phone.recv(2048) == packet(6)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.005)
        again.close()
        phone.close()
        assert media_clock().readers == 0

    run(scenario)
