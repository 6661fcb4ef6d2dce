"""Virtual time for asyncio, in the manner of aioquic's tests passing `now` by hand: an
event loop whose clock stands still while there is work to do and jumps to the next
timer when there is none. Every SIP timer (RFC 3261 §17), 2xx retransmission, ring
time-out and trunk failover of the PBX runs on `loop.time()`, so under this loop a
32 s Timer B or a 20 s no-answer forward costs microseconds, and the order of events
is the same on every run.

Real I/O still happens (the media sockets, a thread reading a WAV file): the loop polls
it without waiting, and while a thread of the default executor is busy the clock
runs at real speed, so nothing is overtaken by a time-out that jumped ahead of it.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")

# Where the clock starts: far from 0, as a monotonic clock is, so that code subtracting
# a default of 0 from it is not silently right.
EPOCH = 1_000_000.0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = EPOCH
        self._threads = 0
        super().__init__(_SkippingSelector(selectors.DefaultSelector(), self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    @property
    def waiting_for_threads(self) -> bool:
        return self._threads > 0

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self._threads -= 1


class _SkippingSelector(selectors.BaseSelector):
    """The loop's selector: where the loop would sleep until its next timer, it polls
    for I/O and, if none is ready, moves the clock to that timer instead."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return self._real.select(timeout)
        if self._loop.waiting_for_threads:
            started = time.monotonic()
            events = self._real.select(timeout)
            self._loop.advance(min(time.monotonic() - started, timeout))
            return events
        events = self._real.select(0)
        if not events:
            self._loop.advance(timeout)
        return events

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()


def run_in_virtual_time(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run() on a VirtualTimeLoop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
