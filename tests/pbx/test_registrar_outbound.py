"""SIP Outbound (RFC 5626) at the registrar, seen from phones on raw TCP connections: the
binding is the flow, the 200 says so, a ping gets a pong, and a phone that lost its
connection is reached over the one it registers next. baresip behind a NAT does the same
in tests/interop/test_outbound_nat.py."""

from __future__ import annotations

import contextlib

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
)

INSTANCE = "urn:uuid:00000000-0000-1000-8000-00000000f10e"
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def register_flow(
    phone: SipClient, reg_id: int, user: str = "1001", supported: str = "outbound"
) -> Response:
    contact = (
        f"Contact: <sip:{user}@{LOOPBACK}:{phone.local_port};transport=tcp;ob>;"
        f'+sip.instance="<{INSTANCE}>";reg-id={reg_id}'
    )
    ok = phone.request(
        "REGISTER", f"sip:{LOOPBACK}", user=user, password=f"secret{user}",
        headers=[contact, f"Supported: {supported}", "Expires: 600"],
    )  # fmt: skip
    assert ok is not None and ok.status == 200, ok
    return ok


def flows(ok: Response) -> dict[str, int | None]:
    """reg-id -> the port of the Contact bound for it, from a 200 to REGISTER."""
    return {c.params.get("reg-id") or "": c.uri.port for c in ok.contacts}


def call_1001(server: IpbxServer) -> SipClient:
    """1000 calls 1001 over UDP (the answer is left to whoever gets the INVITE)."""
    caller = SipClient(server.port)
    send_authenticated_invite(
        caller, f"sip:1001@{LOOPBACK}", ["Content-Type: application/sdp"], SDP
    )
    return caller


def rings_only(phone: SipClient, others: list[SipClient]) -> None:
    """`phone` gets the INVITE (and turns it down); `others` get none."""
    invite = next_request(phone, "INVITE")
    phone.send(reply_to(invite, 486, []))
    for other in others:
        other.sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError):
            assert not other.sock.recv(65535).startswith(b"INVITE"), "rang twice"


def test_a_phone_is_reached_over_its_flow_and_over_the_next_one(server: IpbxServer) -> None:
    first, second = SipClient(server.port, "tcp"), SipClient(server.port, "tcp")
    ok = register_flow(first, reg_id=1)
    # RFC 5626 §6 and §5.4: the registrar says it used outbound and how often to ping.
    assert ok.headers.get("Require") == "outbound"
    assert ok.headers.get("Flow-Timer") == "120"
    (contact,) = ok.contacts
    assert contact.params["reg-id"] == "1"
    assert contact.params["+sip.instance"] == f'"<{INSTANCE}>"'
    # RFC 5626 §4.4.1: a double CRLF ping gets a single CRLF pong on the same connection.
    first.sock.sendall(b"\r\n\r\n")
    assert first.sock.recv(16) == b"\r\n"

    # A second flow of the same device (reg-id 2) is a second binding; the device is
    # rung once, over its latest flow.
    ok = register_flow(second, reg_id=2)
    assert flows(ok) == {"1": first.local_port, "2": second.local_port}
    call_1001(server)
    rings_only(second, [first])

    # The second connection dies; the phone registers reg-id 2 over a new one, which
    # replaces the dead flow's binding and is where the next call goes.
    second.close()
    third = SipClient(server.port, "tcp")
    ok = register_flow(third, reg_id=2)
    assert flows(ok) == {"1": first.local_port, "2": third.local_port}
    call_1001(server)
    rings_only(third, [first])
    for phone in (first, third):
        phone.close()


def test_a_call_follows_the_phone_to_its_new_flow(server: IpbxServer) -> None:
    """The callee's connection closes during the call; it comes back over a new one
    (registers there and sends an in-dialog INFO): the caller's BYE reaches it there."""
    phone = SipClient(server.port, "tcp")
    register_flow(phone, reg_id=1)
    caller = call_1001(server)
    invite = next_request(phone, "INVITE")
    contact = f"Contact: <sip:1001@{LOOPBACK}:{phone.local_port};transport=tcp;ob>"
    answer = [contact, "Content-Type: application/sdp"]
    phone.send(reply_to(invite, 200, answer, SDP))
    ok = caller.receive()
    assert ok is not None and ok.status == 200, ok
    caller.send(ack_for(ok, caller))

    phone.close()
    back = SipClient(server.port, "tcp")
    register_flow(back, reg_id=1)
    info = (
        f"INFO {invite.contacts[0].uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP {LOOPBACK}:{back.local_port};branch=z9hG4bKinfo1\r\n"
        f"Max-Forwards: 70\r\nFrom: {invite.headers.get('To')};tag=callee\r\n"
        f"To: {invite.headers.get('From')}\r\nCall-ID: {invite.call_id}\r\n"
        f"CSeq: 2 INFO\r\n{contact.replace(str(phone.local_port), str(back.local_port))}"
        "\r\nContent-Length: 0\r\n\r\n"
    )
    back.send(info.encode())
    relayed = next_request(caller, "INFO")
    caller.send(reply_to(relayed, 200, []))
    answered = back.receive()  # over the new connection
    assert answered is not None and answered.status == 200, answered
    caller.send(in_dialog(caller, "BYE", str(ok.contacts[0].uri), str(ok.headers.get("From")),
                          str(ok.headers.get("To")), ok.call_id, 3, body=b""))  # fmt: skip
    bye = next_request(back, "BYE")
    assert bye.call_id == invite.call_id
    for client in (back, caller):
        client.close()


def test_without_outbound_the_registrar_is_plain_rfc_3261(server: IpbxServer) -> None:
    """reg-id and instance without `Supported: outbound`: no Require, no Flow-Timer, and
    the binding is named by its Contact (a new one from the same device replaces it)."""
    first, second = SipClient(server.port, "tcp"), SipClient(server.port, "tcp")
    register_flow(first, reg_id=1, user="1002", supported="path")
    ok = register_flow(second, reg_id=2, user="1002", supported="path")
    assert ok.headers.get("Require") is None and ok.headers.get("Flow-Timer") is None
    (contact,) = ok.contacts
    assert contact.uri.port == second.local_port and "reg-id" not in contact.params
    for phone in (first, second):
        phone.close()


def test_outbound_registers_that_cannot_be_served(server: IpbxServer) -> None:
    """RFC 5626 §6: through a proxy that did not say it keeps flows (no `ob` in Path), 439;
    a reg-id with more than one Contact to bind, 400."""
    phone = SipClient(server.port, "tcp")
    flow = f'+sip.instance="<{INSTANCE}>";reg-id=1'
    cases = {
        439: [
            "Via: SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bKproxy",
            f"Contact: <sip:1003@192.0.2.8:5060;transport=tcp>;{flow}",
        ],
        400: [
            f"Contact: <sip:1003@{LOOPBACK}:{phone.local_port};transport=tcp>;{flow}",
            f"Contact: <sip:1003@{LOOPBACK}:5999>",
        ],
    }
    for status, headers in cases.items():
        answer = phone.request(
            "REGISTER", f"sip:{LOOPBACK}", user="1003", password="secret1003",
            headers=[*headers, "Supported: outbound"],
        )  # fmt: skip
        assert answer is not None and answer.status == status, answer
    phone.close()
