"""Free ports on loopback for the servers and peers under test: the kernel picks them,
none is assumed (5060 may be taken)."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Literal

LOOPBACK = "127.0.0.1"

PortKind = Literal["udp", "tcp", "both"]


def bindable(port: int, kind: PortKind) -> bool:
    """Whether `port` binds on 127.0.0.1 now, for UDP, TCP or both."""
    kinds: list[int] = []
    if kind in ("udp", "both"):
        kinds.append(socket.SOCK_DGRAM)
    if kind in ("tcp", "both"):
        kinds.append(socket.SOCK_STREAM)
    for sock_type in kinds:
        with socket.socket(socket.AF_INET, sock_type) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port(kind: PortKind = "both") -> int:
    """A port that binds on 127.0.0.1 now, for UDP, TCP or both (the default).

    The kernel picks a candidate (bind to port 0) and the other protocol is checked on
    the same number, so a SIP listener can take udp:// and tcp:// on one port.
    """
    first = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    for _ in range(200):
        with socket.socket(socket.AF_INET, first) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if bindable(port, kind):
            return port
    raise OSError(f"no free {kind} port on {LOOPBACK}")


def free_udp_range(count: int) -> tuple[int, int]:
    """An even-aligned run of `count` UDP ports below the Linux ephemeral range.

    RTP ports come in pairs (RFC 3550 11: RTP even, RTCP odd), so the range starts even.
    Staying under 32768 keeps them clear of ports the kernel hands to other sockets. Each
    of the suite's workers (pytest-xdist) takes its ranges from a share of its own: a
    server binds its RTP ports only as calls come, so a range another worker's server
    holds may look free.
    """
    low, high = _worker_share()
    for _ in range(200):
        start = low + 2 * secrets.randbelow((high - low - count) // 2)
        if all(bindable(port, "udp") for port in range(start, start + count)):
            return start, start + count - 1
    raise OSError(f"no free range of {count} UDP ports on {LOOPBACK}")


def _worker_share(low: int = 10000, high: int = 32768) -> tuple[int, int]:
    """The ports from `low` to `high` (excluded) this pytest-xdist worker picks from: all
    of them outside a run on workers."""
    worker, workers = (
        os.environ.get("PYTEST_XDIST_WORKER"),
        os.environ.get("PYTEST_XDIST_WORKER_COUNT"),
    )
    if worker is None or workers is None:
        return low, high
    size = (high - low) // int(workers)
    first = low + size * int(worker.removeprefix("gw"))
    return first, first + size
