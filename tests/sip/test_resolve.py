"""RFC 3263 server location: SRV ordering (RFC 2782), NAPTR selection, and the whole
NAPTR -> SRV -> A chain against a DNS server of our own on loopback."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from ipbx.sip.transaction import Address
from ipbx.sip.transport.resolve import (
    Lookup,
    ResolveError,
    Resolver,
    order_naptr,
    order_srv,
    split_host_port,
)


def rdata(rdtype: str, text: str) -> Any:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)


def srv(text: str) -> Any:
    return rdata("SRV", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip.example.net", ("sip.example.net", None)),
        ("SIP.Example.net:5080", ("sip.example.net", 5080)),
        ("10.0.0.1", ("10.0.0.1", None)),
        ("10.0.0.1:5060", ("10.0.0.1", 5060)),
        ("[2001:db8::1]:5061", ("2001:db8::1", 5061)),
        ("2001:db8::1", ("2001:db8::1", None)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    "text", ["", "h:", "h:0", "h:70000", "h:x", "2001:db8::1:z", "a b", "[h]:1"]
)
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text)


def test_srv_lower_priority_always_comes_first() -> None:
    records = [
        srv("20 100 5060 c.example."),
        srv("10 0 5060 a.example."),
        srv("10 0 5060 b.example."),
    ]
    for seed in range(20):
        ordered = order_srv(records, random.Random(seed))
        assert [r.priority for r in ordered] == [10, 10, 20]
        assert ordered[-1].target.to_text() == "c.example."


def test_srv_weights_share_the_first_place_in_proportion() -> None:
    # RFC 2782: weight 60 against 30 against 10 is picked first 60 %, 30 %, 10 % of times.
    records = [srv("10 60 5060 a."), srv("10 30 5060 b."), srv("10 10 5060 c.")]
    rng = random.Random(7)
    firsts = Counter(order_srv(records, rng)[0].target.to_text() for _ in range(4000))
    assert 0.55 < firsts["a."] / 4000 < 0.65
    assert 0.25 < firsts["b."] / 4000 < 0.35
    assert 0.07 < firsts["c."] / 4000 < 0.13


def test_srv_zero_weight_records_come_rarely_but_do_come() -> None:
    records = [srv("10 0 5060 zero."), srv("10 100 5060 heavy.")]
    rng = random.Random(1)
    firsts = Counter(order_srv(records, rng)[0].target.to_text() for _ in range(2000))
    assert firsts["heavy."] > 1900 and firsts["zero."] > 0


def test_srv_dot_target_means_no_service() -> None:
    assert order_srv([srv("0 0 0 .")]) == []


def test_naptr_keeps_our_transports_in_order_and_preference() -> None:
    records = [
        rdata("NAPTR", '20 10 "s" "SIP+D2U" "" _sip._udp.example.net.'),
        rdata("NAPTR", '10 20 "s" "SIP+D2T" "" _sip._tcp.example.net.'),
        rdata("NAPTR", '10 10 "s" "SIPS+D2T" "" _sips._tcp.example.net.'),
        rdata("NAPTR", '5 10 "s" "SIP+D2S" "" _sip._sctp.example.net.'),  # SCTP: not ours
        rdata("NAPTR", '5 10 "u" "E2U+sip" "!^.*$!sip:x@y!" .'),  # ENUM, not a SIP server
    ]
    assert order_naptr(records, ["UDP", "TCP", "TLS"]) == [
        ("TLS", "_sips._tcp.example.net"),
        ("TCP", "_sip._tcp.example.net"),
        ("UDP", "_sip._udp.example.net"),
    ]
    assert order_naptr(records, ["UDP"]) == [("UDP", "_sip._udp.example.net")]


# --- the whole chain against a loopback DNS server ---------------------------------------

ZONE = {
    ("example.net.", "NAPTR"): [
        '10 10 "s" "SIP+D2U" "" _sip._udp.edge.example.net.',
        '20 10 "s" "SIP+D2T" "" _sip._tcp.example.net.',
    ],
    ("_sip._udp.edge.example.net.", "SRV"): [
        "10 0 5070 a.example.net.",
        "20 0 5072 b.example.net.",
    ],
    ("_sip._tcp.example.net.", "SRV"): ["10 0 5080 a.example.net."],
    ("_sip._udp.srvonly.net.", "SRV"): ["10 0 5090 a.example.net."],
    ("a.example.net.", "A"): ["127.0.0.10"],
    ("b.example.net.", "A"): ["127.0.0.11"],
    ("b.example.net.", "AAAA"): ["::1"],
    ("plain.net.", "A"): ["127.0.0.12"],
}


class _Dns(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        key = (question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
        self.queries.append(key)
        if key in ZONE:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", key[1], ZONE[key])
            )
        elif not any(name == key[0] for name, _ in ZONE):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_numeric_hosts_and_explicit_ports_skip_service_lookups() -> None:
    async def main() -> None:
        resolver = Resolver(nameservers=["127.0.0.1"], port=9)  # nothing listens there
        assert await resolver.resolve(Lookup("127.0.0.1", 5070, "udp")) == [
            Address("UDP", "127.0.0.1", 5070)
        ]
        assert await resolver.resolve(Lookup("::1", None, "tls")) == [Address("TLS", "::1", 5061)]

    run(main())


def test_naptr_srv_a_chain_on_a_loopback_dns_server() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, server = await loop.create_datagram_endpoint(_Dns, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            resolver = Resolver(nameservers=["127.0.0.1"], port=port, rng=random.Random(0))
            # Transport not given: NAPTR picks UDP first (order 10), then TCP.
            assert await resolver.resolve(Lookup("example.net")) == [
                Address("UDP", "127.0.0.10", 5070),
                Address("UDP", "127.0.0.11", 5072),
                Address("UDP", "::1", 5072),
                Address("TCP", "127.0.0.10", 5080),
            ]
            # Transport given: NAPTR records of other transports are ignored.
            assert await resolver.resolve(Lookup("example.net", None, "tcp")) == [
                Address("TCP", "127.0.0.10", 5080)
            ]
            # No NAPTR: SRV directly; no SRV either: A on the default port.
            assert await resolver.resolve(Lookup("srvonly.net", None, "udp")) == [
                Address("UDP", "127.0.0.10", 5090)
            ]
            assert await resolver.resolve(Lookup("plain.net", None, "udp")) == [
                Address("UDP", "127.0.0.12", 5060)
            ]
            # An explicit port: A/AAAA only, no NAPTR or SRV asked.
            server.queries.clear()
            assert await resolver.resolve(Lookup("plain.net", 5099, "udp")) == [
                Address("UDP", "127.0.0.12", 5099)
            ]
            assert {rdtype for _, rdtype in server.queries} == {"A", "AAAA"}
            with pytest.raises(ResolveError):
                await resolver.resolve(Lookup("missing.net", None, "udp"))
        finally:
            transport.close()

    run(main())
