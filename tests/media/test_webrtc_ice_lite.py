"""ipbx's ICE-lite side of a WebRTC leg (RFC 8445 §2.5, RFC 8489): Binding requests
are answered only when signed with our ice-pwd and addressed to our ufrag, and nothing
but STUN and DTLS is taken from the browser before DTLS-SRTP has keys (RFC 7983)."""

from __future__ import annotations

from typing import Any

from aioice import stun

from ipbx.media.channel import Channel
from ipbx.media.webrtc import WebRtcTransport

BROWSER = ("127.0.0.1", 50000)


class _Socket:
    """What the channel's datagram transport was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def _transport() -> tuple[WebRtcTransport, _Socket]:
    rtp, socket = Channel(8), _Socket()
    rtp.transport = socket  # type: ignore[assignment]
    return WebRtcTransport(rtp, Channel(4), lambda keys: None), socket


def _check(username: str, pwd: str) -> bytes:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(pwd.encode())
    return bytes(request)


def test_a_check_signed_with_our_password_gets_the_address_it_came_from() -> None:
    transport, socket = _transport()
    ours = transport.local
    assert transport.received(_check(f"{ours.ufrag}:brws", ours.pwd), BROWSER)
    data, addr = socket.sent[-1]
    response = stun.parse_message(data)
    assert addr == BROWSER and response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == BROWSER
    assert response.check_message_integrity(ours.pwd.encode())


def test_a_check_with_another_password_or_ufrag_is_refused_with_401() -> None:
    transport, socket = _transport()
    ours = transport.local
    for check in (_check(f"{ours.ufrag}:brws", "x" * 22), _check("zzzz:brws", ours.pwd)):
        assert transport.received(check, BROWSER)
        response = stun.parse_message(socket.sent[-1][0])
        assert response.message_class == stun.Class.ERROR
        assert response.attributes["ERROR-CODE"][0] == 401


def test_media_before_dtls_srtp_has_keys_is_dropped() -> None:
    transport, socket = _transport()
    rtp = bytes([0x80, 0, 0, 1]) + bytes(8) + b"payload"
    rtcp = bytes([0x80, 200, 0, 6]) + bytes(24)
    assert transport.received(rtp, BROWSER) and transport.received(rtcp, BROWSER)
    assert not socket.sent and not transport.keyed


def test_malformed_stun_and_dtls_are_dropped_without_a_reply() -> None:
    transport, socket = _transport()
    valid = _check(f"{transport.local.ufrag}:brws", transport.local.pwd)
    for junk in (b"\x00", valid[:30], valid[:20] + b"\xff" * 40, b"\x16\xfe\xfd" + bytes(5)):
        assert transport.received(junk, BROWSER)
    assert not socket.sent
