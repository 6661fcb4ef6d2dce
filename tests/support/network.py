"""An in-memory IP network for SIP: endpoints bound at made-up addresses (10.0.0.x:5060)
exchange datagrams through the event loop, with no socket. Each datagram is delivered
on its own turn of the loop (as from a socket), in the order it was sent, unless a loss
rule drops it. Every datagram sent is kept, so a failing test can print the ladder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ipbx.sip.transaction import Address
from ipbx.sip.transport.endpoint import SipEndpoint


@dataclass(frozen=True)
class Datagram:
    source: Address
    dest: Address
    data: bytes
    sent_at: float

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode(errors="replace")

    @property
    def is_response(self) -> bool:
        return self.data.startswith(b"SIP/2.0 ")

    @property
    def status(self) -> int | None:
        return int(self.first_line.split()[1]) if self.is_response else None


class Network:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._endpoints: dict[tuple[str, int], SipEndpoint] = {}
        self._losses: list[Callable[[Datagram], bool]] = []
        self.sent: list[Datagram] = []

    def attach(self, endpoint: SipEndpoint, address: Address) -> None:
        """Bind `endpoint`'s UDP to `address` on this network."""
        endpoint.attach(Wire(self, address), address)
        self._endpoints[(address.host, address.port)] = endpoint

    def detach(self, address: Address) -> None:
        self._endpoints.pop((address.host, address.port), None)

    def lose(self, rule: Callable[[Datagram], bool]) -> None:
        """From now on, drop every datagram `rule` says True of."""
        self._losses.append(rule)

    def send(self, data: bytes, source: Address, dest: Address) -> None:
        datagram = Datagram(source, dest, data, self._loop.time())
        self.sent.append(datagram)
        if any(rule(datagram) for rule in self._losses):
            return
        endpoint = self._endpoints.get((dest.host, dest.port))
        if endpoint is not None:
            self._loop.call_soon(endpoint.datagram_received, data, source, dest)

    def ladder(self) -> str:
        """Every datagram sent, one line each: when, from, to, its first line."""
        if not self.sent:
            return "(nothing was sent)"
        start = self.sent[0].sent_at
        return "\n".join(
            f"{d.sent_at - start:8.3f}  {d.source.host}:{d.source.port} -> "
            f"{d.dest.host}:{d.dest.port}  {d.first_line}"
            for d in self.sent
        )


class Wire(asyncio.DatagramTransport):
    """What stands for a UDP socket bound at `address` on the network."""

    def __init__(self, network: Network, address: Address) -> None:
        super().__init__()
        self._network = network
        self._address = address
        self._closed = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not self._closed:
            host, port = addr
            self._network.send(bytes(data), self._address, Address("UDP", host, port))

    def close(self) -> None:
        self._closed = True
        self._network.detach(self._address)

    def is_closing(self) -> bool:
        return self._closed
