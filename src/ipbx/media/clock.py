"""The media clock: one 20 ms timer for every decoding path of the process.

Recorders, conferences, music on hold and prompts play their audio out at the packet
rate. One timer that calls them all costs one wake-up per tick, where a task per call
would cost one per call (hundreds of recorded calls are thousands of wake-ups a
second). Ticks are scheduled on absolute times, so late wake-ups never accumulate into
drift.

Each subscriber is given the time the tick was scheduled for, not the moment it ran,
and plays out whatever is due by then. What goes out at a tick then depends on the
schedule alone: were it given the moment it ran, a frame due near a tick's boundary
would go out early at a tick that woke a millisecond late and on time at the next,
two frames at one tick and none at the other, 20 ms of jitter added to a stream
whose packets arrive in phase with the ticks.

The 20 ms are cut into PHASES slots, and each subscriber is given the least busy slot
when it subscribes: a subscriber's packets go out after the work of those before it in
its slot, so fifty conference rooms in one slot would send the last room's mix a few
milliseconds after the first's, later or sooner as that work varies; spread over four
slots the wait, and its variation, is a quarter. The sockets read on the clock are read
after every slot's work, so the reading is spread over the slots as the work is: read
once a period, after the first slot, 280 sockets (140 transcoded calls, when transcoders
still played out on this clock) made that slot's work 6.5 ms where the others took 2.4,
longer than its 5 ms, and every tick of the next slot went out late by the difference,
by more as that reading varied.
"""

from __future__ import annotations

import asyncio
import logging
import select
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

# RFC 3551 §4.5: the default packetisation interval.
TICK = 0.020
PHASES = 4

Subscriber = Callable[[float], None]


class Reader(Protocol):
    """A socket read on the clock (channel.py): read at each tick, after the work, a
    datagram at a time, given the loop's clock less the system's (to place kernel
    timestamps)."""

    def fileno(self) -> int: ...

    def read_one(self, offset: float) -> bool: ...


# Datagrams read from one socket at a tick at most (two or three at 20 ms packets after
# a stall; a flood waits for later ticks rather than starving the others).
READ_ROUNDS = 8


def system_offset() -> float:
    """The loop's clock less the system's, which stamps datagrams. Both read now: the
    loop's clock is the monotonic one (uvloop's in whole milliseconds, cached at each
    turn of the loop, so not read from it)."""
    return time.monotonic() - time.time()


class MediaClock:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, period: float = TICK, phases: int = PHASES
    ) -> None:
        self._loop = loop
        self._period = period
        self._step = period / phases
        # Each slot's subscribers; the slot of each subscriber.
        self._slots: list[dict[int, Subscriber]] = [{} for _ in range(phases)]
        self._slot_of: dict[int, int] = {}
        self._slot = 0
        # The readers by descriptor, and one epoll of them all: which sockets have
        # something to read is one system call a tick, not one empty read per socket.
        self._readers: dict[int, Reader] = {}
        self._poll: select.epoll | None = None
        self._next_id = 0
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber(tick)` every period, with the tick's scheduled time, until the
        returned function is called. It goes to the slot with the fewest subscribers."""
        key = self._next_id
        self._next_id += 1
        slot = min(range(len(self._slots)), key=lambda i: len(self._slots[i]))
        self._slots[slot][key] = subscriber
        self._slot_of[key] = slot
        self._start()
        return lambda: self._unsubscribe(key)

    def add_reader(self, reader: Reader) -> None:
        """Drain `reader` at every tick, after the subscribers, until removed."""
        if self._poll is None:
            self._poll = select.epoll()
        fd = reader.fileno()
        self._readers[fd] = reader
        self._poll.register(fd, select.EPOLLIN)
        self._start()

    def remove_reader(self, reader: Reader) -> None:
        fd = reader.fileno()
        if self._readers.get(fd) is reader:
            del self._readers[fd]
            if self._poll is not None:
                self._poll.unregister(fd)
        self._stop_if_idle()

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def readers(self) -> int:
        return len(self._readers)

    def _start(self) -> None:
        if self._timer is None:
            self._due = self._loop.time() + self._step
            self._timer = self._loop.call_at(self._due, self._tick)

    def _read(self, poll: select.epoll) -> None:
        """A datagram from each socket with one, round after round until none has more."""
        offset = system_offset()
        readers = self._readers
        for _ in range(READ_ROUNDS):
            ready = poll.poll(0)
            if not ready:
                return
            for fd, _ in ready:
                reader = readers.get(fd)
                if reader is None:
                    continue
                try:
                    reader.read_one(offset)
                except Exception:
                    log.exception("media clock reader failed; removed")
                    self.remove_reader(reader)

    def _unsubscribe(self, key: int) -> None:
        placed = self._slot_of.pop(key, None)
        if placed is not None:
            del self._slots[placed][key]
        self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        if not self._slot_of and not self._readers and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        due, slot = self._due, self._slot
        for key, subscriber in list(self._slots[slot].items()):
            try:
                subscriber(due)
            except Exception:
                # One broken call must not silence the others.
                log.exception("media clock subscriber failed; removed")
                self._unsubscribe(key)
        if self._poll is not None:
            # The sockets are read after the work, for the next ticks: what goes out
            # then waits on nothing but the work itself, however many packets came in.
            self._read(self._poll)
        if not self._slot_of and not self._readers:
            self._timer = None
            return
        # After a long stall (a blocked loop, a whole period late) skip the missed periods
        # rather than burst, but keep to the grid: a schedule started again at the stall's
        # end would shift every stream played on the clock for good, by what the stall
        # overran a step (a 26 ms collection of the garbage collector was seen under 80
        # transcoded calls). Whole periods only, so every slot still runs once a period in
        # turn: skipping ticks one by one skipped slots, and a loop that stayed a little
        # over a period behind (this VM's slow spells under 140 transcoded calls) ran two
        # slots of the four while the other half of the calls sent nothing for 300 ms,
        # then all of it at once. A tick a little late keeps the schedule.
        now = self._loop.time()
        if now - due >= self._period:
            due += (now - due) // self._period * self._period
        self._slot = (slot + 1) % len(self._slots)
        self._due = due + self._step
        self._timer = self._loop.call_at(self._due, self._tick)


_clocks: dict[asyncio.AbstractEventLoop, MediaClock] = {}


def media_clock() -> MediaClock:
    """The running loop's media clock."""
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        for stale in [other for other in _clocks if other.is_closed()]:
            del _clocks[stale]
        clock = _clocks[loop] = MediaClock(loop)
    return clock
