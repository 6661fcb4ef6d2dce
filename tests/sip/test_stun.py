"""STUN keep-alives on the SIP UDP port (RFC 5389, RFC 5626 §4.4.1): a Binding request
gets a success response with the sender's address in XOR-MAPPED-ADDRESS; SIP and other
STUN messages are told apart."""

from __future__ import annotations

import struct

from ipbx.sip.stun import MAGIC_COOKIE, binding_response, is_stun

TRANSACTION = bytes(range(12))


def request(kind: int = 0x0001) -> bytes:
    return struct.pack("!HHI12s", kind, 0, MAGIC_COOKIE, TRANSACTION)


def test_a_binding_request_is_answered_with_the_mapped_ipv4_address() -> None:
    answer = binding_response(request(), "203.0.113.7", 40000)
    assert answer is not None
    kind, length, cookie, transaction = struct.unpack_from("!HHI12s", answer)
    assert (kind, cookie, transaction, length) == (0x0101, MAGIC_COOKIE, TRANSACTION, 12)
    attribute, size, family, port = struct.unpack_from("!HHxBH", answer, 20)
    assert (attribute, size, family) == (0x0020, 8, 0x01)
    assert port ^ 0x2112 == 40000
    cookie = MAGIC_COOKIE.to_bytes(4, "big")
    address = bytes(a ^ b for a, b in zip(answer[28:32], cookie, strict=True))
    assert address == bytes([203, 0, 113, 7])


def test_an_ipv6_address_is_masked_with_the_cookie_and_the_transaction_id() -> None:
    answer = binding_response(request(), "2001:db8::1", 5060)
    assert answer is not None
    assert struct.unpack_from("!HHxB", answer, 20) == (0x0020, 20, 0x02)
    mask = MAGIC_COOKIE.to_bytes(4, "big") + TRANSACTION
    address = bytes(a ^ b for a, b in zip(answer[28:44], mask, strict=True))
    assert address == bytes.fromhex("20010db8000000000000000000000001")


def test_sip_and_other_stun_messages_get_no_binding_answer() -> None:
    assert not is_stun(b"OPTIONS sip:pbx SIP/2.0\r\n\r\n")
    assert binding_response(request(kind=0x0111), "203.0.113.7", 1) is None
    assert binding_response(request()[:19], "203.0.113.7", 1) is None
