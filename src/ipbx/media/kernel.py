"""Relayed RTP forwarded by the Linux kernel (`media.relay: kernel`).

A relayed call costs the server two system calls and a few Python calls a packet, about
a hundred packets a second. Once a relay bridge between two plain-RTP legs with the same
codec has stood for a second (as media workers wait, media/workers.py), ipbx asks the
kernel to forward the legs' packets itself: each packet from a leg's latched phone to
the leg's port has its destination rewritten to the other phone and its source port to
the other leg's (prerouting, or output for a phone on this machine), its source address
to ours (postrouting), and never reaches ipbx. This is what rtpengine's kernel module
and the xt_RTPPROXY target do; here it is nftables (no module to build): one table per
ipbx process (`ipbx_PID`) whose chains are fixed, and one element per leg in its sets
and maps, added and deleted through libnftables (media/nftables.py). Packets the
kernel forwards are not tracked (notrack): no conntrack entry per stream.

What stays in ipbx: everything else. The bridge stays joined in ipbx, so a packet the
kernel does not take (RTCP not latched yet, a packet queued before the move) is relayed
as before; a packet from a new source (a phone that moved, RFC 4961 latching) brings
the pair home. Anything done to either leg (hold, transfer, recording, re-INVITE,
hang-up) brings it home first (MediaEndpoint.away), with the packets the kernel
counted added to the leg's meter. While the kernel forwards, its counters are read
only when they are needed (`refresh`: each sweep of the media time-out, every 5 s by
default, and each scrape of /metrics): a reading takes the server's loop time that
grows with the calls (24 ms for 500 calls, measured). It measures no loss or jitter.

The same table drops, for a leg that only listens (a caller waiting in a queue, whose
audio nobody hears and whose keys are not needed or come as RFC 4733 events), the voice
its phone sends, so that ipbx reads only its events (`KernelRelay.quieten`): half the
system calls a waiting caller costs.

Needs CAP_NET_ADMIN (root) and libnftables; phones on other machines need IP forwarding
(net.ipv4.ip_forward = 1), without which only phones on this machine's loopback are
forwarded in the kernel. IPv4 only: IPv6 legs stay in ipbx. A host firewall that drops
untracked packets in its forward chain drops these too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

from ipbx.media.bridge import relay
from ipbx.media.channel import Address, Channel, Sink
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.nftables import Nftables, NftablesError
from ipbx.media.quality import MeterReading
from ipbx.media.workers import MOVE_AFTER, movable_pair

log = logging.getLogger(__name__)

# A leg's key in the kernel's sets: its phone's address and port, and our port.
Key = tuple[str, int, int]

TABLE_PREFIX = "ipbx_"
# Looks, move_after apart, for both phones to have sent a packet before giving up.
LATCH_TRIES = 10
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")

# An element of the legs set as nft prints it: phone address . phone port . our port,
# and its counter.
_COUNTED = re.compile(r"([0-9.]+) \. (\d+) \. (\d+) counter packets (\d+)")
_TABLE_NAME = re.compile(rf"^table ip ({TABLE_PREFIX}(\d+))", re.MULTILINE)
# A packet from a leg's phone to the leg's port (the key: phone address . phone port .
# our port) goes to the other phone's address, from the other leg's port, and then (the
# key: that port, unique to the leg) to the other phone's port; all before routing. The
# source address is ours only after routing (postrouting): a packet coming in with one
# of our own addresses as its source would be dropped as a martian.
_STEER = (
    "ip saddr . udp sport . udp dport @legs notrack"
    " ip daddr set ip saddr . udp sport . udp dport map @to_addr"
    " udp sport set ip saddr . udp sport . udp dport map @via_port"
    " udp dport set udp sport map @to_port"
)
# A listening leg's packets with more than 16 bytes of RTP payload (its voice; not its
# RFC 4733 events, 4 bytes each, nor comfort noise) are dropped as they come in
# (prerouting: a local program's packets come in over loopback too, once its send has
# succeeded; dropped on their way out, its sends would fail with EPERM).
_QUIET = "udp length > 36 ip saddr . udp sport . udp dport @listening drop"
_TABLE = """
table ip {table} {{
  set legs {{ type ipv4_addr . inet_service . inet_service; counter; }}
  set listening {{ type ipv4_addr . inet_service . inet_service; counter; }}
  map to_addr {{ type ipv4_addr . inet_service . inet_service : ipv4_addr; }}
  map via_port {{ type ipv4_addr . inet_service . inet_service : inet_service; }}
  map to_port {{ type inet_service : inet_service; }}
  map via_addr {{ type inet_service . ipv4_addr . inet_service : ipv4_addr; }}
  chain prerouting {{
    type filter hook prerouting priority raw; policy accept;
    {quiet}
    {steer}
  }}
  chain output {{
    type route hook output priority raw; policy accept;
    {steer}
  }}
  chain postrouting {{
    type filter hook postrouting priority srcnat; policy accept;
    ip saddr set udp sport . ip daddr . udp dport map @via_addr
  }}
}}
"""


class KernelRelay:
    """The kernel forwarding of one server: `start()`, then `offload` is the port pool's
    hook (bridge.connect); `close()` at shutdown. `fallback` takes the bridges the kernel
    cannot (transcoded ones, IPv6): the media workers' `move`, when there are any."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.table = f"{TABLE_PREFIX}{os.getpid()}"
        self.fallback: Callable[[MediaEndpoint, MediaEndpoint], None] | None = None
        self.move_after = MOVE_AFTER
        self.pairs: set[KernelPair] = set()
        self.listening: set[Listening] = set()
        self.forwarding = False
        self._nft: Nftables | None = None

    def start(self) -> str | None:
        """Make this server's table; why the kernel cannot forward, or None."""
        try:
            nft = Nftables()
            _remove_stale_tables(nft)
            # Made anew: the table of an earlier process with this PID goes first.
            table = _TABLE.format(table=self.table, steer=_STEER, quiet=_QUIET)
            nft.run(f"add table ip {self.table}\ndelete table ip {self.table}\n{table}")
        except NftablesError as exc:
            return str(exc).splitlines()[0]
        self._nft = nft
        with contextlib.suppress(OSError):
            self.forwarding = IP_FORWARD.read_text().strip() == "1"
        return None

    def offload(self, a: MediaEndpoint, b: MediaEndpoint) -> None:
        loop = asyncio.get_running_loop()
        if a._bridged_by is relay:
            loop.call_later(self.move_after, self._move, a, b)
        elif self.fallback is not None:
            # The kernel forwards no transcoded bridge: it goes on (at once, see
            # MediaWorkers.offload) to the media workers.
            loop.call_soon(self.fallback, a, b)

    def _move(self, a: MediaEndpoint, b: MediaEndpoint, tries: int = LATCH_TRIES) -> None:
        movable = self._nft is not None and movable_pair(a, b) and a._bridged_by is relay
        if movable and not (a._rtp.latched and b._rtp.latched) and tries > 1:
            # A phone has sent nothing yet: where it sends from is not known.
            loop = asyncio.get_running_loop()
            loop.call_later(self.move_after, self._move, a, b, tries - 1)
        elif not (movable and self._take(a, b)) and self.fallback is not None:
            self.fallback(a, b)

    def _take(self, a: MediaEndpoint, b: MediaEndpoint) -> bool:
        """Forward the pair in the kernel: its RTP both ways (and RTCP where it can), or
        nothing (RTCP alone is not worth it)."""
        assert self._nft is not None
        pairs = ((a._rtp, b._rtp), (a._rtcp, b._rtcp))
        legs = [(s, d) for s, d in pairs if self._can_forward(s, d)]
        if not legs or legs[0][0] is not a._rtp:
            return False
        pair = KernelPair(self, a, b, legs)
        try:
            self._nft.run(pair.elements("add"))
        except (NftablesError, OSError) as exc:  # OSError: no route to a phone
            log.error("kernel relay: %s", exc)
            return False
        self.pairs.add(pair)
        pair.away()
        return True

    def _can_forward(self, source: Channel, target: Channel) -> bool:
        if not (source.latched and target.latched and source.peer and target.peer):
            return False
        peers = [_ipv4(source.peer), _ipv4(target.peer)]
        if None in peers:
            return False
        return self.forwarding or all(p is not None and p.is_loopback for p in peers)

    def counts(self, keys: str | None = None, kind: str = "legs") -> dict[Key, int]:
        """Packets forwarded (`kind` legs) or dropped (listening) for each leg's key
        (phone address, phone port, our port): every leg's, or those of `keys`
        (`A . P . O, ...`)."""
        if self._nft is None:
            return {}
        if keys is None:
            printed = self._nft.run(f"list set ip {self.table} {kind}")
        else:
            printed = self._nft.run(f"get element ip {self.table} {kind} {{ {keys} }}")
        return {
            (address, int(port), int(ours)): int(packets)
            for address, port, ours, packets in _COUNTED.findall(printed)
        }

    def remove(self, pair: KernelPair) -> dict[Key, int]:
        """Stop forwarding the pair; what the kernel counted for each of its keys."""
        self.pairs.discard(pair)
        return self.take_out("legs", [pair.key(s) for s, _ in pair.ways], pair.elements("delete"))

    def take_out(self, kind: str, keys: list[Key], deletions: str) -> dict[Key, int]:
        """Run `deletions` (of elements of the set `kind`); what the kernel counted for
        `keys` until then."""
        if self._nft is None:
            return {}
        counted: dict[Key, int] = {}
        try:
            counted = self.counts(", ".join(map(_element, keys)), kind)
        except NftablesError as exc:
            log.error("kernel relay: %s", exc)
        try:
            self._nft.run(deletions)
        except NftablesError as exc:
            log.error("kernel relay: %s", exc)
        return counted

    def quieten(self, endpoint: MediaEndpoint) -> Listening:
        """Drop the voice `endpoint`'s phone sends (a caller waiting in a queue, whose
        audio nobody hears and no key needs) in the kernel, once its phone has sent a
        packet; ipbx still reads its RTP events. `Listening.close` ends it."""
        listening = Listening(self, endpoint)
        listening.start(LATCH_TRIES)
        return listening

    def refresh(self) -> None:
        """The meters of the legs the kernel forwards or drops read what it has counted
        so far."""
        try:
            forwarded = self.counts() if self.pairs else {}
            dropped = self.counts(kind="listening") if self.listening else {}
        except NftablesError as exc:
            log.error("kernel relay: %s", exc)
            return
        for pair in self.pairs:
            pair.show(forwarded)
        for listening in self.listening:
            listening.show(dropped)

    def close(self) -> None:
        for pair in list(self.pairs):
            pair.come_home()
        for listening in list(self.listening):
            listening.close()
        if self._nft is not None:
            with contextlib.suppress(NftablesError):
                self._nft.run(f"delete table ip {self.table}")
            self._nft.close()
            self._nft = None


class KernelPair:
    """Two bridged endpoints whose RTP the kernel forwards: what brings them home."""

    def __init__(
        self,
        relay: KernelRelay,
        a: MediaEndpoint,
        b: MediaEndpoint,
        legs: list[tuple[Channel, Channel]],
    ) -> None:
        self.relay = relay
        self.a, self.b = a, b
        # Both directions of each leg: (from channel, to channel).
        self.ways = [way for s, d in legs for way in ((s, d), (d, s))]
        self.peers = {channel: channel.peer for way in self.ways for channel in way}
        rtp = {a: a.local_address[1], b: b.local_address[1]}
        self.ports = {e._rtp: rtp[e] for e in (a, b)} | {e._rtcp: rtp[e] + 1 for e in (a, b)}
        self._sinks: dict[Channel, Sink] = {}
        self._bases = {e: e.meter.reading() for e in (a, b)}

    def key(self, channel: Channel) -> Key:
        peer = self.peers[channel]
        assert peer is not None
        return peer[0], peer[1], self.ports[channel]

    def elements(self, verb: str) -> str:
        table = self.relay.table
        lines = []
        for source, target in self.ways:
            address, port, ours = self.key(source)
            to_address, to_port, theirs = self.key(target)
            # What a map holds is written when an element is added, not when deleted.
            via = _source_toward(self.relay.address, to_address) if verb == "add" else ""
            key = f"{address} . {port} . {ours}"
            lines += [
                f"{verb} element ip {table} legs {{ {key} }}",
                f"{verb} element ip {table} to_addr {{ {key}{_value(verb, to_address)} }}",
                f"{verb} element ip {table} via_port {{ {key}{_value(verb, theirs)} }}",
                f"{verb} element ip {table} to_port {{ {theirs}{_value(verb, to_port)} }}",
                f"{verb} element ip {table} via_addr {{ {theirs} . {to_address} . "
                f"{to_port}{_value(verb, via)} }}",
            ]
        return "\n".join(lines)

    def away(self) -> None:
        """The kernel forwards now: the endpoints say so, and a packet that still reaches
        a leg from a new source brings the pair home."""
        self.a.away = self.b.away = self
        for endpoint in (self.a, self.b):
            channel = endpoint._rtp
            self._sinks[channel] = sink = channel.sink
            channel.sink = self._stray(channel, sink)

    def _stray(self, channel: Channel, sink: Sink) -> Sink:
        def received(data: bytes) -> None:
            if channel.peer != self.peers[channel]:
                self.come_home()
            sink(data)

        return received

    def show(self, counted: dict[Key, int]) -> None:
        """The legs' meters read what the kernel counted (for the media time-out)."""
        for endpoint in (self.a, self.b):
            packets = counted.get(self.key(endpoint._rtp), 0)
            endpoint.meter.elsewhere = _plus(self._bases[endpoint], packets)

    def come_home(self, rejoin: bool = True) -> None:
        """ipbx relays the pair again (the bridge never left it; `rejoin` is moot)."""
        a, b = self.a, self.b
        if a.away is not self:
            return
        counted = self.relay.remove(self)
        a.away = b.away = None
        for channel, sink in self._sinks.items():
            channel.sink = sink
        for endpoint in (a, b):
            endpoint.meter.forwarded(counted.get(self.key(endpoint._rtp), 0))
        log.info(
            "kernel relay: ports %d and %d home, %d and %d packets forwarded in the kernel",
            self.ports[a._rtp], self.ports[b._rtp],
            counted.get(self.key(a._rtp), 0), counted.get(self.key(b._rtp), 0),
        )  # fmt: skip


class Listening:
    """A leg whose phone's voice the kernel drops: `close` gives it back to ipbx, with the
    packets dropped counted in its meter."""

    def __init__(self, relay: KernelRelay, endpoint: MediaEndpoint) -> None:
        self.relay = relay
        self.endpoint = endpoint
        self.key: Key | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._base = endpoint.meter.reading()

    def start(self, tries: int) -> None:
        self._retry = None
        channel, nft = self.endpoint._rtp, self.relay._nft
        if nft is None or self.endpoint.closed:
            return
        if not channel.latched or channel.peer is None:
            if tries > 1:  # where the phone sends from is not known yet
                loop = asyncio.get_running_loop()
                self._retry = loop.call_later(self.relay.move_after, self.start, tries - 1)
            return
        if _ipv4(channel.peer) is None:
            return
        key = (str(channel.peer[0]), int(channel.peer[1]), self.endpoint.local_address[1])
        try:
            nft.run(f"add element ip {self.relay.table} listening {{ {_element(key)} }}")
        except NftablesError as exc:
            log.error("kernel relay: %s", exc)
            return
        self.key, self._base = key, self.endpoint.meter.reading()
        self.relay.listening.add(self)

    def show(self, counted: dict[Key, int]) -> None:
        """The leg's meter reads the packets the kernel dropped (for the media time-out)."""
        if self.key is not None:
            self.endpoint.meter.elsewhere = _plus(self._base, counted.get(self.key, 0))

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        key, self.key = self.key, None
        self.relay.listening.discard(self)
        if key is not None:
            deletion = f"delete element ip {self.relay.table} listening {{ {_element(key)} }}"
            dropped = self.relay.take_out("listening", [key], deletion).get(key, 0)
            self.endpoint.meter.forwarded(dropped, in_gaps=True)


def _plus(base: MeterReading, packets: int) -> MeterReading:
    """A leg's reading: what ipbx metered, and the packets the kernel counted since."""
    return MeterReading(base.packets_received + packets, base.packets_lost, base.jitter_ms)


def _element(key: Key) -> str:
    return " . ".join(map(str, key))


def _value(verb: str, value: object) -> str:
    # A map's element is deleted by its key alone.
    return f" : {value}" if verb == "add" else ""


def _ipv4(peer: Address) -> ipaddress.IPv4Address | None:
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return None
    return address if isinstance(address, ipaddress.IPv4Address) else None


def _source_toward(bound: str, destination: str) -> str:
    """The address packets to `destination` leave from: the one the sockets are bound to,
    or, bound to every address, the one routing picks (as for ipbx's own sends)."""
    if bound != "0.0.0.0":
        return bound
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((destination, 9))  # no packet is sent
        return str(probe.getsockname()[0])


def _remove_stale_tables(nft: Nftables) -> None:
    """Tables left by ipbx processes that died without removing theirs."""
    for name, pid in _TABLE_NAME.findall(nft.run("list tables ip")):
        if int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            nft.run(f"delete table ip {name}")
