"""An INVITE without SDP (RFC 3261 §13.2.1, RFC 3264 §2): the callee's 2xx carries the
offer, the caller's ACK the answer; ipbx anchors both and RTP then flows through it."""

from __future__ import annotations

import struct

from ipbx import sdp
from tests.support.server import IpbxServer
from tests.support.sipclient import (
    LOOPBACK,
    SipClient,
    ack_for,
    next_request,
    reply_to,
    send_authenticated_invite,
    udp_socket,
)

OFFER = (
    "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
ANSWER = (
    "v=0\r\no=- 9 9 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


def test_late_offer_call_is_anchored_both_ways(server: IpbxServer) -> None:
    callee = SipClient(server.port, timeout=3)
    assert callee.register("1001", "secret1001").status == 200  # type: ignore[union-attr]
    caller = SipClient(server.port, timeout=3)
    a_rtp, b_rtp = udp_socket(), udp_socket()

    contact = f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>"
    send_authenticated_invite(caller, f"sip:1001@{LOOPBACK}", [contact])

    invite = next_request(callee, "INVITE")
    assert invite.body == b""  # the late offer is passed on as a late offer
    offer = OFFER.format(port=b_rtp.getsockname()[1]).encode()
    callee.send(
        reply_to(
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
    caller.send(ack_for(ok, caller, answer))

    ack = next_request(callee, "ACK")
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
    rtp = udp_socket()
    uri = f"sip:9196@{LOOPBACK}"
    contact = f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>"
    ok = caller.request("INVITE", uri, password="secret1000", headers=[contact])
    assert ok is not None and ok.status == 200
    echo_at = sdp.remote_address(sdp.SessionDescription.parse(ok.body))
    caller.send(ack_for(ok, caller, ANSWER.format(port=rtp.getsockname()[1]).encode()))
    packet = struct.pack("!BBHII", 0x80, 8, 1, 160, 0x123) + bytes(160)
    rtp.sendto(packet, echo_at)
    assert rtp.recv(2048) == packet
