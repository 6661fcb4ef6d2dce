"""The asyncio side of a sans-I/O timer: one loop timer kept at what an object's
`next_deadline()` says (sip/invite.py's usages), ringing with the loop's time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Alarm:
    """Rings `ring(now)` at the deadline last `set`; each `set` replaces the one before."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ring: Callable[[float], None]) -> None:
        self._loop = loop
        self._ring = ring
        self._handle: asyncio.TimerHandle | None = None

    def set(self, deadline: float | None) -> None:
        """Ring at `deadline`, in the loop's time; None: not at all."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if deadline is not None:
            self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        self.set(None)

    def _fire(self) -> None:
        self._handle = None
        self._ring(self._loop.time())
