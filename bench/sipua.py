"""A minimal SIP user agent pair for the media benchmark: a caller that places calls
through ipbx (with digest authentication) and a callee that ipbx rings.

Only what the benchmark needs, written from RFC 3261 and independent of ipbx's own SIP
stack (so the server is not measured with itself): UDP on 127.0.0.1, one caller socket
and one callee socket for all calls, requests resent at T1 = 500 ms doubling until a
response arrives (RFC 3261 17.1.1.2), a 200 OK to INVITE answered again with the ACK it
had (13.2.2.4), digest with qop=auth (RFC 7616), and the 2xx to INVITE re-sent by the
callee until its ACK arrives is approximated by answering every retransmitted INVITE.
Media ports come from the SDP each side sends; RTP is the caller's business (rtpload.py).

The caller puts the call's number in the From display name; ipbx copies it into the
INVITE it sends the callee (quoted or not: "call 7" is all tokens, so RFC 3261 §25.1 lets
it go bare), which is how the callee pairs its leg with the caller's.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

LOOPBACK = "127.0.0.1"
T1 = 0.5
# Compact header forms (RFC 3261 7.3.3) a server may use.
_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
}
_PORT = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)
_PLAYBACK = re.compile(rb"^a=fmtp:\d+ .*\bmaxplaybackrate=(\d+)", re.MULTILINE)


class SipFailure(RuntimeError):
    """A call or registration that did not get the answer it needed."""


@dataclass
class Message:
    first_line: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status(self) -> int | None:
        if not self.first_line.startswith("SIP/2.0 "):
            return None
        return int(self.first_line.split(" ", 2)[1])

    @property
    def method(self) -> str:
        """The request's method, or the method of the CSeq a response answers."""
        if self.status is None:
            return self.first_line.split(" ", 1)[0]
        return self.header("cseq").split()[-1]

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key == name), "")

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def key(self) -> tuple[str, int, str]:
        """What matches a response to the request it answers: Call-ID, CSeq."""
        number, method = self.header("cseq").split()
        return self.header("call-id"), int(number), method


def parse_message(data: bytes) -> Message:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers.append((_COMPACT.get(name, name), value.strip()))
    return Message(lines[0], headers, body)


def media_port(sdp: bytes) -> int:
    """The port of the first m=audio line."""
    found = _PORT.search(sdp)
    if found is None:
        raise SipFailure("SDP without m=audio")
    return int(found.group(1))


def playback_rate(sdp: bytes) -> int:
    """The maxplaybackrate an SDP gives its first Opus format (RFC 7587 §6.1), or 48000:
    the widest audio the party that wrote it plays back."""
    found = _PLAYBACK.search(sdp)
    return int(found.group(1)) if found else 48000


def tag_of(value: str) -> str:
    found = re.search(r";\s*tag=([^;>\s]+)", value)
    return found.group(1) if found else ""


def uri_of(value: str) -> str:
    found = re.search(r"<([^>]+)>", value)
    return found.group(1) if found else value.split(";")[0].strip()


def digest_authorization(
    challenge: str, method: str, uri: str, username: str, password: str, cnonce: str = ""
) -> str:
    """The answer to one Digest challenge, MD5, qop=auth when offered (RFC 7616 3.4)."""
    params: dict[str, str] = {}
    for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', challenge):
        params[name.lower()] = quoted or bare
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{username}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        "algorithm=MD5",
    ]
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        cnonce = cnonce or secrets.token_hex(8)
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


def md5_challenge(values: list[str]) -> str:
    for value in values:
        if "algorithm" not in value.lower() or re.search(r"algorithm=\"?MD5\b", value, re.I):
            return value
    raise SipFailure(f"no MD5 digest challenge in {values}")


def sdp_body(
    port: int, payload_type: int, rtpmap: str, session: str = "-", telephone_event: bool = False
) -> bytes:
    """An offer or answer of one codec; with `telephone_event`, RFC 4733 digits too (as
    desk phones offer: payload type 101)."""
    formats, events = str(payload_type), ""
    if telephone_event:
        formats += " 101"
        events = "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    return (
        "v=0\r\n"
        f"o=- {secrets.randbelow(1 << 31)} 1 IN IP4 {LOOPBACK}\r\n"
        f"s={session}\r\n"
        f"c=IN IP4 {LOOPBACK}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\n"
        f"a=rtpmap:{payload_type} {rtpmap}\r\n"
        f"{events}"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def build_request(
    method: str,
    uri: str,
    via: str,
    call_id: str,
    cseq: int,
    from_: str,
    to: str,
    extra: list[str],
    body: bytes = b"",
) -> bytes:
    """A request's bytes; `extra` holds more header lines, an SDP `body` its type."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_response(
    request: Message, status: int, to_tag: str, contact: str, body: bytes = b""
) -> bytes:
    """A response to `request`, its To tagged `to_tag` unless it has a tag; a response
    to INVITE carries `contact`."""
    reason = {200: "OK"}.get(status, "Unknown")
    to = request.header("to")
    if to_tag and not tag_of(to):
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {via}" for via in request.all("via")]
    lines += [
        f"From: {request.header('from')}",
        f"To: {to}",
        f"Call-ID: {request.header('call-id')}",
        f"CSeq: {request.header('cseq')}",
    ]
    if request.method == "INVITE":
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_message: Callable[[_Socket, Message, tuple[str, int]], None]) -> None:
        self._on_message = on_message
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.strip():  # keep-alive CRLFs carry nothing
            self._on_message(self, parse_message(data), addr)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port


@dataclass
class Call:
    """One established call: the ports ipbx anchored for each side."""

    index: int
    call_id: str
    from_tag: str
    to_tag: str = ""
    target: str = ""
    caller_relay_port: int = 0
    callee_relay_port: int = 0
    # The maxplaybackrate of ipbx's answer to the caller (48000: none).
    caller_playback_rate: int = 48000
    ack: bytes = b""


@dataclass
class UserAgents:
    """The caller and the callee sockets, talking to ipbx at 127.0.0.1:server_port."""

    server_port: int
    caller: str
    caller_password: str
    callee: str
    callee_password: str
    # The SDP each side offers or answers: (RTP port, payload type, rtpmap).
    caller_media: tuple[int, int, str]
    callee_media: tuple[int, int, str]
    # Whether the caller offers RFC 4733 telephone-event beside its codec.
    caller_digits: bool = False
    _caller: _Socket = field(init=False)
    _callee: _Socket = field(init=False)
    _waiting: dict[tuple[str, int, str], asyncio.Future[Message]] = field(default_factory=dict)
    _provisional: set[tuple[str, int, str]] = field(default_factory=set)
    _answered: dict[str, bytes] = field(default_factory=dict)
    _legs: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    _calls: dict[str, Call] = field(default_factory=dict)
    _register_cseq: int = 0
    _token: str = field(default_factory=lambda: secrets.token_hex(4))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._caller = await loop.create_datagram_endpoint(
            lambda: _Socket(self._on_message), local_addr=(LOOPBACK, 0)
        )
        _, self._callee = await loop.create_datagram_endpoint(
            lambda: _Socket(self._on_message), local_addr=(LOOPBACK, 0)
        )

    async def leave(self) -> None:
        """Unbind the callee (a failure is only reported on stderr), close the sockets."""
        try:
            await self.register_callee(expires=0)
        except (SipFailure, TimeoutError) as exc:
            print(f"unregister: {exc}", file=sys.stderr)
        self.close()

    def close(self) -> None:
        for sock in (self._caller, self._callee):
            if sock.transport is not None:
                sock.transport.close()

    @property
    def _server(self) -> tuple[str, int]:
        return LOOPBACK, self.server_port

    # ------------------------------------------------------------------ requests out

    def _request(
        self,
        sock: _Socket,
        method: str,
        uri: str,
        call_id: str,
        cseq: int,
        from_: str,
        to: str,
        extra: list[str],
        body: bytes = b"",
        branch: str | None = None,
    ) -> bytes:
        via = f"SIP/2.0/UDP {LOOPBACK}:{sock.port};branch={branch or new_branch()};rport"
        return build_request(method, uri, via, call_id, cseq, from_, to, extra, body)

    async def _transaction(
        self, sock: _Socket, data: bytes, key: tuple[str, int, str], timeout: float
    ) -> Message:
        """Send a request, resend it until something answers, return the final response."""
        loop = asyncio.get_running_loop()
        final: asyncio.Future[Message] = loop.create_future()
        self._waiting[key] = final
        deadline = loop.time() + timeout
        interval = T1
        try:
            while True:
                sock.send(data, self._server)
                wait = min(interval, deadline - loop.time())
                if wait <= 0:
                    raise SipFailure(f"no final response to {key} in {timeout:.0f} s")
                try:
                    return await asyncio.wait_for(asyncio.shield(final), wait)
                except TimeoutError:
                    if key in self._provisional:
                        # A provisional stops resending (RFC 3261 17.1.1.2, 17.1.2.2).
                        interval = deadline - loop.time()
                        continue
                    interval *= 2
        finally:
            self._waiting.pop(key, None)
            self._provisional.discard(key)

    async def register_callee(self, expires: int = 3600, timeout: float = 10.0) -> None:
        """Bind the callee socket as the callee's contact; expires=0 removes the binding."""
        uri = f"sip:{LOOPBACK}:{self.server_port}"
        aor = f"<sip:{self.callee}@{LOOPBACK}:{self.server_port}>"
        call_id, tag = f"reg-{self._token}", secrets.token_hex(4)
        contact = [
            f"Contact: <sip:{self.callee}@{LOOPBACK}:{self._callee.port}>",
            f"Expires: {expires}",
        ]
        auth: list[str] = []
        self._register_cseq += 2
        for cseq in (self._register_cseq - 1, self._register_cseq):
            data = self._request(
                self._callee, "REGISTER", uri, call_id, cseq, f"{aor};tag={tag}", aor,
                contact + auth,
            )  # fmt: skip
            response = await self._transaction(
                self._callee, data, (call_id, cseq, "REGISTER"), timeout
            )
            if response.status == 200:
                return
            if response.status != 401:
                break
            challenge = md5_challenge(response.all("www-authenticate"))
            value = digest_authorization(
                challenge, "REGISTER", uri, self.callee, self.callee_password
            )
            auth = [f"Authorization: {value}"]
        raise SipFailure(f"REGISTER {self.callee}: {response.first_line}")

    async def place_call(self, index: int, timeout: float = 10.0, number: str = "") -> Call:
        """INVITE (407, ACK, INVITE with credentials) until 200, then ACK; returns when
        the callee has its leg too. With a `number` (a conference, a menu) ipbx answers
        itself and no callee leg is waited for."""
        call = Call(index, f"rtpload-{self._token}-{index}", secrets.token_hex(4))
        self._calls[call.call_id] = call
        leg = self.expect_leg(index)
        if number:
            leg.set_result(0)
        uri = f"sip:{number or self.callee}@{LOOPBACK}:{self.server_port}"
        from_ = f'"call {index}" <sip:{self.caller}@{LOOPBACK}>;tag={call.from_tag}'
        to = f"<{uri}>"
        port, payload_type, rtpmap = self.caller_media
        body = sdp_body(port, payload_type, rtpmap, telephone_event=self.caller_digits)
        contact = f"Contact: <sip:{self.caller}@{LOOPBACK}:{self._caller.port}>"
        auth: list[str] = []
        try:
            for cseq in (1, 2):
                branch = new_branch()
                data = self._request(
                    self._caller, "INVITE", uri, call.call_id, cseq, from_, to,
                    [contact, *auth], body, branch,
                )  # fmt: skip
                response = await self._transaction(
                    self._caller, data, (call.call_id, cseq, "INVITE"), timeout
                )
                if response.status == 200:
                    break
                # The ACK to a non-2xx final: same branch, the response's To (17.1.1.3).
                self._caller.send(
                    self._request(
                        self._caller, "ACK", uri, call.call_id, cseq, from_,
                        response.header("to"), [], branch=branch,
                    ),
                    self._server,
                )  # fmt: skip
                if response.status != 407 or cseq == 2:
                    raise SipFailure(f"call {index}: {response.first_line}")
                challenge = md5_challenge(response.all("proxy-authenticate"))
                value = digest_authorization(
                    challenge, "INVITE", uri, self.caller, self.caller_password
                )
                auth = [f"Proxy-Authorization: {value}"]
            call.to_tag = tag_of(response.header("to"))
            call.target = uri_of(response.header("contact")) or uri
            call.caller_relay_port = media_port(response.body)
            call.caller_playback_rate = playback_rate(response.body)
            call.ack = self._request(
                self._caller, "ACK", call.target, call.call_id, 2, from_,
                response.header("to"), [],
            )  # fmt: skip
            self._caller.send(call.ack, self._server)
            call.callee_relay_port = await asyncio.wait_for(leg, timeout)
        finally:
            self.forget_leg(index)
        return call

    def expect_leg(self, index: int) -> asyncio.Future[int]:
        """Call `index`'s leg at the callee: the RTP port ipbx offers it, once ipbx's
        INVITE with the display name "call <index>" arrives. forget_leg() when done."""
        leg: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._legs[index] = leg
        return leg

    def forget_leg(self, index: int) -> None:
        self._legs.pop(index, None)

    async def hang_up(self, call: Call, timeout: float = 10.0) -> bool:
        from_ = f'"call {call.index}" <sip:{self.caller}@{LOOPBACK}>;tag={call.from_tag}'
        to = f"<sip:{self.callee}@{LOOPBACK}:{self.server_port}>;tag={call.to_tag}"
        data = self._request(self._caller, "BYE", call.target, call.call_id, 3, from_, to, [])
        try:
            response = await self._transaction(
                self._caller, data, (call.call_id, 3, "BYE"), timeout
            )
        except SipFailure:
            return False
        finally:
            self._calls.pop(call.call_id, None)
        return response.status == 200

    # ------------------------------------------------------------------ messages in

    def _on_message(self, sock: _Socket, message: Message, addr: tuple[str, int]) -> None:
        if message.status is not None:
            self._on_response(message)
        elif sock is self._callee and message.method == "INVITE":
            self._on_invite(message, addr)
        elif message.method != "ACK":
            # BYE from ipbx when the other side hangs up, qualify OPTIONS, anything else.
            sock.send(self._response(message, 200, ""), addr)

    def _on_response(self, message: Message) -> None:
        status = message.status
        assert status is not None
        waiter = self._waiting.get(message.key)
        if waiter is None or waiter.done():
            # A retransmitted 2xx to INVITE: our ACK was lost; send it again.
            call = self._calls.get(message.header("call-id"))
            if status == 200 and message.method == "INVITE" and call is not None and call.ack:
                self._caller.send(call.ack, self._server)
            return
        if status < 200:
            self._provisional.add(message.key)
        else:
            waiter.set_result(message)

    def _on_invite(self, message: Message, addr: tuple[str, int]) -> None:
        call_id = message.header("call-id")
        answer = self._answered.get(call_id)
        if answer is None:
            port, payload_type, rtpmap = self.callee_media
            answer = self._response(
                message, 200, secrets.token_hex(4), sdp_body(port, payload_type, rtpmap)
            )
            self._answered[call_id] = answer
            found = re.match(r'\s*"?call (\d+)\b', message.header("from"))
            leg = self._legs.get(int(found.group(1))) if found else None
            if leg is not None and not leg.done():
                leg.set_result(media_port(message.body))
        self._callee.send(answer, addr)

    def _response(self, request: Message, status: int, to_tag: str, body: bytes = b"") -> bytes:
        contact = f"<sip:{self.callee}@{LOOPBACK}:{self._callee.port}>"
        return build_response(request, status, to_tag, contact, body)
