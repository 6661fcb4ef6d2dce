"""The media clock hands its subscribers the tick's scheduled time: a transcoder pulling
its jitter buffer on it sends one frame a tick however late each tick wakes, even for a
stream whose packets arrive in phase with the ticks."""

from __future__ import annotations

import asyncio
import random
import select
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import cast

import pytest

from ipbx.media.clock import TICK, MediaClock
from ipbx.media.jitter import JitterBuffer
from ipbx.media.playout import PLAYOUT_JITTER
from ipbx.media.rtp import RtpPacket
from tests.support.sipclient import udp_socket


@dataclass
class _Timer:
    when: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class LateLoop:
    """Runs each timer up to 2 ms after it was due (or `late`: between two lags), at
    random, as a busy event loop does."""

    def __init__(self, seed: int, late: tuple[float, float] = (0.0, 0.002)) -> None:
        self.now = 0.0
        self.timers: list[_Timer] = []
        self.random = random.Random(seed)
        self.late = late

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback)
        self.timers.append(timer)
        return timer

    def run_next(self) -> None:
        timer = self.timers.pop(0)
        self.now = max(self.now, timer.when + self.random.uniform(*self.late))
        if not timer.cancelled:
            timer.callback()


@pytest.mark.parametrize("phase_ms", [0.0, 0.5, 1.0, 1.5, 10.0, 19.5])
def test_a_transcoder_sends_one_frame_a_tick_whatever_the_arrival_phase(phase_ms: float) -> None:
    loop = LateLoop(seed=int(phase_ms * 10))
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    buffer = JitterBuffer(8000, PLAYOUT_JITTER)
    network = random.Random(7)
    # Packets every 20 ms, `phase_ms` after the ticks' grid, a little network jitter.
    arrivals = [(k * TICK + phase_ms / 1000 + abs(network.gauss(0, 0.0005)), k) for k in range(600)]
    arrivals.sort()
    frames_per_tick: list[int] = []

    def transcoder(tick: float) -> None:
        while arrivals and arrivals[0][0] <= loop.time():
            arrived, k = arrivals.pop(0)
            buffer.push(RtpPacket(0, k, k * 160, 1, b"\xff" * 160), arrived)
        frames = 0
        while buffer.pop(tick + TICK) is not None:  # as bridge._Transcoding.tick pulls
            frames += 1
        frames_per_tick.append(frames)

    clock.subscribe(transcoder)
    while len(frames_per_tick) < 550:
        loop.run_next()
    steady = frames_per_tick[50:]
    assert steady.count(1) == len(steady), f"{len(steady) - steady.count(1)} ticks off one frame"


def test_after_a_stall_the_ticks_skip_but_stay_on_their_grid() -> None:
    """A loop blocked for over a period (a long garbage collection) skips the missed
    ticks; every subscriber's ticks stay a whole number of periods apart, so nothing
    played on the clock shifts for good."""
    loop = LateLoop(seed=3)
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    ticks: dict[int, list[float]] = {index: [] for index in range(4)}
    for index in range(4):
        clock.subscribe(ticks[index].append)
    while len(ticks[0]) < 10:
        loop.run_next()
    loop.now += 0.047  # blocked: more than two periods
    while len(ticks[0]) < 20:
        loop.run_next()
    for subscriber in ticks.values():
        periods = [(tick - subscriber[0]) / TICK for tick in subscriber]
        assert all(abs(p - round(p)) < 1e-6 for p in periods), periods
        gaps = [b - a for a, b in pairwise(subscriber)]
        assert max(gaps) > TICK  # the missed ticks were skipped, not burst


def test_a_loop_a_period_behind_still_runs_every_slot_in_turn() -> None:
    """A loop that stays a little over a period behind (an overloaded core) skips whole
    periods, never slots: skipping ticks one at a time ran slots 0 and 2 alone, and the
    calls in the other two sent nothing until the loop caught up."""
    loop = LateLoop(seed=11, late=(0.025, 0.029))
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    ticks: dict[int, list[float]] = {index: [] for index in range(4)}
    for index in range(4):
        clock.subscribe(ticks[index].append)
    for _ in range(200):
        loop.run_next()
    counts = [len(subscriber) for subscriber in ticks.values()]
    assert max(counts) - min(counts) <= 1, counts
    for subscriber in ticks.values():
        periods = [(tick - subscriber[0]) / TICK for tick in subscriber]
        assert all(abs(p - round(p)) < 1e-6 for p in periods), periods


class _Socket:
    """A real UDP socket read on the clock, noting the tick of each datagram it reads."""

    def __init__(self, loop: LateLoop) -> None:
        self.sock = udp_socket()
        self.sock.setblocking(False)
        self.loop = loop
        self.read_at: list[float] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_one(self, offset: float) -> bool:
        try:
            self.sock.recv(2048)
        except BlockingIOError:
            return False
        self.read_at.append(self.loop.now)
        return True


def test_sockets_are_read_after_every_slot_not_once_a_period() -> None:
    """Read once a period, after the first slot, the reading of every socket weighed on
    that one slot (6.5 ms of work where the others took 2.4, at 140 transcoded calls)."""
    loop = LateLoop(seed=13)
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    reader = _Socket(loop)
    clock.add_reader(reader)
    phone = udp_socket()
    try:
        for tick in range(8):
            phone.sendto(b"rtp", reader.sock.getsockname())
            assert select.select([reader.sock], [], [], 1)[0]  # arrived
            loop.run_next()
            assert len(reader.read_at) == tick + 1  # read at the tick it arrived before
        clock.remove_reader(reader)
    finally:
        phone.close()
        reader.sock.close()


def test_each_subscriber_goes_to_the_least_busy_slot() -> None:
    """Eight subscribers fill the four slots two each; one that leaves frees its place
    for the next to come."""
    loop = LateLoop(seed=5)
    clock = MediaClock(cast(asyncio.AbstractEventLoop, loop))
    slots: dict[int, int] = {}

    def subscriber(index: int) -> Callable[[float], None]:
        return lambda tick: slots.setdefault(index, round(tick / TICK * 4) % 4)

    stops = [clock.subscribe(subscriber(index)) for index in range(8)]
    while len(slots) < 8:
        loop.run_next()
    assert sorted(slots.values()) == [0, 0, 1, 1, 2, 2, 3, 3]
    leaving = next(index for index, slot in slots.items() if slot == 2)
    stops[leaving]()
    stops.append(clock.subscribe(subscriber(8)))
    while 8 not in slots:
        loop.run_next()
    assert slots[8] == 2
    for stop in stops:
        stop()
    assert len(clock) == 0
