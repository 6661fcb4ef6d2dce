"""An INVITE without SDP (RFC 3261 §13.2.1, RFC 3264 §2): the callee's 2xx carries the
offer, the caller's ACK the answer; ipbx anchors both and RTP then flows through it."""

from __future__ import annotations

import secrets
import socket
import struct

from sipclient import LOOPBACK, SipClient

from bench.harness import IpbxServer
from ipbx import sdp
from ipbx.sip.auth import authorization
from ipbx.sip.message import Request, Response, parse_datagram

OFFER = (
    "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
ANSWER = (
    "v=0\r\no=- 9 9 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(3)
    return sock


def _next_request(client: SipClient, method: str) -> Request:
    while True:
        msg = parse_datagram(client.sock.recv(65535))
        if isinstance(msg, Request) and msg.method == method:
            return msg


def _reply(request: Request, status: int, extra: list[str], body: bytes = b"") -> bytes:
    to = request.headers.get("To") or ""
    if status > 100 and ";tag=" not in to:
        to += ";tag=callee"
    lines = [f"SIP/2.0 {status} OK"]
    lines += [f"Via: {v}" for v in request.headers.get_all("Via")]
    lines += [
        f"From: {request.headers.get('From')}",
        f"To: {to}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.headers.get('CSeq')}",
        *extra,
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def _ack_for(ok: Response, caller: SipClient, body: bytes) -> bytes:
    target = ok.contacts[0].uri
    lines = [
        f"ACK {target} SIP/2.0",
        f"Via: SIP/2.0/UDP {LOOPBACK}:{caller.local_port};branch=z9hG4bK{secrets.token_hex(6)}",
        "Max-Forwards: 70",
        f"From: {ok.headers.get('From')}",
        f"To: {ok.headers.get('To')}",
        f"Call-ID: {ok.call_id}",
        f"CSeq: {ok.cseq.number} ACK",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def test_late_offer_call_is_anchored_both_ways(server: IpbxServer) -> None:
    callee = SipClient(server.port, timeout=3)
    assert callee.register("1001", "secret1001").status == 200  # type: ignore[union-attr]
    caller = SipClient(server.port, timeout=3)
    a_rtp, b_rtp = _udp(), _udp()

    uri = f"sip:1001@{LOOPBACK}"
    contact = f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>"
    call_id = secrets.token_hex(8)
    caller.send(caller.message("INVITE", uri, call_id=call_id, headers=[contact]))
    challenge = caller.receive()
    assert challenge is not None and challenge.status == 407
    creds = authorization(
        challenge.headers.get_all("Proxy-Authenticate")[0], "INVITE", uri, "1000", "secret1000"
    )
    caller.send(
        caller.message(
            "INVITE",
            uri,
            call_id=call_id,
            cseq=2,
            headers=[contact, f"Proxy-Authorization: {creds}"],
        )
    )

    invite = _next_request(callee, "INVITE")
    assert invite.body == b""  # the late offer is passed on as a late offer
    offer = OFFER.format(port=b_rtp.getsockname()[1]).encode()
    callee.send(
        _reply(
            invite,
            200,
            [
                f"Contact: <sip:1001@{LOOPBACK}:{callee.local_port}>",
                "Content-Type: application/sdp",
            ],
            offer,
        )
    )

    ok = caller.receive()
    assert ok is not None and ok.status == 200
    relayed_offer = sdp.SessionDescription.parse(ok.body)
    a_side = sdp.remote_address(relayed_offer)
    assert a_side[1] != b_rtp.getsockname()[1]  # ipbx's own port, not the callee's
    answer = ANSWER.format(port=a_rtp.getsockname()[1]).encode()
    caller.send(_ack_for(ok, caller, answer))

    ack = _next_request(callee, "ACK")
    relayed_answer = sdp.SessionDescription.parse(ack.body)
    b_side = sdp.remote_address(relayed_answer)
    assert b_side[1] != a_rtp.getsockname()[1]
    assert relayed_answer.audio is not None and relayed_answer.audio.payload_types() == [8]

    packet = struct.pack("!BBHII", 0x80, 8, 1, 160, 0xABC) + bytes(160)
    a_rtp.sendto(packet, a_side)
    assert b_rtp.recv(2048) == packet
    back = struct.pack("!BBHII", 0x80, 8, 7, 320, 0xDEF) + bytes(160)
    b_rtp.sendto(back, b_side)
    assert a_rtp.recv(2048) == back


def test_echo_test_with_a_late_offer(server: IpbxServer) -> None:
    caller = SipClient(server.port, timeout=3)
    rtp = _udp()
    uri = f"sip:9196@{LOOPBACK}"
    contact = f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>"
    ok = caller.request("INVITE", uri, password="secret1000", headers=[contact])
    assert ok is not None and ok.status == 200
    echo_at = sdp.remote_address(sdp.SessionDescription.parse(ok.body))
    caller.send(_ack_for(ok, caller, ANSWER.format(port=rtp.getsockname()[1]).encode()))
    packet = struct.pack("!BBHII", 0x80, 8, 1, 160, 0x123) + bytes(160)
    rtp.sendto(packet, echo_at)
    assert rtp.recv(2048) == packet
