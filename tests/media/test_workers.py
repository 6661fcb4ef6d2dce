"""Media workers (media/workers.py): real worker processes carry bridges handed over by
real loopback endpoints, hand them back, and die under SIGKILL; a worker that is behind,
or whose message a recall read first, is kept."""

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import numpy as np
import pytest

from ipbx.media.bridge import connect
from ipbx.media.codecs import OPUS, PCMU
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool
from ipbx.media.rtp import RtpPacket, media_packet
from ipbx.media.wav import read_wav
from ipbx.media.workers import MediaWorkers
from tests.support.media import dominant_frequency, run, workers_for

TONE = (8000 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)).astype(np.int16)


def workers(pool: PortPool, count: int = 2) -> AbstractAsyncContextManager[MediaWorkers]:
    return workers_for([pool], count)


async def call(pool: PortPool, far_codec=PCMU) -> tuple[MediaEndpoint, ...]:
    """x (PCMU) -- a [ipbx] b -- y (far_codec), both with telephone-event; x and y are
    phones (they do not latch), a and b the server's legs, bridged by connect()."""
    x = await MediaEndpoint.open(pool, latching=False)
    a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
    y = await MediaEndpoint.open(pool, latching=False)
    x.set_remote(*a.local_address, PCMU, 101)
    a.set_remote(*x.local_address, PCMU, 101)
    b.set_remote(*y.local_address, far_codec, 101)
    y.set_remote(*b.local_address, far_codec, 101)
    connect(a, b)
    await moved(a)
    return x, a, b, y


async def readings(endpoint: MediaEndpoint) -> None:
    """Once the worker's meter readings have reached the server (asked for by refresh)."""
    for _ in range(100):
        if endpoint.meter.elsewhere is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no meter readings from the worker")


async def moved(endpoint: MediaEndpoint) -> None:
    """Once a worker has taken the endpoint's bridge over (within a second)."""
    for _ in range(100):
        if endpoint.away is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no worker took the bridge over")


def test_a_relayed_call_goes_to_a_worker_and_comes_back_with_its_counts(pool: PortPool) -> None:
    async def scenario() -> None:
        async with workers(pool) as plane:
            x, a, b, y = await call(pool)
            assert a.away is not None and a.away is b.away
            assert sum(len(w.pairs) for w in plane.workers) == 1
            heard: list[int] = []
            y.set_tap(lambda data: heard.append(RtpPacket.parse(data).sequence_number))
            await asyncio.gather(x.play(TONE[:1600]), y.play(TONE[:800]))
            await asyncio.sleep(0.1)
            # The readings come when asked (the media time-out asks at each sweep).
            assert a.meter.elsewhere is None
            plane.refresh()
            await readings(a)
            # The stream meter (RFC 3550 A.1) counts once a source passes its probation.
            away = a.meter.reading()
            assert away.packets_received >= 8
            assert b.meter.reading().packets_received >= 3
            assert len(heard) == 10  # relayed byte for byte: x's own sequence numbers
            assert heard == sorted(heard)
            a.away.come_home()
            assert a.away is None and b.away is None
            assert (a.stats.packets_received, a.stats.packets_sent) == (10, 5)
            assert (b.stats.packets_received, b.stats.packets_sent) == (5, 10)
            assert a.meter.reading() == away
            assert sum(len(w.pairs) for w in plane.workers) == 0
            for endpoint in (x, a, b, y):
                endpoint.close()

    run(scenario)


def test_a_transcoded_call_in_a_worker_carries_tone_and_keys(
    pool: PortPool, tmp_path: Path
) -> None:
    seen_by_ipbx: list[str] = []
    heard: list[str] = []

    async def scenario() -> None:
        async with workers(pool):
            x, a, b, y = await call(pool, OPUS)
            assert a.away is not None
            b.on_dtmf = seen_by_ipbx.append
            x.on_dtmf = heard.append
            y.record(tmp_path / "opus-side.wav")
            await x.play(TONE)
            silence = np.zeros(8000, dtype=np.int16)
            await asyncio.gather(y.play(silence), y.send_dtmf("5#", duration_ms=60))
            await asyncio.sleep(0.3)
            y.stop_recording()
            b.away.come_home()
            assert b.stats.packets_sent >= 45  # the worker's packets, counted back home
            for endpoint in (x, a, b, y):
                endpoint.close()

    run(scenario)
    assert dominant_frequency(read_wav(tmp_path / "opus-side.wav", 8000)) == pytest.approx(
        1000, abs=20
    )
    assert seen_by_ipbx == ["5", "#"]
    assert heard == ["5", "#"]


def test_a_leg_brought_home_mid_call_keeps_one_unbroken_stream(pool: PortPool) -> None:
    """Transcoded in the worker, then home (a tap asks for it): the far phone sees one
    SSRC, sequence numbers that go on by one and timestamps that never go back, though
    the near phone's clock runs ahead of ipbx's (a second of audio sent at once): the
    leg's clock comes home with the timing the worker's transcoded audio had. The call
    still carries audio."""

    async def scenario() -> None:
        async with workers(pool):
            x, a, b, y = await call(pool, OPUS)
            packets: list[RtpPacket | None] = []
            y.set_tap(lambda data: packets.append(media_packet(data)))
            for k in range(50):
                x._send(PCMU.payload_type, bytes(160), k == 0, 160 * k)
            await asyncio.sleep(0.2)
            a.set_tap(lambda data: None)
            assert a.away is None and b.away is None
            await x.play(TONE[:4000])
            await asyncio.sleep(0.3)
            for endpoint in (x, a, b, y):
                endpoint.close()
            heard = [p for p in packets if p is not None]
            assert len({p.ssrc for p in heard}) == 1
            assert len(heard) >= 70
            for earlier, later in itertools.pairwise(heard):
                assert later.sequence_number - earlier.sequence_number == 1
                assert (later.timestamp - earlier.timestamp) % 2**32 < 2**31

    run(scenario)


def test_a_killed_worker_is_replaced_and_its_calls_are_told(pool: PortPool) -> None:
    async def scenario() -> None:
        async with workers(pool, count=1) as plane:
            lost: list[MediaEndpoint] = []
            plane.on_lost = lost.extend
            x, a, b, y = await call(pool)
            (worker,) = plane.workers
            os.kill(worker.pid, signal.SIGKILL)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2
            while worker in plane.workers or not any(w.ready.done() for w in plane.workers):
                assert loop.time() < deadline, "no worker within 2 s"
                await asyncio.sleep(0.05)
            assert set(lost) == {a, b}
            assert a.away is None and b.away is None
            for endpoint in (x, a, b, y):
                endpoint.close()
            # The new worker carries the next call.
            x, a, b, y = await call(pool)
            assert a.away is not None
            received: list[bytes] = []
            y.set_tap(received.append)
            await x.play(TONE[:800])
            await asyncio.sleep(0.2)
            assert len(received) == 5
            for endpoint in (x, a, b, y):
                endpoint.close()

    run(scenario)


def test_a_transcoded_bridge_moves_at_once_and_a_relayed_one_after_a_second(
    pool: PortPool,
) -> None:
    """A relayed call that ends within move_after never pays the move; a transcoded one
    moves before its media flows (a transcoder moved mid-stream would shift the rest of
    each stream by its new playout delay)."""

    async def scenario() -> None:
        async with workers(pool) as plane:
            plane.move_after = 30.0
            relayed = [await MediaEndpoint.open(pool) for _ in range(2)]
            transcoded = [await MediaEndpoint.open(pool) for _ in range(2)]
            for endpoint, codec in zip(relayed + transcoded, (PCMU, PCMU, PCMU, OPUS), strict=True):
                endpoint.set_remote("127.0.0.1", 9, codec, 101)
            connect(*relayed)
            connect(*transcoded)
            await moved(transcoded[0])
            assert relayed[0].away is None and relayed[1].away is None
            for endpoint in relayed + transcoded:
                endpoint.close()

    run(scenario)


def test_a_wake_up_for_a_message_a_recall_read_first_keeps_the_worker(pool: PortPool) -> None:
    """In one round of the event loop a hang-up comes first and the worker's meter
    readings after it: the hang-up's recall reads them on its way to its reply, so the
    loop's wake-up for them finds nothing. It goes on, and the worker carries on.
    (It waited two seconds, with the whole server, and then gave the worker up, and
    with it every call it carried: a burst of hang-ups did that in the scale bench.)"""

    async def scenario() -> None:
        async with workers(pool, count=1) as plane:
            x, a, b, y = await call(pool)
            (worker,) = plane.workers
            loop = asyncio.get_running_loop()
            bye, hang_up = socket.socketpair()

            def hung_up() -> None:
                hang_up.recv(1)
                a.close()
                b.close()

            loop.add_reader(hang_up.fileno(), hung_up)
            await asyncio.sleep(0.01)  # the loop watches it from now on
            bye.send(b"!")
            plane.refresh()
            # The loop held while the worker's readings arrive, after the hang-up.
            time.sleep(0.3)
            await asyncio.sleep(0.1)
            loop.remove_reader(hang_up.fileno())
            for sock in (bye, hang_up):
                sock.close()
            assert plane.workers == [worker] and not worker.dead
            x.close()
            y.close()
            x, a, b, y = await call(pool)
            assert a.away is not None and a.away.worker is worker
            for endpoint in (x, a, b, y):
                endpoint.close()

    run(scenario)


def test_bridges_handed_to_a_worker_that_is_behind_wait_in_the_server(pool: PortPool) -> None:
    """The worker stops reading (SIGSTOP, as one far behind) while calls keep coming: the
    bridges handed to it wait in the server, whose loop goes on, and once the worker reads
    again it carries them all. (The server used to wait two seconds for room on the
    control socket, and then gave the worker up.)"""
    first = random.randrange(30000, 39000, 2)
    many = PortPool("127.0.0.1", first, first + 799)

    async def scenario() -> None:
        async with workers_for([many], 1) as plane:
            (worker,) = plane.workers
            os.kill(worker.pid, signal.SIGSTOP)
            try:
                calls = [await call(many) for _ in range(80)]
            finally:
                with contextlib.suppress(ProcessLookupError):  # given up, and killed
                    os.kill(worker.pid, signal.SIGCONT)
            assert plane.workers == [worker] and not worker.dead
            assert len(worker.pairs) == 80
            x, *_, y = calls[-1]
            received: list[bytes] = []
            y.set_tap(received.append)
            await x.play(TONE[:800])
            await asyncio.sleep(0.3)
            assert len(received) == 5
            assert not worker.dead
            for endpoint in itertools.chain.from_iterable(calls):
                endpoint.close()

    run(scenario, timeout=30)
