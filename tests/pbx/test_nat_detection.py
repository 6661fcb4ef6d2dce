"""Where requests to a phone go (pbx/nat.py): its Contact unless its request shows NAT
(the top Via's sent-by is not the packet's source, or the Contact holds a private,
shared, unique-local or link-local address other than the source), or its `nat` setting
says otherwise; over a live connection, that connection."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ipbx.pbx.extension import Extension
from ipbx.pbx.nat import (
    NatMode,
    answer_target,
    contact_address,
    dialog_target,
    nat_detected,
    private,
    request_target,
)
from ipbx.sip.message import Request, parse_datagram
from ipbx.sip.transaction import Address
from ipbx.sip.uri import parse_uri

PUBLIC = Address("UDP", "203.0.113.7", 40000)


def register(via: str, contact: str) -> Request:
    message = parse_datagram(
        (
            "REGISTER sip:pbx.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {via};branch=z9hG4bK-1;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:1001@pbx.example.com>;tag=a\r\n"
            "To: <sip:1001@pbx.example.com>\r\n"
            "Call-ID: nat-1\r\n"
            "CSeq: 1 REGISTER\r\n"
            f"Contact: <{contact}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


def detected(via: str, contact: str, source: Address, mode: NatMode = "auto") -> bool:
    return nat_detected(register(via, contact), parse_uri(contact), source, mode)


@pytest.mark.parametrize(
    "host", ["10.1.2.3", "172.16.0.9", "192.168.1.10", "100.64.0.1", "169.254.3.4",
             "fd00::1", "[fe80::1]"],
)  # fmt: skip
def test_private_shared_and_link_local_addresses_are_private(host: str) -> None:
    assert private(host)


@pytest.mark.parametrize("host", ["203.0.113.7", "127.0.0.1", "2001:db8::1", "pbx.example.com"])
def test_public_loopback_and_names_are_not(host: str) -> None:
    assert not private(host)


def test_a_phone_that_sends_from_one_port_and_listens_on_another_is_not_behind_nat() -> None:
    source = Address("UDP", "127.0.0.1", 5070)
    assert not detected("127.0.0.1:5070", "sip:1001@127.0.0.1:5080", source)


def test_a_via_port_other_than_the_source_port_is_nat() -> None:
    assert detected("203.0.113.7:5060", "sip:1001@203.0.113.7:5060", PUBLIC)


def test_a_via_address_other_than_the_source_is_nat() -> None:
    assert detected("192.0.2.1:40000", "sip:1001@192.0.2.1:40000", PUBLIC)


def test_a_via_without_port_means_5060() -> None:
    source = Address("UDP", "203.0.113.7", 5060)
    assert not detected("203.0.113.7", "sip:1001@203.0.113.7", source)


def test_a_private_contact_other_than_the_source_is_nat() -> None:
    # A phone that learnt its public address (STUN, rport) for Via but not for Contact.
    assert detected("203.0.113.7:40000", "sip:1001@192.168.1.10:5060", PUBLIC)


def test_a_private_contact_that_is_the_source_is_not_nat() -> None:
    lan = Address("UDP", "192.168.1.10", 5060)
    assert not detected("192.168.1.10:5060", "sip:1001@192.168.1.10:5060", lan)


def test_the_setting_overrides_the_detection() -> None:
    source = Address("UDP", "127.0.0.1", 5070)
    assert detected("127.0.0.1:5070", "sip:1001@127.0.0.1:5080", source, "force")
    assert not detected("10.0.0.2:5060", "sip:1001@10.0.0.2:5060", PUBLIC, "never")


def test_requests_go_to_the_contact_unless_nat() -> None:
    contact = contact_address(parse_uri("sip:1001@127.0.0.1:5080"))
    source = Address("UDP", "127.0.0.1", 5070)
    assert request_target(source, contact, nat=False, connected=False) == contact
    assert request_target(source, contact, nat=True, connected=False) == source


def test_a_contact_named_by_a_host_name_is_reached_at_the_source() -> None:
    assert contact_address(parse_uri("sip:1001@df7jal23ls0d.invalid;transport=ws")) is None
    assert request_target(PUBLIC, None, nat=False, connected=False) == PUBLIC


def test_a_connection_carries_requests_while_it_lives_then_the_contact() -> None:
    tcp = Address("TCP", "203.0.113.7", 40000)
    contact = contact_address(parse_uri("sip:1001@203.0.113.7:5060;transport=tcp"))
    assert contact == Address("TCP", "203.0.113.7", 5060)
    assert request_target(tcp, contact, nat=False, connected=True) == tcp
    assert request_target(tcp, contact, nat=False, connected=False) == contact


def test_once_answered_requests_go_to_the_contact_of_the_2xx() -> None:
    trunk = Address("UDP", "198.51.100.9", 5060)
    media_gateway = parse_uri("sip:+15550100@198.51.100.20:5070")
    answered = answer_target(trunk, media_gateway, nat=False, routed=False, connected=False)
    assert answered == Address("UDP", "198.51.100.20", 5070)


def test_unless_a_proxy_record_routed_the_phone_is_behind_nat_or_names_a_private_address() -> None:
    phone = Address("UDP", "203.0.113.7", 40000)
    public = parse_uri("sip:1001@203.0.113.8:5060")
    private_lan = parse_uri("sip:1001@192.168.1.10:5060")
    assert answer_target(phone, public, nat=False, routed=True, connected=False) == phone
    assert answer_target(phone, public, nat=True, routed=False, connected=False) == phone
    assert answer_target(phone, private_lan, nat=False, routed=False, connected=False) == phone


def test_the_extension_setting_is_auto_force_or_never() -> None:
    assert Extension(number="1001", password="secret").nat == "auto"
    assert Extension(number="1001", password="secret", nat="never").nat == "never"
    with pytest.raises(ValidationError, match="nat"):
        Extension(number="1001", password="secret", nat="sometimes")  # type: ignore[arg-type]


def invite_from(contact: str) -> Request:
    message = parse_datagram(
        b"INVITE sip:1002@pbx.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 203.0.113.7:5062;branch=z9hG4bK-2;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:1001@pbx.example.com>;tag=a\r\n"
        b"To: <sip:1002@pbx.example.com>\r\n"
        b"Call-ID: ob-1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <" + contact.encode() + b">\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(message, Request)
    return message


def test_ob_on_a_contact_keeps_a_dialog_on_its_udp_flow() -> None:
    """RFC 5626: `ob` on the Contact asks for in-dialog requests over the flow the
    request or answer came on; over UDP, the address and port it came from. Not behind
    NAT (its Via names its source), this phone listens on another port than it sends from."""
    flow = Address("UDP", "203.0.113.7", 5062)
    plain = invite_from("sip:1001@203.0.113.7:5080")
    assert dialog_target(plain, flow, "auto", False) == (Address("UDP", "203.0.113.7", 5080), False)
    with_ob = invite_from("sip:1001@203.0.113.7:5080;ob")
    assert dialog_target(with_ob, flow, "auto", False) == (flow, False)
    answered = parse_uri("sip:1002@203.0.113.8:5060;ob")
    assert answer_target(flow, answered, nat=False, routed=False, connected=False) == flow


def test_a_browsers_invalid_via_and_contact_are_no_sign_of_nat() -> None:
    # RFC 7118 §8's browser: a made-up .invalid host it cannot be reached at anyway.
    browser = Address("WSS", "203.0.113.7", 40000)
    contact = "sip:k2n8s1@df7jal23ls0d.invalid;transport=ws;ob"
    assert not detected("df7jal23ls0d.invalid", contact, browser)
    assert contact_address(parse_uri(contact)) is None
