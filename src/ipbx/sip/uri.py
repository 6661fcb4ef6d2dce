"""SIP URIs, name-addr values, Via values and the parameter lists they share.

Everything here parses text that the message layer has already unfolded (RFC 3261 §7.3.1:
folded lines become a single SP), so whitespace inside a value is plain SP/HT. Parsing is
strict where ambiguity would change meaning (an addr-spec holding '?' outside <>, an
unterminated quoted string, an empty parameter in a Via) and liberal where RFC 4475 lets a
receiver be (spaces around '=', ';' and '/', spaces inside <>).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from ipbx.sip.errors import SipError

# RFC 3261 §25.1 token characters; a method or parameter name is a token.
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_BAD_HOST = re.compile(r"[ \t<>\"']")
_BAD_URI = re.compile(r"[ \t\r\n<>]")

Params = dict[str, str | None]


def is_token(text: str) -> bool:
    return _TOKEN.match(text) is not None


_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def quoted_string(text: str) -> str:
    """`text` as a quoted-string (RFC 3261 §25.1): in quotes, '"' and '\\' escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def display_name(text: str) -> str:
    """`text` written as a display-name: as it is when it is words of token
    characters, else a quoted-string (RFC 3261 §25.1)."""
    words = text.split()
    return text if words and all(is_token(word) for word in words) else quoted_string(text)


# A quoted string with its quoted-pairs, or an <...> section (to the end if unclosed).
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_QUOTED_OR_ANGLED = re.compile(r'"(?:[^"\\]|\\.)*"|<[^>]*(?:>|$)', re.S)


def _mask(pattern: re.Pattern[str], text: str) -> str:
    """`text` with every match of `pattern` blanked out (same length), so separators
    found in the result are the ones outside quotes; an unterminated quoted string is
    refused (RFC 4475 §3.1.2.6)."""
    masked = pattern.sub(lambda m: " " * len(m.group()), text)
    if '"' in masked:
        raise SipError(400, "unterminated quoted string")
    return masked


def split_quoted(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quoted strings and <...>."""
    if '"' not in text and "<" not in text:
        return text.split(sep)
    masked = _mask(_QUOTED_OR_ANGLED, text)
    parts: list[str] = []
    start = 0
    at = masked.find(sep)
    while at >= 0:
        parts.append(text[start:at])
        start = at + 1
        at = masked.find(sep, start)
    parts.append(text[start:])
    return parts


def parse_params(text: str, *, strict: bool) -> Params:
    """Parse `;name=value;flag` (the leading ';' already removed from the first one).

    With strict=True an empty parameter (as in `;;`) is an error (RFC 4475 §3.1.2.1).
    """
    params: Params = {}
    if not text.strip():
        if strict and text != "":
            raise SipError(400, "empty parameter")
        return params
    for raw in split_quoted(text, ";"):
        item = raw.strip(" \t")
        if not item:
            if strict:
                raise SipError(400, "empty parameter")
            continue
        name, eq, value = item.partition("=")
        name = name.strip(" \t")
        if not is_token(name):
            raise SipError(400, f"bad parameter name {name!r}")
        params[name.lower()] = value.strip(" \t") if eq else None
    return params


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unescape(text: str) -> str:
    """%-decode (RFC 3261 §19.1.2); an invalid escape such as '%Z4' is kept literally."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Uri:
    """A URI. sip/sips URIs are split into their parts; any other scheme stays opaque."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: str | None = None
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        return self.opaque is None

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    def host_port(self, default_port: int = 5060) -> tuple[str, int]:
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else default_port

    def key(self) -> tuple[object, ...]:
        """Comparison key after RFC 3261 §19.1.4: user and password case-sensitive after
        unescaping, host and scheme case-insensitive, parameters unordered."""
        if self.opaque is not None:
            return (self.scheme.lower(), self.opaque)
        return (
            self.scheme.lower(),
            unescape(self.user) if self.user is not None else None,
            unescape(self.password) if self.password is not None else None,
            self.host.lower(),
            self.port,
            tuple(sorted((k, unescape(v).lower() if v else v) for k, v in self.params.items())),
            self.headers,
        )

    def with_params(self, **params: str | None) -> Uri:
        merged = dict(self.params)
        merged.update(params)
        return Uri(
            self.scheme,
            self.user,
            self.password,
            self.host,
            self.port,
            merged,
            self.headers,
            self.opaque,
        )

    def without_params(self) -> Uri:
        return Uri(self.scheme, self.user, self.password, self.host, self.port)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        out.append(format_params(self.params))
        if self.headers is not None:
            out += ["?", self.headers]
        return "".join(out)


def _parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipError(400, f"bad IPv6 reference {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipError(400, f"bad host {text!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or _BAD_HOST.search(host):
        raise SipError(400, f"bad host {text!r}")
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
            raise SipError(400, f"bad port {port_text!r}")
        return host, int(port_text)
    return host, None


def parse_uri(text: str) -> Uri:
    """Parse a URI with no surrounding whitespace (RFC 3261 §19.1, §25.1)."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.match(scheme) or not rest or _BAD_URI.search(text):
        raise SipError(400, f"bad URI {text!r}")
    lscheme = scheme.lower()
    if lscheme not in ("sip", "sips"):
        return Uri(scheme=lscheme, opaque=rest)
    headers: str | None = None
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        password = pw if pcolon else None
        if not user:
            raise SipError(400, f"empty user in URI {text!r}")
    rest, qmark, hdrs = rest.partition("?")
    if qmark:
        headers = hdrs
    hostport, _, param_text = rest.partition(";")
    host, port = _parse_hostport(hostport)
    params = parse_params(param_text, strict=False)
    return Uri(lscheme, user, password, host, port, params, headers)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """The value of From, To, Contact, Route, Record-Route and the like (RFC 3261 §20)."""

    uri: Uri
    display: str | None = None
    params: Params = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def name(self) -> str | None:
        """The display name as text: a quoted-string without its quotes and with its
        quoted-pairs resolved (RFC 3261 §25.1); None without one."""
        if not self.display:
            return None
        if self.display.startswith('"'):
            return _QUOTED_PAIR.sub(r"\1", self.display[1:-1])
        return self.display

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display, {**self.params, "tag": tag})

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse `"Display" <uri>;p=v`, `Display<uri>` or an addr-spec `uri;p=v`.

    In the addr-spec form, parameters belong to the header, not to the URI, and a URI
    holding '?' is ambiguous, hence refused (RFC 3261 §20, RFC 4475 §3.1.2.13/§3.3.12).
    """
    value = text.strip(" \t")
    lt = _find_angle(value)
    if lt < 0:
        uri_text, _, param_text = value.partition(";")
        uri_text = uri_text.strip(" \t")
        if "?" in uri_text or "," in uri_text:
            raise SipError(400, f"URI with '?' or ',' must be enclosed in <>: {value!r}")
        return NameAddr(parse_uri(uri_text), None, parse_params(param_text, strict=True))
    display_text = value[:lt].strip(" \t")
    gt = value.find(">", lt)
    if gt < 0:
        raise SipError(400, f"missing '>' in {value!r}")
    display: str | None = None
    if display_text:
        if display_text.startswith('"'):
            if len(display_text) < 2 or not display_text.endswith('"'):
                raise SipError(400, f"bad display name {display_text!r}")
        elif not all(is_token(word) for word in display_text.split()):
            raise SipError(400, f"display name needs quotes: {display_text!r}")
        display = display_text
    # RFC 4475 §3.1.2.14 allows tolerating spaces just inside the brackets.
    uri = parse_uri(value[lt + 1 : gt].strip(" \t"))
    rest = value[gt + 1 :].strip(" \t")
    if rest and not rest.startswith(";"):
        raise SipError(400, f"junk after '>' in {value!r}")
    return NameAddr(uri, display, parse_params(rest[1:], strict=True))


def _find_angle(value: str) -> int:
    if '"' not in value:
        return value.find("<")
    return _mask(_QUOTED, value).find("<")


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42, §18.2.1; rport from RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


_VIA_PROTOCOL = re.compile(r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(.*)\Z", re.S)


def parse_via(text: str) -> Via:
    m = _VIA_PROTOCOL.match(text)
    if m is None:
        raise SipError(400, f"bad Via {text.strip()!r}")
    transport, rest = m.group(1).upper(), m.group(2)
    sent_by, _, param_text = rest.partition(";")
    host, port = _parse_hostport(sent_by.strip(" \t"))
    return Via(transport, host, port, parse_params(param_text, strict=True))


def parse_via_list(text: str) -> list[Via]:
    return [parse_via(part) for part in split_quoted(text, ",")]
