"""A deliberately small SIP client for server tests: raw sockets, our parser for the
answers, and the digest client half to get past challenges. Real peers (SIPp, baresip)
are exercised in tests/interop; this one lets a test say exactly which bytes go out."""

from __future__ import annotations

import re
import secrets
import socket
import ssl
from dataclasses import dataclass, field

from ipbx.sip.auth import authorization
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response, parse_datagram

LOOPBACK = "127.0.0.1"


def parse_any(data: bytes) -> Response:
    """Our parser's view of a response; when the server rightly echoes a malformed Via
    or From back (RFC 3261 §8.2.6.2 copies them), just the status line."""
    try:
        msg = parse_datagram(data)
    except SipError:
        status_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        _, status, reason = status_line.split(" ", 2)
        return Response(Headers(), b"", int(status), reason)
    assert isinstance(msg, Response), f"expected a response, got {msg!r}"
    return msg


@dataclass
class SipClient:
    """One UDP socket (or one TCP/TLS connection) speaking to the server at `port`."""

    port: int
    transport: str = "udp"
    timeout: float = 2.0
    sock: socket.socket = field(init=False)
    buffer: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        if self.transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((LOOPBACK, 0))
        else:
            raw = socket.create_connection((LOOPBACK, self.port), timeout=self.timeout)
            if self.transport == "tls":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                raw = context.wrap_socket(raw)
            self.sock = raw
        self.sock.settimeout(self.timeout)
        self.local_port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, (LOOPBACK, self.port))
        else:
            self.sock.sendall(data)

    def receive(self, timeout: float | None = None) -> Response | None:
        """The next response, skipping provisional ones; None on time-out."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            while True:
                for msg in self._read():
                    if isinstance(msg, Response) and msg.status >= 200:
                        return msg
        except TimeoutError:
            return None

    def _read(self) -> list[object]:
        return [parse_any(message) for message in self.frames()]

    def frames(self) -> list[bytes]:
        """The next messages off the socket: a datagram, or what a stream has completed."""
        if self.transport == "udp":
            return [self.sock.recv(65535)]
        data = self.sock.recv(65535)
        if not data:
            raise TimeoutError("connection closed")
        self.buffer += data
        out: list[bytes] = []
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            m = re.search(rb"^(?:Content-Length|l)\s*:\s*(\d+)", self.buffer[:end], re.I | re.M)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buffer) < total:
                break
            out.append(bytes(self.buffer[:total]))
            del self.buffer[:total]
        return out

    def message(
        self,
        method: str,
        uri: str,
        *,
        user: str = "1000",
        to: str | None = None,
        call_id: str | None = None,
        cseq: int = 1,
        headers: list[str] | None = None,
        body: bytes = b"",
    ) -> bytes:
        tag = secrets.token_hex(4)
        sent_by = f"{self.transport.upper()} {LOOPBACK}:{self.local_port}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{sent_by};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{LOOPBACK}>;tag={tag}",
            f"To: <{to or f'sip:{user}@{LOOPBACK}'}>",
            f"Call-ID: {call_id or secrets.token_hex(8)}",
            f"CSeq: {cseq} {method}",
            *(headers or []),
            f"Content-Length: {len(body)}",
            "",
            "",
        ]
        return "\r\n".join(lines).encode() + body

    def request(
        self,
        method: str,
        uri: str,
        *,
        password: str | None = None,
        user: str = "1000",
        headers: list[str] | None = None,
        add_contact: bool = True,
        **kw: object,
    ) -> Response | None:
        """Send a request; answer one 401/407 challenge when a password is given. An
        INVITE gets a Contact (RFC 3261 §8.1.1.8) unless the headers bring one or
        `add_contact` is False."""
        call_id = secrets.token_hex(8)
        has_contact = any(h.lower().startswith("contact:") for h in headers or [])
        if method == "INVITE" and add_contact and not has_contact:
            headers = [*(headers or []), f"Contact: <sip:{user}@{LOOPBACK}:{self.local_port}>"]
        self.send(self.message(method, uri, user=user, call_id=call_id, headers=headers, **kw))  # type: ignore[arg-type]
        response = self.receive()
        if response is None or response.status not in (401, 407) or password is None:
            return response
        if method == "INVITE":
            self.send(self.ack_failure(response, uri))
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        answer = "Authorization" if response.status == 401 else "Proxy-Authorization"
        challenge = response.headers.get_all(name)[0]
        creds = authorization(challenge, method, uri, user, password)
        extra = [*(headers or []), f"{answer}: {creds}"]
        self.send(
            self.message(method, uri, user=user, call_id=call_id, cseq=2, headers=extra, **kw)
        )  # type: ignore[arg-type]
        return self.receive()

    def ack_failure(self, response: Response, uri: str) -> bytes:
        return failure_ack(response, uri)

    def register(
        self, user: str, password: str, expires: int = 3600, contact_port: int | None = None
    ) -> Response | None:
        contact = f"<sip:{user}@{LOOPBACK}:{contact_port or self.local_port}>"
        return self.request(
            "REGISTER",
            f"sip:{LOOPBACK}:{self.port}",
            user=user,
            password=password,
            headers=[f"Contact: {contact}", f"Expires: {expires}"],
        )


def failure_ack(response: Response, uri: str) -> bytes:
    """The ACK for a non-2xx final answer to our INVITE (RFC 3261 §17.1.1.3)."""
    via = response.headers.get_all("Via")[0]
    lines = [
        f"ACK {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {response.headers.get('From')}",
        f"To: {response.headers.get('To')}",
        f"Call-ID: {response.call_id}",
        f"CSeq: {response.cseq.number} ACK",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def udp_socket() -> socket.socket:
    """A UDP socket on loopback, e.g. for a test's RTP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(3)
    return sock


def next_request(client: SipClient, method: str) -> Request:
    """Wait on the client's socket for a request of `method` (a phone being called)."""
    while True:
        for data in client.frames():
            msg = parse_datagram(data)
            if isinstance(msg, Request) and msg.method == method:
                return msg


def reply_to(request: Request, status: int, extra: list[str], body: bytes = b"") -> bytes:
    """A response to a request the server sent us, as a phone would build it."""
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


def ack_for(ok: Response, caller: SipClient, body: bytes = b"") -> bytes:
    """The ACK for a 2xx to our INVITE, sent to its Contact (RFC 3261 §13.2.2.4)."""
    target = ok.contacts[0].uri
    lines = [
        f"ACK {target} SIP/2.0",
        f"Via: SIP/2.0/UDP {LOOPBACK}:{caller.local_port};branch=z9hG4bK{secrets.token_hex(6)}",
        "Max-Forwards: 70",
        f"From: {ok.headers.get('From')}",
        f"To: {ok.headers.get('To')}",
        f"Call-ID: {ok.call_id}",
        f"CSeq: {ok.cseq.number} ACK",
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def in_dialog(
    client: SipClient,
    method: str,
    target: str,
    local: str,
    remote: str,
    call_id: str,
    cseq: int,
    extra: list[str] | None = None,
    body: bytes = b"",
    content_type: str = "application/sdp",
) -> bytes:
    """A request inside a dialog: `local`/`remote` are the From/To values with tags."""
    branch = f"z9hG4bK{secrets.token_hex(6)}"
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP {LOOPBACK}:{client.local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: {local}",
        f"To: {remote}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *(extra or []),
        *([f"Content-Type: {content_type}"] if body else []),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def send_authenticated_invite(
    caller: SipClient,
    uri: str,
    headers: list[str],
    body: bytes = b"",
    user: str = "1000",
    password: str = "secret1000",
) -> bytes:
    """INVITE as `user`, answering the 407, without waiting for the final answer (the
    test plays the callee too); the authenticated INVITE it sent. The 407 is ACKed
    (RFC 3261 §17.1.1.3), or the server would send it again while the test reads on."""
    call_id = secrets.token_hex(8)
    if not any(h.lower().startswith("contact:") for h in headers):
        headers = [*headers, f"Contact: <sip:{user}@{LOOPBACK}:{caller.local_port}>"]
    caller.send(
        caller.message("INVITE", uri, user=user, call_id=call_id, headers=headers, body=body)
    )
    challenge = caller.receive()
    assert challenge is not None and challenge.status == 407, challenge
    caller.send(failure_ack(challenge, uri))
    creds = authorization(
        challenge.headers.get_all("Proxy-Authenticate")[0], "INVITE", uri, user, password
    )
    invite = caller.message(
        "INVITE",
        uri,
        user=user,
        call_id=call_id,
        cseq=2,
        headers=[*headers, f"Proxy-Authorization: {creds}"],
        body=body,
    )
    caller.send(invite)
    return invite


def cancel_for(invite: bytes) -> bytes:
    """The CANCEL of an INVITE we sent: its Request-URI, top Via (so its branch), From,
    To, Call-ID and CSeq number, method CANCEL (RFC 3261 §9.1)."""
    request = parse_datagram(invite)
    assert isinstance(request, Request)
    lines = [
        f"CANCEL {request.uri} SIP/2.0",
        f"Via: {request.headers.get_all('Via')[0]}",
        "Max-Forwards: 70",
        f"From: {request.headers.get('From')}",
        f"To: {request.headers.get('To')}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq.number} CANCEL",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()
