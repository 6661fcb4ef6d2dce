"""The media clock: one 20 ms timer for every decoding path of the process.

Recorders and transcoders play their jitter buffers out at the packet rate. One timer
that calls them all costs one wake-up per tick, where a task per call would cost one
per call (hundreds of transcoded calls are thousands of wake-ups a second). Ticks are
scheduled on absolute times, so late wake-ups never accumulate into drift; each
subscriber takes `now` and plays out whatever is due by then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# RFC 3551 §4.5: the default packetisation interval.
TICK = 0.020

Subscriber = Callable[[float], None]


class MediaClock:
    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = TICK) -> None:
        self._loop = loop
        self._period = period
        self._subscribers: dict[int, Subscriber] = {}
        self._next_id = 0
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber(now)` every tick until the returned function is called."""
        key = self._next_id
        self._next_id += 1
        self._subscribers[key] = subscriber
        if self._timer is None:
            self._due = self._loop.time() + self._period
            self._timer = self._loop.call_at(self._due, self._tick)
        return lambda: self._unsubscribe(key)

    def __len__(self) -> int:
        return len(self._subscribers)

    def _unsubscribe(self, key: int) -> None:
        self._subscribers.pop(key, None)
        if not self._subscribers and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        now = self._loop.time()
        for key, subscriber in list(self._subscribers.items()):
            try:
                subscriber(now)
            except Exception:
                # One broken call must not silence the others.
                log.exception("media clock subscriber failed; removed")
                self._subscribers.pop(key, None)
        if not self._subscribers:
            self._timer = None
            return
        # After a long stall (a blocked loop) skip the missed ticks rather than burst.
        self._due = max(self._due + self._period, now)
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
