"""Phones played by raw SIP sockets against a live server, for tests that script a call
step by step: a registered extension that rings, answers, refuses, is cancelled or hangs
up (Phone), and extension 1000 calling, hanging up, cancelling and transferring (Caller).
Every message is one the test chose to send, when it chose to send it."""

from __future__ import annotations

from ipbx.sip.message import Request, Response, parse_datagram
from tests.support.ports import free_port
from tests.support.server import IpbxServer, extension_range
from tests.support.sipclient import (
    SipClient,
    ack_for,
    cancel_for,
    in_dialog,
    next_request,
    reply_to,
    send_authenticated_invite,
)

CALLER = extension_range(1)[0]
LOOPBACK = "127.0.0.1"


def offer() -> bytes:
    """An audio offer (PCMU) on a free port nobody listens on."""
    return (
        f"v=0\r\no=- 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {free_port('udp')} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


class Phone:
    """A registered extension played by a raw SIP socket."""

    def __init__(self, server: IpbxServer, number: str, password: str) -> None:
        self.client = SipClient(server.port, timeout=8)
        response = self.client.register(number, password)
        assert response is not None and response.status == 200, response

    def rings(self) -> Request:
        return next_request(self.client, "INVITE")

    def ringing(self, invite: Request) -> None:
        """180 Ringing (which also stops the server retransmitting the INVITE)."""
        self.client.send(reply_to(invite, 180, []))

    def answer(self, invite: Request) -> None:
        contact = f"Contact: <sip:x@{LOOPBACK}:{self.client.local_port}>"
        self.client.send(reply_to(invite, 200, [contact, "Content-Type: application/sdp"], offer()))

    def refuse(self, invite: Request, status: int) -> None:
        self.client.send(reply_to(invite, status, []))

    def cancelled(self, invite: Request) -> None:
        """Wait for the server's CANCEL of `invite`: 200 for it, 487 for the INVITE."""
        cancel = next_request(self.client, "CANCEL")
        assert cancel.call_id == invite.call_id, cancel
        self.client.send(reply_to(cancel, 200, []))
        self.client.send(reply_to(invite, 487, []))

    def hung_up(self) -> Request:
        """Wait for the server's BYE and take it (200)."""
        bye = next_request(self.client, "BYE")
        self.client.send(reply_to(bye, 200, []))
        return bye

    def hang_up(self, invite: Request) -> Response:
        """BYE the call this phone answered (`invite`, answered with our To tag)."""
        assert invite.contacts, invite
        self.client.send(
            in_dialog(
                self.client, "BYE", str(invite.contacts[0].uri),
                reply_to_tag(invite), str(invite.headers.get("From")), invite.call_id, 1,
            )
        )  # fmt: skip
        while True:  # past the server's ACK of our 200, still on the socket
            for data in self.client.frames():
                message = parse_datagram(data)
                if isinstance(message, Response) and message.cseq.method == "BYE":
                    assert message.status == 200, message
                    return message

    def close(self) -> None:
        self.client.close()


def reply_to_tag(invite: Request) -> str:
    """Our side of a dialog we answered: the INVITE's To with the tag reply_to gave it."""
    to = invite.headers.get("To") or ""
    return to if ";tag=" in to else f"{to};tag=callee"


def dial(server: IpbxServer, to: str) -> SipClient:
    """1000 calls `to`; the client to read the answers on."""
    caller = SipClient(server.port, timeout=8)
    contact = f"Contact: <sip:{CALLER.number}@{LOOPBACK}:{caller.local_port}>"
    send_authenticated_invite(
        caller, f"sip:{to}@{LOOPBACK}", [contact, "Content-Type: application/sdp"], offer()
    )
    return caller


def final_response(caller: SipClient) -> Response:
    """The final answer to the authenticated INVITE (CSeq 2; the challenge to the first
    one is retransmitted until the server gives up on its ACK)."""
    while (response := caller.receive(timeout=15)) is not None:
        if response.cseq.number == 2:
            return response
    raise AssertionError("no final response to the INVITE")


def final_status(caller: SipClient) -> int:
    return final_response(caller).status


class Caller:
    """Extension 1000 on a raw socket: calls, hangs up or cancels, and transfers."""

    def __init__(self, server: IpbxServer) -> None:
        self.client = SipClient(server.port, timeout=10)
        self.cseq = 10
        self.invite = b""

    def dial(self, number: str) -> None:
        """Send the INVITE (answering its challenge); the answer comes with final()."""
        self.invite = send_authenticated_invite(
            self.client, f"sip:{number}@{LOOPBACK}", ["Content-Type: application/sdp"], offer()
        )

    def final(self) -> Response:
        """The final answer to the INVITE, ACKed."""
        response = final_response(self.client)
        if response.status < 300:
            self.client.send(ack_for(response, self.client))
        else:
            request = parse_datagram(self.invite)
            assert isinstance(request, Request)
            self.client.send(self.client.ack_failure(response, str(request.uri)))
        return response

    def call(self, number: str) -> Response:
        """Dial and wait for the answer, which must be 200: the dialog's 2xx."""
        self.dial(number)
        response = self.final()
        assert response.status == 200, response
        return response

    def cancel(self) -> None:
        """CANCEL the ringing INVITE; its 200 (the INVITE's 487 comes with final())."""
        self.client.send(cancel_for(self.invite))
        while (response := self.client.receive()) is not None:
            if response.cseq.method == "CANCEL":
                assert response.status == 200, response
                return
        raise AssertionError("no answer to the CANCEL")

    def hang_up(self, dialog: Response) -> None:
        """BYE the call `dialog` (its 2xx) set up, and wait for the 200."""
        self._in_dialog(dialog, "BYE")
        while (response := self.client.receive()) is not None:
            if response.cseq.method == "BYE":
                assert response.status == 200, response
                return
        raise AssertionError("no answer to the BYE")

    def refer(self, dialog: Response, refer_to: str) -> None:
        self._in_dialog(dialog, "REFER", [f"Refer-To: {refer_to}"])

    def _in_dialog(self, dialog: Response, method: str, extra: list[str] | None = None) -> None:
        self.cseq += 1
        self.client.send(
            in_dialog(
                self.client, method, str(dialog.contacts[0].uri), str(dialog.headers.get("From")),
                str(dialog.headers.get("To")), dialog.call_id, self.cseq, extra=extra,
            )
        )  # fmt: skip

    def until_hung_up(self, byes: int) -> list[bytes]:
        """Answer NOTIFYs and BYEs (and the REFER's 202) until `byes` BYEs came; the
        sipfrag bodies of the NOTIFYs."""
        frags: list[bytes] = []
        while byes:
            for data in self.client.frames():
                message = parse_datagram(data)
                if isinstance(message, Request):
                    if message.method == "NOTIFY":
                        frags.append(message.body)
                    elif message.method == "BYE":
                        byes -= 1
                    self.client.send(reply_to(message, 200, []))
        return frags

    def close(self) -> None:
        self.client.close()
