"""The pool of local RTP ports media endpoints bind to.

RFC 3550 §11: RTP uses an even port and RTCP the next odd one, so the pool
hands out even ports only and reserves port + 1 with each.
"""

from __future__ import annotations

from collections import deque


class PortPoolExhausted(RuntimeError):
    """Every RTP port in the configured range is taken."""


class PortPool:
    def __init__(self, address: str, first: int, last: int) -> None:
        first += first % 2
        if not 0 < first < last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} holds no even/odd pair")
        self.address = address
        self.first = first
        self.last = last
        self._free = deque(range(first, last, 2))
        self._in_use: set[int] = set()

    @property
    def size(self) -> int:
        return len(self._free) + len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)

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
