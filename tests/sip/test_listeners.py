"""A server with one UDP listener per address answers a peer from the listener the peer's
messages arrive on (RFC 3261 §18.2.2), sends it requests through that listener, and names
that listener's address in Via and Contact; a send that cannot go anywhere is logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ipbx.sip.message import Request, parse_datagram
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import SipEndpoint
from tests.support.clock import run_in_virtual_time
from tests.support.network import Datagram, Network

LAN = Address("UDP", "10.201.0.1", 5060)
LOOPBACK = Address("UDP", "127.0.0.1", 5060)
PHONE = Address("UDP", "10.201.0.7", 40000)


class _Answering:
    """A transaction user that answers 200 to every request and keeps the endpoint."""

    endpoint: SipEndpoint

    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        if tx is not None:
            self.endpoint.reply(tx, 200)

    def on_cancel(self, tx: ServerTransaction) -> None:
        """Not expected here."""

    def on_no_ack(self, tx: ServerTransaction) -> None:
        """Not expected here."""


def _options(source: Address, dest: Address) -> bytes:
    return (
        f"OPTIONS sip:{dest.host}:{dest.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK-l1;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@{dest.host}>;tag=1\r\n"
        f"To: <sip:{dest.host}>\r\n"
        "Call-ID: listeners-1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def _two_listeners(network: Network) -> SipEndpoint:
    user = _Answering()
    endpoint = SipEndpoint(user)
    user.endpoint = endpoint
    # Loopback last: the listener a server without the rule would send everything from.
    network.attach(endpoint, LAN)
    network.attach(endpoint, LOOPBACK)
    return endpoint


def test_the_answer_leaves_through_the_listener_the_request_arrived_on() -> None:
    async def story() -> list[Datagram]:
        network = Network()
        await _two_listeners(network)
        network.send(_options(PHONE, LAN), PHONE, LAN)
        await asyncio.sleep(0.1)
        return [d for d in network.sent if d.is_response]

    [answer] = run_in_virtual_time(story())
    assert (answer.status, answer.source, answer.dest) == (200, LAN, PHONE)


def test_requests_to_that_peer_leave_through_it_and_name_it_in_via_and_contact() -> None:
    async def story() -> tuple[Datagram, str]:
        network = Network()
        endpoint = await _two_listeners(network)
        network.send(_options(PHONE, LAN), PHONE, LAN)
        await asyncio.sleep(0.1)
        request = parse_datagram(_options(LAN, PHONE))
        assert isinstance(request, Request)
        request.headers.remove("Via")
        contact = str(endpoint.contact(PHONE, "ipbx"))
        endpoint.send_request(request, PHONE)
        await asyncio.sleep(0.1)
        return network.sent[-1], contact

    sent, contact = run_in_virtual_time(story())
    assert (sent.source, sent.dest) == (LAN, PHONE)
    assert b"Via: SIP/2.0/UDP 10.201.0.1:5060;" in sent.data
    assert contact == "sip:ipbx@10.201.0.1:5060"


def test_a_send_with_no_listener_for_the_address_family_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def story() -> None:
        network = Network()
        endpoint = await _two_listeners(network)
        endpoint.send_raw(b"OPTIONS", Address("UDP", "2001:db8::1", 5060))

    with caplog.at_level(logging.WARNING, logger="ipbx.sip"):
        run_in_virtual_time(story())
    assert "cannot send to" in caplog.text
