"""Messages for the INVITE usage tests: an INVITE as the shell sent it, the far end's
responses, its ACK, and the shell's Via stamp."""

from __future__ import annotations

from ipbx.sip.auth import answer_challenge
from ipbx.sip.invite import IncomingInvite
from ipbx.sip.message import Request, Response, parse_datagram
from ipbx.sip.transaction import (
    Address,
    RequestReceived,
    ServerTransaction,
    TransactionLayer,
    make_response,
    new_branch,
)

UDP = Address("UDP", "192.0.2.20", 5060)
TCP = Address("TCP", "192.0.2.20", 40000)
OFFER = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
ANSWER = OFFER.replace(b"192.0.2.10", b"192.0.2.20")
CHALLENGE = 'Digest realm="pbx", nonce="n1", qop="auth", algorithm=MD5'


def invite(body: bytes = OFFER, cseq: int = 1, to_tag: str = "") -> Request:
    """An INVITE as the shell sent it (Via stamped)."""
    to = "<sip:1001@pbx>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"INVITE sip:1001@192.0.2.20 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={new_branch()};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:1000@pbx>;tag=f1\r\nTo: {to}\r\n"
        f"Call-ID: c1@192.0.2.10\r\nCSeq: {cseq} INVITE\r\n"
        f"Contact: <sip:1000@192.0.2.10:5060>\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    msg = parse_datagram(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert isinstance(msg, Request)
    return msg


def stamp(request: Request) -> Request:
    """What the shell does to a request it sends: a top Via with a fresh branch."""
    request.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={new_branch()};rport")
    return request


def response(to: Request, status: int, body: bytes = b"", tag: str = "t2") -> Response:
    out = make_response(to, status, to_tag=tag)
    if 200 <= status < 300:
        out.headers.add("Contact", "<sip:1001@192.0.2.20:5060>")
        out.headers.add("Record-Route", "<sip:proxy.example;lr>")
    if status == 401:
        out.headers.add("WWW-Authenticate", CHALLENGE)
    if status == 407:
        out.headers.add("Proxy-Authenticate", CHALLENGE)
    if body:
        out.headers.add("Content-Type", "application/sdp")
        out.body = body
    return out


def stale(challenge: Response) -> Response:
    header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
    challenge.headers.set(header, CHALLENGE.replace("n1", "n2") + ", stale=true")
    return challenge


def credentials(response: Response, method: str, uri: str) -> tuple[str, str] | None:
    return answer_challenge(response, method, uri, "1000", "secret")


def server_transaction(request: Request, peer: Address = UDP) -> ServerTransaction:
    layer = TransactionLayer()
    (event,) = layer.receive(request, peer, now=0.0)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    return event.transaction


def ack_for(usage: IncomingInvite, body: bytes = b"", cseq: int | None = None) -> Request:
    request = usage.transaction.request
    ack = invite(body, cseq or request.cseq.number, to_tag=usage.transaction.to_tag)
    ack.method = "ACK"
    ack.headers.set("CSeq", f"{ack.cseq.number} ACK")
    return ack
