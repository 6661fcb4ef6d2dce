"""SIP messages: parsing, validation and serialisation (RFC 3261 §7, §20, §25).

Bytes in, `Request`/`Response` out, and back. Header values are kept as text exactly as
received (after unfolding, RFC 3261 §7.3.1), decoded as UTF-8 with surrogateescape so that
any octet survives a parse/serialise round trip. The structured headers a SIP element needs
on every message (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Expires) are
validated at parse time, because a request that fails there must get a 400 before anything
else looks at it (RFC 4475 §3.1.2, §3.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from ipbx.sip.errors import SipError
from ipbx.sip.uri import (
    NameAddr,
    Uri,
    Via,
    is_token,
    parse_name_addr,
    parse_uri,
    parse_via_list,
    split_quoted,
)

T = TypeVar("T")

# RFC 3261 §7.3.3 and later RFCs' compact forms.
COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_KNOWN = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]
_CANONICAL = {name.lower(): name for name in _KNOWN}
_CANONICAL.update(COMPACT)

# Headers that may appear at most once in a request (RFC 4475 §3.3.8, §3.3.9).
_SINGLE = ("Call-ID", "To", "From", "CSeq", "Max-Forwards", "Content-Length")
_VERSION = "SIP/2.0"
_FOLD = re.compile(r"\r?\n[ \t]+")
_STATUS = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) (.*)\Z", re.S)
_DIGITS = re.compile(r"[0-9]+\Z")
MAX_CSEQ = 2**31 - 1
MAX_EXPIRES = 2**32 - 1


# Names as code and most peers spell them, mapped without lowercasing first.
_EXACT = {**{name: name for name in _KNOWN}, **_CANONICAL}


def canonical_name(name: str) -> str:
    found = _EXACT.get(name)
    return found if found is not None else _CANONICAL.get(name.lower(), name)


class Headers:
    """An ordered multi-map of header fields with case-insensitive names.

    Lookups go through an index built on first use; parsed forms of structured values
    are cached under the header's canonical name (a trailing "," for the list form), and
    a change drops only what it touches.
    """

    __slots__ = ("_cache", "_index", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = items if items is not None else []
        self._cache: dict[str, object] = {}
        self._index: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self._items:
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
            self._index = index
        return index

    def _changed(self, name: str) -> None:
        self._cache.pop(name, None)
        self._cache.pop(name + ",", None)
        self._index = None

    def compact(self) -> None:
        """Drop the index and parsed values (rebuilt if asked for again): for messages
        that are kept but no longer read."""
        self._cache.clear()
        self._index = None

    def replace_first(self, name: str, value: str) -> None:
        """Replace the value of the first field called `name`, in place."""
        name = canonical_name(name)
        for i, (key, _) in enumerate(self._items):
            if key == name:
                self._items[i] = (key, value)
                self._changed(name)
                return
        raise KeyError(name)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def get(self, name: str) -> str | None:
        values = self._lookup().get(canonical_name(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return list(self._lookup().get(canonical_name(name), ()))

    def count(self, name: str) -> int:
        return len(self._lookup().get(canonical_name(name), ()))

    def __contains__(self, name: str) -> bool:
        return canonical_name(name) in self._lookup()

    def add(self, name: str, value: str) -> None:
        name = canonical_name(name)
        self._items.append((name, value))
        self._changed(name)

    def prepend(self, name: str, value: str) -> None:
        name = canonical_name(name)
        self._items.insert(0, (name, value))
        self._changed(name)

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name by one, keeping the first one's position."""
        name = canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for key, old in self._items:
            if key != name:
                out.append((key, old))
            elif not placed:
                out.append((key, value))
                placed = True
        if not placed:
            out.append((name, value))
        self._items = out
        self._changed(name)

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self._items = [(k, v) for k, v in self._items if k != name]
        self._changed(name)

    def copy(self) -> Headers:
        return Headers(list(self._items))

    def parsed(self, key: str, parse: Callable[[], T]) -> T:
        try:
            return self._cache[key]  # type: ignore[return-value]
        except KeyError:
            value = self._cache[key] = parse()
            return value


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    number, _, method = value.strip(" \t").partition(" ")
    method = method.strip(" \t")
    if not _DIGITS.match(number) or int(number) > MAX_CSEQ or not is_token(method):
        raise SipError(400, f"bad CSeq {value!r}")
    return CSeq(int(number), method)


def _parse_bounded_int(name: str, value: str, limit: int) -> int:
    value = value.strip(" \t")
    if not _DIGITS.match(value) or len(value) > 12 or int(value) > limit:
        raise SipError(400, f"bad {name} {value!r}")
    return int(value)


@dataclass(eq=False, slots=True)
class Message:
    headers: Headers
    body: bytes = b""

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self._start_line() == other._start_line()
            and self.headers == other.headers
            and self.body == other.body
        )

    def _start_line(self) -> str:
        raise NotImplementedError

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return self.headers.parsed("CSeq", lambda: parse_cseq(self.headers.get("CSeq") or ""))

    @property
    def vias(self) -> list[Via]:
        def parse() -> list[Via]:
            vias: list[Via] = []
            for value in self.headers.get_all("Via"):
                vias.extend(parse_via_list(value))
            return vias

        return self.headers.parsed("Via", parse)

    @property
    def via(self) -> Via:
        vias = self.vias
        if not vias:
            raise SipError(400, "missing Via")
        return vias[0]

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("To")

    def _name_addr(self, name: str) -> NameAddr:
        def parse() -> NameAddr:
            value = self.headers.get(name)
            if value is None:
                raise SipError(400, f"missing {name}")
            return parse_name_addr(value)

        return self.headers.parsed(name, parse)

    def name_addrs(self, name: str) -> list[NameAddr]:
        """Every value of a comma-list name-addr header (Contact, Route, Record-Route)."""

        def parse() -> list[NameAddr]:
            out: list[NameAddr] = []
            for value in self.headers.get_all(name):
                out.extend(parse_name_addr(v) for v in split_quoted(value, ",") if v.strip())
            return out

        return self.headers.parsed(canonical_name(name) + ",", parse)

    @property
    def contacts(self) -> list[NameAddr]:
        return self.name_addrs("Contact")

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else _parse_bounded_int("Expires", value, MAX_EXPIRES)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def serialize(self) -> bytes:
        out = [self._start_line()]
        for name, value in self.headers:
            if name != "Content-Length":
                out.append(f"{name}: {value}")
        out.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(out).encode("utf-8", "surrogateescape") + self.body


@dataclass(eq=False, slots=True)
class Request(Message):
    method: str = ""
    uri: Uri = field(default_factory=lambda: Uri("sip"))

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {_VERSION}"

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else _parse_bounded_int("Max-Forwards", value, 255)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id}>"


@dataclass(eq=False, slots=True)
class Response(Message):
    status: int = 200
    reason: str = "OK"

    def _start_line(self) -> str:
        return f"{_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id}>"


class BadRequest(SipError):
    """A request that reached the header stage but failed validation: `request` holds what
    was parsed, so that a 400 (or 505) can still be addressed to its Via."""

    def __init__(self, status: int, reason: str, request: Request) -> None:
        super().__init__(status, reason)
        self.request = request


def _split_head(head: str) -> tuple[str, list[tuple[str, str]]]:
    lines = _FOLD.sub(" ", head).split("\r\n")
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise SipError(400, f"malformed header line {line[:60]!r}")
        items.append((canonical_name(name), value.strip(" \t")))
    return lines[0], items


def parse_head(head: bytes) -> Request | Response:
    """Parse a start line and headers (no body) and validate them."""
    if not head or head[:1] in b" \t":
        raise SipError(400, "empty or indented start line")
    text = head.decode("utf-8", "surrogateescape")
    start, items = _split_head(text)
    headers = Headers(items)
    if start.startswith("SIP/"):
        m = _STATUS.match(start)
        if m is None:
            raise SipError(400, f"bad status line {start[:60]!r}")
        response = Response(headers, b"", int(m.group(1)), m.group(2))
        _validate(response)
        return response
    parts = start.split(" ")
    method = parts[0] if is_token(parts[0]) else ""
    request = Request(headers, b"", method, Uri("sip"))
    if len(parts) != 3 or not method:
        raise BadRequest(400, f"bad request line {start[:80]!r}", request)
    uri_text, version = parts[1], parts[2]
    if version != _VERSION:
        status = 505 if version.startswith("SIP/") else 400
        raise BadRequest(status, f"unsupported version {version!r}", request)
    try:
        request.uri = parse_uri(uri_text)
        if request.uri.headers is not None:
            raise SipError(400, "headers are not allowed in a Request-URI")
        _validate(request)
    except SipError as exc:
        raise BadRequest(exc.status, exc.reason, request) from None
    return request


def _validate(msg: Message) -> None:
    headers = msg.headers
    for name in _SINGLE:
        if headers.count(name) > 1:
            raise SipError(400, f"multiple {name} values")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in headers:
            raise SipError(400, f"missing {name}")
    if not msg.call_id or " " in msg.call_id:
        raise SipError(400, "bad Call-ID")
    cseq = msg.cseq
    if not msg.vias:
        raise SipError(400, "empty Via")
    msg.from_, msg.to  # noqa: B018 - parsing validates them
    msg.expires  # noqa: B018
    if isinstance(msg, Request):
        if cseq.method != msg.method:
            raise SipError(400, "CSeq method does not match the request method")
        msg.max_forwards  # noqa: B018


def content_length(headers: Headers) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    return _parse_bounded_int("Content-Length", value, 2**31)


def parse_datagram(data: bytes) -> Request | Response:
    """Parse one message from a UDP datagram (RFC 3261 §18.3).

    Octets past Content-Length are discarded (RFC 4475 §3.1.1.8); a Content-Length larger
    than what arrived is an error; without Content-Length the body runs to the end.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        _refuse_unterminated(data)
    msg = parse_head(data[:end])
    body_start = end + 4
    try:
        length = content_length(msg.headers)
    except SipError as exc:
        _reraise_for(msg, exc)
    if length is None:
        msg.body = data[body_start:]
    elif body_start + length > len(data):
        _reraise_for(msg, SipError(400, "Content-Length larger than the datagram"))
    else:
        msg.body = data[body_start : body_start + length]
    _drop_length(msg)
    return msg


def _refuse_unterminated(data: bytes) -> NoReturn:
    """A datagram whose header block never ends: the empty line after the headers must be
    there even without a body (RFC 3261 §7), so this is no message. Its complete lines
    are parsed only to address the 400 (RFC 3261 §8.2, §16.3): a request that gets as
    far as its header fields raises `BadRequest`, whatever else is wrong with it."""
    cut = data.rfind(b"\r\n")
    fault = SipError(400, "no empty line after the header fields")
    try:
        msg = parse_head(data[:cut] if cut >= 0 else data)
    except BadRequest as exc:
        raise BadRequest(fault.status, fault.reason, exc.request) from None
    _reraise_for(msg, fault)


def _drop_length(msg: Message) -> None:
    # The body is the truth once framed; serialize() writes Content-Length from it.
    if "Content-Length" in msg.headers:
        msg.headers.remove("Content-Length")


def _reraise_for(msg: Request | Response, exc: SipError) -> NoReturn:
    if isinstance(msg, Request):
        raise BadRequest(exc.status, exc.reason, msg) from None
    raise exc


class StreamFramer:
    """Splits a TCP/TLS byte stream into messages by Content-Length (RFC 3261 §18.3).

    `feed` returns complete messages and keep-alive pings in order; a ping is the CRLF
    pair of RFC 5626 §3.5.1, to be answered with a single CRLF. A framing error (no or a
    bad Content-Length, headers too large) is fatal to the connection: raise, then close.
    """

    PING = b"\r\n\r\n"

    def __init__(self, max_size: int = 65535) -> None:
        self._buffer = bytearray()
        self._max = max_size

    def feed(self, data: bytes) -> Iterator[Request | Response | bytes]:
        """Yield what `data` completes. A generator, so that the messages before a
        framing error are still handled before the error is raised."""
        self._buffer += data
        buf = self._buffer
        while buf:
            if buf.startswith(b"\r\n"):
                # CRLFs between messages: a double one is a keep-alive ping.
                if buf.startswith(self.PING):
                    del buf[:4]
                    yield self.PING
                    continue
                if len(buf) < 4 and self.PING.startswith(bytes(buf)):
                    return
                del buf[:2]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self._max:
                    raise SipError(400, "headers too large")
                return
            msg = parse_head(bytes(buf[:end]))
            try:
                length = content_length(msg.headers)
            except SipError as exc:
                _reraise_for(msg, exc)
            if length is None:
                _reraise_for(msg, SipError(400, "Content-Length is required on a stream"))
            total = end + 4 + length
            if total > self._max:
                raise SipError(413, "message too large")
            if len(buf) < total:
                return
            msg.body = bytes(buf[end + 4 : total])
            _drop_length(msg)
            del buf[:total]
            yield msg
