"""Locating a SIP server by RFC 3263: NAPTR -> SRV -> A/AAAA, for trunks.

A trunk's host is written ``HOST[:PORT]``. As RFC 3263 §4 says, a numeric address or an
explicit port skips the service lookups (a numeric address skips DNS altogether), so a
static host list needs no DNS at all; that is what the tests and most IP trunks use. A
name without a port is looked up as NAPTR (kept: the records offering the trunk's
transport, RFC 3263 §4.1), then SRV (``_sip._udp``, ``_sip._tcp``, ``_sips._tcp``,
ordered by priority and weight as RFC 2782 says), then A/AAAA on the default port.

The ordering functions are pure and take dnspython's rdata objects, so they are tested
without a network. Lookups go to the system's resolvers, or to given nameservers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdtypes.IN.NAPTR import NAPTR
from dns.rdtypes.IN.SRV import SRV

from ipbx.sip.transaction import Address

log = logging.getLogger("ipbx.sip.resolve")

DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}
# RFC 3263 §4.1 service fields and §4.2 SRV prefixes, by our transport names.
NAPTR_SERVICES = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}
SRV_PREFIXES = {"UDP": "_sip._udp", "TCP": "_sip._tcp", "TLS": "_sips._tcp"}


class ResolveError(Exception):
    """No address could be found for a host."""


def split_host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``1.2.3.4:5060``, ``[::1]:5060`` -> (host, port or None)."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
        if not is_numeric(host):
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text and not is_numeric(text):
        raise ValueError(f"{text!r}: write an IPv6 address with a port as [ADDRESS]:PORT")
    if not host or any(c in host for c in "/@; \t"):
        raise ValueError(f"{text!r}: expected HOST or HOST:PORT")
    if port_text == "" and text.endswith(":"):
        raise ValueError(f"{text!r}: empty port")
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: port must be 1-65535")
        return host.lower(), int(port_text)
    return host.lower(), None


def is_numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def order_srv(records: Sequence[SRV], rng: random.Random | None = None) -> list[SRV]:
    """RFC 2782's order: lowest priority first; within a priority, a weighted random
    draw (weight-0 records first in the running sum, so they are picked rarely). A
    single record whose target is ``.`` means the service is not offered: none."""
    rng = rng or random.Random()
    usable = [r for r in records if r.target != dns.name.root]
    ordered: list[SRV] = []
    for priority in sorted({r.priority for r in usable}):
        group = sorted((r for r in usable if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def order_naptr(records: Sequence[NAPTR], transports: Sequence[str]) -> list[tuple[str, str]]:
    """(transport, SRV name) pairs from NAPTR records (RFC 3263 §4.1): only terminal
    "s" rules for SIP services we speak among `transports`, by order then preference."""
    wanted = {t.upper() for t in transports}
    found: list[tuple[int, int, str, str]] = []
    for r in records:
        service = r.service.decode().upper()
        transport = NAPTR_SERVICES.get(service)
        if transport is None or transport not in wanted or r.flags.decode().lower() != "s":
            continue
        found.append((r.order, r.preference, transport, r.replacement.to_text(omit_final_dot=True)))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(transport, name) for _, _, transport, name in found]


@dataclass(frozen=True, slots=True)
class Lookup:
    """One host to locate: `port` None means "ask DNS", `transport` None "any of ours"."""

    host: str
    port: int | None = None
    transport: str | None = None


class Resolver:
    """RFC 3263 lookups through dnspython. `nameservers` (with `port`) replaces the
    system's resolvers; then A/AAAA also go to them, otherwise to the system (which
    knows /etc/hosts)."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        timeout: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self._system_addresses = nameservers is None
        self._dns: dns.asyncresolver.Resolver | None
        if nameservers is not None:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = list(nameservers)
            self._dns.port = port
        else:
            try:
                self._dns = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self._dns = None
        if self._dns is not None:
            self._dns.lifetime = timeout

    async def resolve(self, lookup: Lookup) -> list[Address]:
        """The addresses to try, in order (RFC 3263 §4); raises ResolveError if none."""
        host, port = lookup.host, lookup.port
        transport = lookup.transport.upper() if lookup.transport else None
        if is_numeric(host):
            t = transport or "UDP"
            return [Address(t, host, port or DEFAULT_PORTS[t])]
        if port is not None:
            t = transport or "UDP"
            return [Address(t, a, port) for a in await self._addresses(host)]
        transports = [transport] if transport else ["UDP", "TCP", "TLS"]
        services = order_naptr(await self._query(host, "NAPTR"), transports)
        if not services:
            # §4.1: no NAPTR, so SRV for each transport we support, in our preference.
            services = [(t, f"{SRV_PREFIXES[t]}.{host}") for t in transports]
        targets: list[Address] = []
        for t, name in services:
            for srv in order_srv(await self._query(name, "SRV"), self.rng):
                target = srv.target.to_text(omit_final_dot=True)
                try:
                    addresses = await self._addresses(target)
                except ResolveError as exc:
                    log.info("SRV %s: %s", name, exc)
                    continue
                targets += [Address(t, a, srv.port) for a in addresses]
        if targets:
            return targets
        # §4.2: no SRV either, so A/AAAA with the transport's default port.
        t = transport or "UDP"
        return [Address(t, a, DEFAULT_PORTS[t]) for a in await self._addresses(host)]

    async def _query(self, name: str, rdtype: str) -> list[Any]:
        if self._dns is None:
            return []
        try:
            answer = await self._dns.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.exception.DNSException as exc:
            log.debug("%s %s: %s", rdtype, name, exc)
            return []
        return list(answer.rrset) if answer.rrset is not None else []

    async def _addresses(self, host: str) -> list[str]:
        found: list[str] = []
        if self._system_addresses:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise ResolveError(f"{host}: {exc}") from None
            found = [str(info[4][0]) for info in infos]
        else:
            for rdtype in ("A", "AAAA"):
                found += [r.to_text() for r in await self._query(host, rdtype)]
        # IPv4 first, each address once: loopback tests and most providers are IPv4.
        unique = list(dict.fromkeys(found))
        unique.sort(key=lambda a: ":" in a)
        if not unique:
            raise ResolveError(f"{host}: no address")
        return unique
