"""STUN binding requests on the SIP UDP port (RFC 5389), the keep-alive a phone behind
NAT sends over UDP (RFC 5626 §4.4.1): the answer tells it the address its NAT maps it to,
and the exchange keeps that mapping open. Sans-I/O: bytes in, the answer's bytes out.

Only what a keep-alive needs: a Binding request is answered with a success response that
carries XOR-MAPPED-ADDRESS; anything else that looks like STUN is ignored. A datagram is
STUN when its first two bits are zero (a SIP message starts with a letter) and it carries
the magic cookie (RFC 5389 §6, RFC 7983's demultiplexing rule).
"""

from __future__ import annotations

import ipaddress
import struct

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
_HEADER = struct.Struct("!HHI12s")


def is_stun(data: bytes) -> bool:
    """Whether a datagram is a STUN message rather than SIP."""
    return (
        len(data) >= _HEADER.size
        and data[0] < 0x40
        and int.from_bytes(data[4:8], "big") == MAGIC_COOKIE
    )


def binding_response(data: bytes, host: str, port: int) -> bytes | None:
    """The success response to a Binding request from host:port, or None when `data` is
    not a well-formed Binding request."""
    if not is_stun(data):
        return None
    kind, length, _, transaction = _HEADER.unpack_from(data)
    if kind != BINDING_REQUEST or length != len(data) - _HEADER.size or length % 4:
        return None
    address = ipaddress.ip_address(host)
    mask = MAGIC_COOKIE.to_bytes(4, "big") + (transaction if address.version == 6 else b"")
    xored = bytes(a ^ b for a, b in zip(address.packed, mask, strict=True))
    family = 0x01 if address.version == 4 else 0x02
    value = struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xored
    attribute = struct.pack("!HH", XOR_MAPPED_ADDRESS, len(value)) + value
    return _HEADER.pack(BINDING_SUCCESS, len(attribute), MAGIC_COOKIE, transaction) + attribute
