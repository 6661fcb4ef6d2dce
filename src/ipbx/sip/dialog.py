"""Dialogs (RFC 3261 §12), sans-I/O: the state two user agents share between INVITE and
BYE, and the building of requests inside it.

Requests built here carry no Via: the transport shell adds the top Via when it knows
which transport and address the request leaves from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.uri import NameAddr, Uri, parse_name_addr, split_quoted

# Methods that refresh the remote target (RFC 3261 §12.2, RFC 3311 §5.1 for UPDATE).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


def _record_route(msg: Request | Response) -> list[str]:
    routes: list[str] = []
    for value in msg.headers.get_all("Record-Route"):
        routes.extend(part.strip() for part in split_quoted(value, ",") if part.strip())
    return routes


def _contact_uri(msg: Request | Response) -> Uri:
    contacts = msg.contacts
    if len(contacts) != 1:
        raise SipError(400, "a dialog-creating message needs exactly one Contact")
    return contacts[0].uri


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    local_seq: int
    remote_seq: int | None
    route_set: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """The dialog a UAS creates when it answers `request` (§12.1.1)."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=request.to.with_tag(local_tag),
            remote_uri=request.from_,
            remote_target=_contact_uri(request),
            local_seq=0,
            remote_seq=request.cseq.number,
            route_set=_record_route(request),
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a UAC creates from a 2xx or 1xx-with-tag response (§12.1.2)."""
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=request.from_,
            remote_uri=response.to,
            remote_target=_contact_uri(response),
            local_seq=request.cseq.number,
            remote_seq=None,
            route_set=list(reversed(_record_route(response))),
        )

    def next_hop(self) -> Uri:
        """Where an in-dialog request goes first: the top Route, else the remote target."""
        if self.route_set:
            return parse_name_addr(self.route_set[0]).uri
        return self.remote_target

    def create_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1). ACK and CANCEL do not take a new CSeq."""
        if method not in ("ACK", "CANCEL"):
            self.local_seq += 1
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local_uri))
        headers.add("To", str(self.remote_uri))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.local_seq} {method}")
        for route in self.route_set:
            headers.add("Route", route)
        for name, value in extra or []:
            headers.add(name, value)
        if content_type and body:
            headers.add("Content-Type", content_type)
        return Request(headers, body, method, self.remote_target)

    def create_ack(
        self, invite_cseq: int, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK for a 2xx, with the INVITE's CSeq number (§13.2.2.4)."""
        ack = self.create_request("ACK", body, content_type)
        ack.headers.set("CSeq", f"{invite_cseq} ACK")
        return ack

    def receive_request(self, request: Request) -> None:
        """Check an in-dialog request's CSeq order and refresh the target (§12.2.2).

        Raises SipError(500) for an out-of-order CSeq, as the RFC asks.
        """
        if request.method not in ("ACK", "CANCEL"):
            number = request.cseq.number
            if self.remote_seq is not None and number <= self.remote_seq:
                raise SipError(500, "CSeq out of order")
            self.remote_seq = number
        if request.method in TARGET_REFRESH and request.contacts:
            self.remote_target = request.contacts[0].uri

    def receive_response(self, response: Response) -> None:
        """A 2xx to a target refresh request updates the remote target (§12.2.1.2)."""
        if (
            response.status < 300
            and response.cseq.method in TARGET_REFRESH
            and response.headers.get("Contact")
        ):
            self.remote_target = _contact_uri(response)


def dialog_key_of(msg: Request | Response) -> tuple[str, str, str]:
    """The (Call-ID, local tag, remote tag) of a message we received."""
    if isinstance(msg, Request):
        return (msg.call_id, msg.to.tag or "", msg.from_.tag or "")
    return (msg.call_id, msg.from_.tag or "", msg.to.tag or "")
