"""The pool of local RTP ports media endpoints bind to.

RFC 3550 §11: RTP uses an even port and RTCP the next odd one, so the pool
hands out even ports only and reserves port + 1 with each.

Binding and closing two sockets per endpoint was half the CPU of a call setup,
so a released port may keep its open sockets ("warm"): the next endpoint takes
them instead of binding new ones. A warm port is handed out again only after a
quarantine, so that stray packets of the call that used it have died out, and
the number kept open is capped.

The pool is also where the packet counts of the endpoints it served add up
(`reception`), since every endpoint of a server takes its ports from the one pool.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ipbx.media.quality import ReceptionTotals

S = TypeVar("S")

WARM_LIMIT = 512
QUARANTINE_S = 2.0


class PortPoolExhausted(RuntimeError):
    """Every RTP port in the configured range is taken."""


class PortPool(Generic[S]):
    def __init__(
        self,
        address: str,
        first: int,
        last: int,
        warm_limit: int = WARM_LIMIT,
        quarantine: float = QUARANTINE_S,
    ) -> None:
        first += first % 2
        if not 0 < first < last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} holds no even/odd pair")
        self.address = address
        self.first = first
        self.last = last
        self._free = deque(range(first, last, 2))
        self._in_use: set[int] = set()
        self._warm: deque[tuple[float, int, S]] = deque()
        self.warm_limit = warm_limit
        self.quarantine = quarantine
        # RTP packets received and lost by the endpoints on this pool's ports.
        self.reception = ReceptionTotals()
        # Told of each bridge joined (the two endpoints): a media worker may take it
        # over (media/workers.py).
        self.offload: Callable[[Any, Any], None] | None = None

    @property
    def size(self) -> int:
        return len(self._free) + len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free) + len(self._warm)

    def acquire(self) -> int:
        if not self._free:
            raise PortPoolExhausted(
                f"no free RTP port on {self.address} in {self.first}-{self.last} "
                f"({len(self._in_use)} in use)"
            )
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        if port not in self._in_use:
            raise ValueError(f"RTP port {port} was not handed out by this pool")
        self._in_use.remove(port)
        # Released ports go to the back so a just-closed port is reused last,
        # giving stray packets of the previous call time to die out.
        self._free.append(port)

    def take_warm(self, now: float, force: bool = False) -> tuple[int, S] | None:
        """The oldest warm port and its sockets, once out of quarantine (or at once
        with `force`, when no cold port is left)."""
        if self._warm and (force or now - self._warm[0][0] >= self.quarantine):
            _, port, sockets = self._warm.popleft()
            return port, sockets
        return None

    def keep_warm(self, port: int, sockets: S, now: float) -> bool:
        """Take back `port` with its sockets still open; False if the cap is reached
        (then the caller closes them and calls `release`)."""
        if port not in self._in_use:
            raise ValueError(f"RTP port {port} was not handed out by this pool")
        if len(self._warm) >= self.warm_limit:
            return False
        self._warm.append((now, port, sockets))
        return True

    def drain_warm(self) -> list[S]:
        """Every warm port back to the cold list; returns their sockets to close."""
        drained = []
        while self._warm:
            _, port, sockets = self._warm.popleft()
            self.release(port)
            drained.append(sockets)
        return drained
