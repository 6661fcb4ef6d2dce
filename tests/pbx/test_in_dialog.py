"""Requests inside an established call pass from one leg to the other with SDP anchored
on ipbx's ports and the offer/answer directions intact: hold by re-INVITE (RFC 3264 §8.4),
resume by UPDATE (RFC 3311), and BYE from the callee."""

from __future__ import annotations

from ipbx import sdp
from ipbx.sip.message import Response
from tests.support.server import IpbxServer
from tests.support.sipclient import (
    LOOPBACK,
    SipClient,
    ack_for,
    in_dialog,
    next_request,
    reply_to,
    send_authenticated_invite,
    udp_socket,
)

SDP = (
    "v=0\r\no=- {v} {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
)


def body(port: int, direction: str, version: int) -> bytes:
    return SDP.format(port=port, direction=direction, v=version).encode()


def final(client: SipClient) -> Response:
    response = client.receive()
    assert response is not None
    return response


def test_hold_by_reinvite_resume_by_update_and_bye_from_the_callee(server: IpbxServer) -> None:
    callee = SipClient(server.port, timeout=3)
    assert callee.register("1002", "secret1002").status == 200  # type: ignore[union-attr]
    caller = SipClient(server.port, timeout=3)
    a_port, b_port = udp_socket().getsockname()[1], udp_socket().getsockname()[1]

    # Set up the call (1000 -> 1002), answering the 407.
    contact = f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>"
    send_authenticated_invite(
        caller,
        f"sip:1002@{LOOPBACK}",
        [contact, "Content-Type: application/sdp"],
        body(a_port, "sendrecv", 1),
    )
    invite = next_request(callee, "INVITE")
    b_side = sdp.remote_address(sdp.SessionDescription.parse(invite.body))
    callee_contact = f"Contact: <sip:1002@{LOOPBACK}:{callee.local_port}>"
    callee.send(
        reply_to(
            invite,
            200,
            [callee_contact, "Content-Type: application/sdp"],
            body(b_port, "sendrecv", 1),
        )
    )
    ok = final(caller)
    assert ok.status == 200
    a_side = sdp.remote_address(sdp.SessionDescription.parse(ok.body))
    caller.send(ack_for(ok, caller))
    next_request(callee, "ACK")

    # Dialog state of each phone.
    a_target, a_local, a_remote = (
        str(ok.contacts[0].uri),
        ok.headers.get("From"),
        ok.headers.get("To"),
    )
    b_target = str(invite.contacts[0].uri)
    b_local = (invite.headers.get("To") or "") + ";tag=callee"
    b_remote = invite.headers.get("From") or ""
    assert a_local and a_remote

    # The caller holds: sendonly reaches the callee, on the same anchored address.
    caller.send(
        in_dialog(
            caller,
            "INVITE",
            a_target,
            a_local,
            a_remote,
            ok.call_id,
            3,
            [contact],
            body(a_port, "sendonly", 2),
        )
    )
    hold = next_request(callee, "INVITE")
    offered = sdp.SessionDescription.parse(hold.body)
    assert sdp.direction(offered) == "sendonly"
    assert sdp.remote_address(offered) == b_side
    callee.send(
        reply_to(
            hold,
            200,
            [callee_contact, "Content-Type: application/sdp"],
            body(b_port, "recvonly", 2),
        )
    )
    held = final(caller)
    assert held.status == 200
    answered = sdp.SessionDescription.parse(held.body)
    assert sdp.direction(answered) == "recvonly"
    assert sdp.remote_address(answered) == a_side
    caller.send(ack_for(held, caller))
    next_request(callee, "ACK")

    # The callee resumes with UPDATE; the caller answers sendrecv.
    callee.send(
        in_dialog(
            callee,
            "UPDATE",
            b_target,
            b_local,
            b_remote,
            invite.call_id,
            1,
            [callee_contact],
            body(b_port, "sendrecv", 3),
        )
    )
    update = next_request(caller, "UPDATE")
    assert sdp.direction(sdp.SessionDescription.parse(update.body)) == "sendrecv"
    caller.send(
        reply_to(
            update, 200, [contact, "Content-Type: application/sdp"], body(a_port, "sendrecv", 3)
        )
    )
    resumed = final(callee)
    assert resumed.status == 200 and resumed.cseq.method == "UPDATE"
    assert sdp.direction(sdp.SessionDescription.parse(resumed.body)) == "sendrecv"

    # SIP INFO DTMF (application/dtmf-relay) passes through untouched.
    relay = b"Signal=5\r\nDuration=160\r\n"
    caller.send(
        in_dialog(
            caller,
            "INFO",
            a_target,
            a_local,
            a_remote,
            ok.call_id,
            4,
            [],
            relay,
            content_type="application/dtmf-relay",
        )
    )
    info = next_request(callee, "INFO")
    assert info.body == relay and info.content_type == "application/dtmf-relay"
    callee.send(reply_to(info, 200, []))
    assert final(caller).status == 200

    # The callee hangs up; the caller is told.
    callee.send(in_dialog(callee, "BYE", b_target, b_local, b_remote, invite.call_id, 2))
    bye = next_request(caller, "BYE")
    caller.send(reply_to(bye, 200, []))
    done = final(callee)
    assert done.status == 200 and done.cseq.method == "BYE"
