"""The YAML configuration file: schema, defaults and error reporting.

`load_config(path)` is the only entry point. The schema is a tree of frozen pydantic
models that forbid unknown keys, so a typo such as ``lisen:`` is an error rather than a
silently ignored setting. Errors name the file, the line and the field
(``ipbx.yaml:7: extensions[1].password: ...``): the YAML is composed into nodes first,
which remember where they started, and each pydantic error location is walked back
through that node tree to a line.

With no file the embedded default is used, with a demo tenant whose passwords are
generated once and kept in ``<data_dir>/demo-accounts.yaml``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import string
from collections.abc import Container, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ipbx.pbx.blacklist import check_pattern
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.dialplan import COUNTRIES, E164, compile_pattern
from ipbx.pbx.prompt import Prompt
from ipbx.pbx.schedule import parse_days, parse_ranges, zone
from ipbx.sip.transport.resolve import split_host_port

DEMO_ACCOUNTS_FILE = "demo-accounts.yaml"
DEMO_EXTENSIONS = (("1000", "Alice"), ("1001", "Bob"), ("1002", "Carol"), ("1003", "Dave"))

Transport = Literal["udp", "tcp", "tls", "ws", "wss"]

# RFC 3261 §19.1.2: sip: defaults to 5060 and sips: (TLS) to 5061. WebSocket listeners
# have no SIP default port (RFC 7118 rides on HTTP ports), so they must name one.
_DEFAULT_PORTS: dict[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}


_M = TypeVar("_M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, line and field."""


class _Model(BaseModel):
    # Numbers are accepted where strings are expected because users write
    # `number: 1000` unquoted.
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


class ListenAddress(_Model):
    """Where a SIP transport listens, written in the file as ``udp://host:port``."""

    transport: Transport
    host: str
    port: int = Field(ge=1, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _parse_url(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return _parse_listen_url(value)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def _parse_listen_url(url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid listen address {url!r}: {exc}") from None
    transport = parts.scheme.lower()
    if transport not in ("udp", "tcp", "tls", "ws", "wss"):
        raise ValueError(
            f"invalid listen address {url!r}: expected udp://, tcp://, tls://, ws:// or wss://"
        )
    if not parts.hostname:
        raise ValueError(f"invalid listen address {url!r}: no host")
    if parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"invalid listen address {url!r}: expected transport://host:port")
    if port is None:
        if transport not in _DEFAULT_PORTS:
            raise ValueError(f"invalid listen address {url!r}: {transport} needs a port")
        port = _DEFAULT_PORTS[transport]
    return {"transport": transport, "host": parts.hostname, "port": port}


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def _port_range(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
    if match is None:
        raise ValueError(f"expected a port range such as 20000-20999, got {value!r}")
    return (int(match[1]), int(match[2]))


def _check_port_range(value: tuple[int, int]) -> tuple[int, int]:
    first, last = value
    if not (1024 <= first < last <= 65535):
        raise ValueError(f"{first}-{last}: need 1024 <= first < last <= 65535")
    # RFC 3550 §11: RTP takes the even port and RTCP the odd one above it.
    if first % 2:
        raise ValueError(f"{first}-{last}: the first port must be even")
    return value


PortRange = Annotated[tuple[int, int], BeforeValidator(_port_range)]
Digits = Annotated[str, Field(pattern=r"^[0-9]+$")]


DigestAlgorithm = Literal["MD5", "SHA-256"]


def _md5() -> list[DigestAlgorithm]:
    return ["MD5"]


class SipConfig(_Model):
    """The SIP server: listeners, digest realm and registrar limits (RFC 3261 §10.3)."""

    listen: list[ListenAddress] = Field(
        default_factory=lambda: [
            ListenAddress(transport="udp", host="0.0.0.0", port=5060),
            ListenAddress(transport="tcp", host="0.0.0.0", port=5060),
            ListenAddress(transport="tls", host="0.0.0.0", port=5061),
        ]
    )
    realm: str = Field(default="ipbx", min_length=1)
    domain: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    min_expires: int = Field(default=60, ge=1)
    max_expires: int = Field(default=3600, ge=1)
    default_expires: int = Field(default=3600, ge=1)
    qualify_interval: float = Field(default=30.0, gt=0)
    # A TCP/TLS connection idle this long is closed; the default outlasts the longest
    # registration, so a phone's refreshes keep its connection (and reachability).
    tcp_idle_timeout: float = Field(default=3660.0, gt=0)
    # A source failing digest authentication `ban_failures` times within `ban_window`
    # seconds is ignored for `ban_seconds` (0 disables); `trusted` networks never are.
    ban_failures: int = Field(default=10, ge=0)
    ban_window: float = Field(default=60.0, gt=0)
    ban_seconds: float = Field(default=600.0, gt=0)
    trusted: list[str] = Field(default_factory=list)
    # RFC 3261 T1, the round-trip estimate all SIP timers derive from (Asterisk's
    # timer_t1); a transaction with no answer fails after 64*T1.
    timer_t1: float = Field(default=0.5, ge=0.01, le=5.0)
    nonce_lifetime: float = Field(default=300.0, gt=0)
    # Challenges offered, most preferred first (RFC 7616 §3.7). MD5 alone by default, as
    # Asterisk does: some phones (baresip 1.0, older desk phones) fail a REGISTER outright
    # when they meet a SHA-256 challenge instead of skipping it.
    digest_algorithms: list[DigestAlgorithm] = Field(default_factory=_md5, min_length=1)
    max_message_size: int = Field(default=65535, ge=1500)
    user_agent: str = "ipbx"

    @field_validator("trusted")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @model_validator(mode="after")
    def _check_expires(self) -> SipConfig:
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need min_expires <= default_expires <= max_expires")
        return self


CodecName = Literal["opus", "g722", "pcmu", "pcma", "g729"]


class MediaConfig(_Model):
    """Where RTP is sent from and which ports it may use."""

    address: str = "127.0.0.1"
    public_address: str | None = None
    rtp_ports: PortRange = (20000, 29999)
    # Recorded calls: one WAV channel per side (caller left), or both mixed into one.
    recording_format: Literal["stereo", "mixed"] = "stereo"
    # Codecs in order of preference: what SDP offer/answer picks first where ipbx
    # chooses, and what it transcodes to (G.729 only where libbcg729 is installed).
    codecs: list[CodecName] = Field(default_factory=lambda: list(get_args(CodecName)), min_length=1)

    @field_validator("codecs", mode="before")
    @classmethod
    def _lower_codecs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v.lower() if isinstance(v, str) else v for v in value]
        return value

    @field_validator("address", "public_address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        return None if value is None else _ip_address(value)

    @field_validator("rtp_ports")
    @classmethod
    def _check_rtp_ports(cls, value: tuple[int, int]) -> tuple[int, int]:
        return _check_port_range(value)


def _destination(value: Any) -> Any:
    if isinstance(value, Destination):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a destination such as extension:1001 or group:sales")
    return Destination.parse(value)


def _forward_target(value: Any) -> Any:
    """A forwarding target: a destination, or a bare outside number (``+15551234567``).

    Bare digits equal to an extension's number were already turned into
    ``extension:N`` by Config._forward_to_extensions, which knows the extensions.
    """
    if isinstance(value, str) and re.fullmatch(r"\+?[0-9]{1,15}", value.strip()):
        return Destination(Kind.NUMBER, value.strip())
    return _destination(value)


def _prompt(value: Any) -> Any:
    if isinstance(value, Prompt):
        return value
    if not isinstance(value, str):
        raise ValueError("expected text to speak or file:PATH")
    return Prompt.parse(value)


# Written, stored and shown as strings; the JSON Schema (the API's document) says so.
_AS_TEXT = PlainSerializer(str, return_type=str)
DestinationField = Annotated[
    Destination,
    BeforeValidator(_destination),
    _AS_TEXT,
    WithJsonSchema({"type": "string", "description": "kind:target, as group:sales"}),
]
ForwardTarget = Annotated[
    Destination,
    BeforeValidator(_forward_target),
    _AS_TEXT,
    WithJsonSchema({"type": "string", "description": "a destination or an outside number"}),
]
# A greeting or message: text spoken by text-to-speech, or file:PATH (pbx/prompt.py).
PromptField = Annotated[
    Prompt,
    BeforeValidator(_prompt),
    _AS_TEXT,
    WithJsonSchema({"type": "string", "description": "text to speak, or file:PATH"}),
]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
_HANGUP = Destination(Kind.HANGUP)


class VoicemailConfig(_Model):
    """An extension's mailbox: the PIN its owner dials in with, and where to mail messages."""

    pin: Annotated[str, Field(pattern=r"^[0-9]{1,16}$")] = Field(repr=False)
    email: Email | None = None


class ForwardConfig(_Model):
    """Where an extension's calls go instead: always, when busy (or DND), when nobody
    answers within `no_answer_seconds`, or when no phone is registered."""

    always: ForwardTarget | None = None
    busy: ForwardTarget | None = None
    no_answer: ForwardTarget | None = None
    unregistered: ForwardTarget | None = None
    no_answer_seconds: int = Field(default=20, ge=1, le=600)

    def to_extensions(self, numbers: Container[str]) -> ForwardConfig:
        """Bare digits that are one of `numbers` (the extensions) mean that extension,
        as Config._forward_to_extensions reads them in a file."""
        changed = {
            key: Destination(Kind.EXTENSION, target.target)
            for key, target in self.targets()
            if target.kind is Kind.NUMBER and target.target in numbers
        }
        return self.model_copy(update=changed) if changed else self

    def targets(self) -> Iterator[tuple[str, Destination]]:
        for key in ("always", "busy", "no_answer", "unregistered"):
            target = getattr(self, key)
            if target is not None:
                yield key, target


class Extension(_Model):
    """A phone account; its number is the digest username and the AOR."""

    number: Digits
    name: str = ""
    # repr=False: configs get logged, passwords must not be. Required in a file
    # (Config._check_passwords); the database keeps only digests of it.
    password: str | None = Field(default=None, min_length=4, repr=False)
    # Record every answered call to or from this extension (under data_dir/recordings).
    record: Literal["always", "never"] = "never"
    # SRTP (SDES, RFC 4568): "auto" answers it when the phone offers it and offers it to
    # a phone registered over TLS; "required" refuses calls from the phone that do not
    # offer it (488) and offers it to the phone on any transport.
    srtp: Literal["auto", "required"] = "auto"
    # Which outbound routes this extension may use (emergency numbers always work).
    permission: Literal["internal", "national", "international"] = "national"
    # Issue 5: personal call handling (docs/features.md).
    voicemail: VoicemailConfig | None = None
    forward: ForwardConfig = Field(default_factory=ForwardConfig)
    dnd: bool = False
    # The number presented as this extension's caller ID (outside calls, and inside).
    caller_id: Annotated[str, Field(pattern=r"^\+?[0-9]{1,15}$")] | None = None


def _host_port(value: str) -> str:
    split_host_port(value)
    return value


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _peer(value: str) -> str:
    """An `allow_from` entry: a network in CIDR notation, or HOST[:PORT]."""
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return value
    return _host_port(value)


def _pattern(value: str) -> str:
    compile_pattern(value)
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Codec = Annotated[
    Literal["pcmu", "pcma", "g722", "g729", "opus"],
    BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),
]


class TrunkConfig(_Model):
    """A SIP trunk to a provider or gateway (docs/trunks.md).

    Registration-based when `register` is true (ipbx registers to `host` with
    `username`/`password`), IP-based otherwise: calls from `allow_from` and the host's
    addresses are accepted as coming from this trunk.
    """

    # `register` is the key in the file; as an attribute it would shadow BaseModel.register.
    model_config = ConfigDict(serialize_by_alias=True)

    name: Name
    host: Annotated[list[HostPort], BeforeValidator(_one_or_more), Field(min_length=1)]
    transport: Literal["udp", "tcp", "tls"] = "udp"
    # The SIP domain for Request-URI, From and To (default: the first host, port dropped).
    domain: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    registration: bool = Field(default=False, alias="register")
    expires: int = Field(default=3600, ge=30, le=86400)
    max_channels: int | None = Field(default=None, ge=1)
    allow_from: list[Annotated[str, AfterValidator(_peer)]] = Field(default_factory=list)
    outbound_proxy: HostPort | None = None
    # Codecs offered on this trunk, preferred first; empty means all of ours.
    codecs: list[Codec] = Field(default_factory=list)
    # Caller ID: a fixed From user (some providers insist on the account name there),
    # and whether the caller ID also goes out as P-Asserted-Identity (RFC 3325) or
    # Remote-Party-ID (draft-ietf-sip-privacy-04, still expected by older gateways).
    from_user: str | None = None
    from_domain: str | None = None
    pai: bool = False
    rpid: bool = False
    # OPTIONS health check every this many seconds (0: none, the trunk counts as up).
    options_interval: float = Field(default=60.0, ge=0)
    # After a failed registration: first retry delay, doubled per failure up to retry_max.
    retry_interval: float = Field(default=5.0, gt=0)
    retry_max: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _check_credentials(self) -> TrunkConfig:
        if self.registration and not (self.username and self.password):
            raise ValueError("register: true needs username and password")
        return self


class NumberConfig(_Model):
    """A number (DID) of a tenant, in E.164, and where its calls go."""

    number: str
    destination: DestinationField
    tenant: Name = "default"

    @field_validator("number")
    @classmethod
    def _check_number(cls, value: str) -> str:
        if not (E164.fullmatch(value) or re.fullmatch(r"[0-9]{1,15}", value)):
            raise ValueError(f"{value!r}: expected E.164 (+ and up to 15 digits) or short digits")
        return value


class OutboundRouteConfig(_Model):
    """Dialled numbers matching `pattern` leave through `trunks`, first available first."""

    name: Name
    pattern: Annotated[str, AfterValidator(_pattern)]
    strip: int = Field(default=0, ge=0)
    prepend: Annotated[str, Field(pattern=r"^\+?[0-9*#]*$")] = ""
    trunks: list[Name] = Field(min_length=1)
    caller_id: str | None = None
    permission: Literal["internal", "national", "international", "emergency"] = "national"


# --- issue 5: PBX features (docs/features.md) ---------------------------------------------


class SmtpConfig(_Model):
    """The mail server voicemail-to-email goes through (STARTTLS and login optional)."""

    # `from` is the key in the file; it is a Python keyword, so the attribute is `sender`.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: Email = Field(alias="from")
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    starttls: bool = False
    # Check the server's certificate on STARTTLS; false accepts a self-signed one (a
    # local relay such as Postfix with its default snakeoil certificate).
    tls_verify: bool = True
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_login(self) -> SmtpConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class GroupConfig(_Model):
    """A ring group (hunt group): its members ring all at once (ringall), one after
    another in order (sequential), one after another starting after the member who took
    the last call (roundrobin) or in random order (random). `ring_seconds` is how long
    each member rings (the whole group, for ringall) before the call goes to `fallback`."""

    name: Name
    strategy: Literal["ringall", "sequential", "roundrobin", "random"] = "ringall"
    members: list[Digits] = Field(min_length=1)
    ring_seconds: int = Field(default=20, ge=1, le=600)
    fallback: DestinationField = _HANGUP

    @field_validator("members")
    @classmethod
    def _unique_members(cls, value: list[str]) -> list[str]:
        for index, member in enumerate(value):
            if member in value[:index]:
                raise PydanticCustomError(
                    "duplicate_member",
                    "{member} is listed twice",
                    {"member": member, "at": (index,)},
                )
        return value


class IvrConfig(_Model):
    """An IVR menu (auto-attendant): the greeting, then a digit picks an option; with
    `direct_dial` the caller may also dial an extension's number. No input within
    `timeout_seconds`, or a wrong one, replays the greeting up to `retries` times and
    then goes to `timeout_destination` or `invalid_destination`."""

    name: Name
    greeting: PromptField
    options: dict[Annotated[str, Field(pattern=r"^[0-9*#]$")], DestinationField] = Field(
        default_factory=dict
    )
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=10)
    timeout_destination: DestinationField = _HANGUP
    invalid_destination: DestinationField = _HANGUP
    direct_dial: bool = False


def _check_days(value: str) -> str:
    parse_days(value)
    return value


def _check_ranges(value: str) -> str:
    parse_ranges(value)
    return value


def _check_zone(value: str) -> str:
    zone(value)
    return value


class ScheduleConfig(_Model):
    """Office hours: `open` inside `hours` (weekday ranges on the `timezone` wall clock),
    `closed` outside them, and `holiday` (or `closed`) on the `holidays` dates."""

    name: Name
    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"
    hours: dict[
        Annotated[str, AfterValidator(_check_days)], Annotated[str, AfterValidator(_check_ranges)]
    ] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)
    open: DestinationField
    closed: DestinationField
    holiday: DestinationField | None = None


class AnnouncementConfig(_Model):
    """A message played to the caller, who is then hung up on: `text` (spoken) or `file`."""

    name: Name
    text: str | None = Field(default=None, min_length=1)
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AnnouncementConfig:
        if (self.text is None) == (self.file is None):
            raise ValueError("give either text or file")
        if self.file is not None:
            Prompt.from_file(self.file)
        return self

    @property
    def prompt(self) -> Prompt:
        if self.file is not None:
            return Prompt.from_file(self.file)
        assert self.text is not None
        return Prompt(text=self.text)


class BlacklistConfig(_Model):
    """Callers matching `pattern` (``*`` any digits, ``?`` one digit, or ``anonymous``)
    hear `message` and are hung up on; with `extension`, only on calls to it."""

    pattern: Annotated[str, AfterValidator(check_pattern)]
    message: PromptField | None = None
    extension: Digits | None = None


# --- issue 6: the API, live events and webhooks (docs/api.md) -----------------------------


class CrmConfig(_Model):
    """Caller lookup in a CRM (pbx/crm.py): `url` with `{number}` in it, answering JSON
    `{"name": ...}`."""

    url: str = Field(pattern=r"^https?://\S+$")
    timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    cache_seconds: float = Field(default=300.0, ge=0)


class ApiConfig(_Model):
    """The REST API and WebSocket event feed: where its HTTP server listens
    (``HOST:PORT``; loopback by default, so that nothing is exposed unasked)."""

    listen: str = "127.0.0.1:8080"
    enabled: bool = True
    # Delivered and failed webhook deliveries older than this are deleted from the
    # outbox (pending ones never are), so the delivery log stays bounded.
    delivery_retention_days: float = Field(default=30.0, gt=0, le=36500)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, port = split_host_port(value)
        if port is None:
            raise ValueError(f"{value!r}: expected HOST:PORT")
        if not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
            raise ValueError(f"{value!r}: {host!r} is not a host name or address")
        return value

    @property
    def host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        port = split_host_port(self.listen)[1]
        assert port is not None  # checked by the validator
        return port


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r}: expected an http:// or https:// URL")
    return value


EventPattern = Annotated[str, Field(pattern=r"^[a-z0-9_.*?]+$")]


class WebhookConfig(_Model):
    """A URL that gets the events of one tenant whose types match `events` (``call.*``,
    ``voicemail.new``, ``*``) as signed JSON POSTs, through a persisted outbox.

    A failed delivery is retried after `retry_initial` seconds, doubling up to
    `retry_max`, `max_attempts` times in all; later events to the same URL wait for it,
    so the receiver sees them in the order they happened."""

    url: Annotated[str, AfterValidator(_http_url)]
    events: list[EventPattern] = Field(min_length=1)
    # The HMAC-SHA256 key of the X-Ipbx-Signature header, shared with the receiver.
    secret: str = Field(min_length=16, repr=False)
    tenant: Name = "default"
    timeout: float = Field(default=10.0, gt=0, le=300)
    retry_initial: float = Field(default=1.0, gt=0)
    retry_max: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=30, ge=1)


class Config(_Model):
    """The whole configuration file."""

    # validate_default: the default is relative too and must be anchored at start-up.
    data_dir: Path = Field(default=Path("data"), validate_default=True)
    database_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    sip: SipConfig = Field(default_factory=SipConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    extensions: list[Extension] = Field(default_factory=list)
    echo_test: Digits = "9196"
    # ISO 3166 code whose dialling rules normalise numbers to E.164 (US, GB, UA, DE, RU ...).
    country: str | None = None
    trunks: list[TrunkConfig] = Field(default_factory=list)
    numbers: list[NumberConfig] = Field(default_factory=list)
    outbound_routes: list[OutboundRouteConfig] = Field(default_factory=list)
    # Issue 5: PBX features (docs/features.md).
    smtp: SmtpConfig | None = None
    groups: list[GroupConfig] = Field(default_factory=list)
    ivrs: list[IvrConfig] = Field(default_factory=list)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    announcements: list[AnnouncementConfig] = Field(default_factory=list)
    blacklist: list[BlacklistConfig] = Field(default_factory=list)
    # Issue 6: the API, live events and webhooks (docs/api.md).
    api: ApiConfig = Field(default_factory=ApiConfig)
    crm: CrmConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("expected a sqlite:// or postgresql:// URL")
        return value

    @field_validator("extensions")
    @classmethod
    def _unique_numbers(cls, value: list[Extension]) -> list[Extension]:
        first_index: dict[str, int] = {}
        for index, extension in enumerate(value):
            if extension.number in first_index:
                # `at` lets the error formatter point at the duplicate item's line
                # instead of the `extensions:` key.
                raise PydanticCustomError(
                    "duplicate_number",
                    "number {number} is already used by extensions[{first}]",
                    {
                        "number": extension.number,
                        "first": first_index[extension.number],
                        "at": (index, "number"),
                    },
                )
            first_index[extension.number] = index
        return value

    @field_validator("country")
    @classmethod
    def _check_country(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in COUNTRIES:
            raise ValueError(f"{value!r}: expected one of {', '.join(sorted(COUNTRIES))}")
        return None if value is None else value.upper()

    @field_validator(
        "trunks", "outbound_routes", "numbers", "groups", "ivrs", "schedules", "announcements"
    )
    @classmethod
    def _unique_keys(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        assert info.field_name is not None
        _unique(value, "number" if info.field_name == "numbers" else "name", info.field_name)
        return value

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, value: list[WebhookConfig]) -> list[WebhookConfig]:
        # The outbox keys deliveries by URL: one subscription per URL and tenant.
        seen: set[tuple[str, str]] = set()
        for index, webhook in enumerate(value):
            if (webhook.tenant, webhook.url) in seen:
                raise PydanticCustomError(
                    "duplicate_webhook",
                    "{url} is already subscribed for tenant {tenant}",
                    {"url": webhook.url, "tenant": webhook.tenant, "at": (index, "url")},
                )
            seen.add((webhook.tenant, webhook.url))
        return value

    @model_validator(mode="after")
    def _check_route_trunks(self) -> Config:
        known = {trunk.name for trunk in self.trunks}
        for index, route in enumerate(self.outbound_routes):
            for position, name in enumerate(route.trunks):
                if name not in known:
                    raise PydanticCustomError(
                        "unknown_trunk",
                        "no trunk named {name}",
                        {"name": name, "at": ("outbound_routes", index, "trunks", position)},
                    )
        return self

    @model_validator(mode="before")
    @classmethod
    def _forward_to_extensions(cls, data: Any) -> Any:
        """A forwarding target written as bare digits that are one of the extensions
        means that extension (``busy: "1002"``); any other number goes out by trunk."""
        if not isinstance(data, dict) or not isinstance(data.get("extensions"), list):
            return data
        extensions = data["extensions"]
        numbers = {str(e.get("number")) for e in extensions if isinstance(e, dict)}
        rewritten = []
        for extension in extensions:
            forward = extension.get("forward") if isinstance(extension, dict) else None
            if isinstance(forward, dict):
                forward = {
                    key: f"extension:{value}"
                    if key in _FORWARD_KEYS and str(value).strip() in numbers
                    else value
                    for key, value in forward.items()
                }
                extension = {**extension, "forward": forward}
            rewritten.append(extension)
        return {**data, "extensions": rewritten}

    def destinations(self) -> Iterator[tuple[tuple[str | int, ...], Destination]]:
        """Every destination in the file, with where it is written."""
        for i, extension in enumerate(self.extensions):
            for key, target in extension.forward.targets():
                yield ("extensions", i, "forward", key), target
        for i, group in enumerate(self.groups):
            yield ("groups", i, "fallback"), group.fallback
        for i, ivr in enumerate(self.ivrs):
            for digit, target in ivr.options.items():
                yield ("ivrs", i, "options", digit), target
            yield ("ivrs", i, "timeout_destination"), ivr.timeout_destination
            yield ("ivrs", i, "invalid_destination"), ivr.invalid_destination
        for i, schedule in enumerate(self.schedules):
            for key in ("open", "closed", "holiday"):
                target = getattr(schedule, key)
                if target is not None:
                    yield ("schedules", i, key), target
        for i, number in enumerate(self.numbers):
            yield ("numbers", i, "destination"), number.destination

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        """Destinations, group members and blacklist extensions point at things that
        exist, and a mailbox that mails its messages has a mail server to do it with."""
        extensions = {e.number: e for e in self.extensions}
        named: dict[Kind, set[str]] = {
            Kind.GROUP: {g.name for g in self.groups},
            Kind.IVR: {m.name for m in self.ivrs},
            Kind.SCHEDULE: {s.name for s in self.schedules},
            Kind.ANNOUNCEMENT: {a.name for a in self.announcements},
        }
        for at, target in self.destinations():
            problem = None
            if target.kind is Kind.EXTENSION and target.target not in extensions:
                problem = f"{target}: there is no extension {target.target}"
            elif target.kind is Kind.VOICEMAIL:
                owner = extensions.get(target.target)
                if owner is None:
                    problem = f"{target}: there is no extension {target.target}"
                elif owner.voicemail is None:
                    problem = f"{target}: extension {target.target} has no voicemail"
            elif target.kind in named and target.target not in named[target.kind]:
                problem = f"{target}: there is no {target.kind.value} named {target.target}"
            if problem is not None:
                raise _config_error("unknown_destination", problem, at)
        for i, group in enumerate(self.groups):
            for j, member in enumerate(group.members):
                if member not in extensions:
                    raise _config_error(
                        "unknown_member",
                        f"there is no extension {member}",
                        ("groups", i, "members", j),
                    )
        for i, entry in enumerate(self.blacklist):
            if entry.extension is not None and entry.extension not in extensions:
                raise _config_error(
                    "unknown_extension",
                    f"there is no extension {entry.extension}",
                    ("blacklist", i, "extension"),
                )
        if self.smtp is None:
            for i, extension in enumerate(self.extensions):
                if extension.voicemail is not None and extension.voicemail.email is not None:
                    raise _config_error(
                        "no_smtp",
                        "voicemail to email needs the smtp settings",
                        ("extensions", i, "voicemail", "email"),
                    )
        return self

    @model_validator(mode="after")
    def _check_passwords(self, info: ValidationInfo) -> Config:
        """An extension in a file has its password. (The database keeps provisioned
        extensions' passwords only as digests: validated with the context
        ``{"provisioned": True}``, their items come without.)"""
        if not (info.context or {}).get("provisioned"):
            for i, extension in enumerate(self.extensions):
                if extension.password is None:
                    raise _config_error("missing", "Field required", ("extensions", i, "password"))
        return self

    @model_validator(mode="after")
    def _check_loops(self) -> Config:
        """No call may go round in circles without ringing anyone: a schedule's
        destinations and an extension's forwarding always, on busy and when unregistered
        are followed at once, so a cycle through them would never end. (Forwarding on no
        answer, group fallbacks and menus ring someone or wait for the caller first.)"""
        edges: dict[str, list[tuple[tuple[str | int, ...], Destination]]] = {}
        for at, target in self.destinations():
            if at[0] == "schedules":
                source = f"schedule:{self.schedules[int(at[1])].name}"
            elif at[0] == "extensions" and at[3] in ("always", "busy", "unregistered"):
                source = f"extension:{self.extensions[int(at[1])].number}"
            else:
                continue
            edges.setdefault(source, []).append((at, target))
        done: set[str] = set()

        def visit(node: str, path: list[str]) -> None:
            for at, target in edges.get(node, ()):
                name = str(target)
                if name in path:
                    cycle = " -> ".join([*path[path.index(name) :], name])
                    raise _config_error("destination_loop", f"{name}: loop {cycle}", at)
                if name not in done:
                    visit(name, [*path, name])
            done.add(node)

        for start in list(edges):
            if start not in done:
                visit(start, [start])
        return self

    @property
    def store_url(self) -> str:
        """The database URL to open: `database_url`, or SQLite inside `data_dir`."""
        return self.database_url or f"sqlite:///{self.data_dir / 'ipbx.db'}"


_FORWARD_KEYS = frozenset({"always", "busy", "no_answer", "unregistered"})


def _config_error(kind: str, message: str, at: tuple[str | int, ...]) -> PydanticCustomError:
    """An error of a whole-file check that points at the field `at` (and its line)."""
    return PydanticCustomError(kind, "{message}", {"message": message, "at": at})


def _unique(items: list[Any], key: str, field: str) -> None:
    """Refuse the second item with an already-seen `key`, pointing at its line."""
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        value = getattr(item, key)
        if value in first_index:
            raise PydanticCustomError(
                f"duplicate_{key}",
                "{key} {value} is already used by {field}[{first}]",
                {
                    "key": key,
                    "value": value,
                    "field": field,
                    "first": first_index[value],
                    "at": (index, key),
                },
            )
        first_index[value] = index


class _DemoAccounts(_Model):
    extensions: list[Extension]


def load_config(path: Path | None) -> Config:
    """Load and validate the configuration file, or the embedded default when None."""
    if path is not None:
        return _validate(Config, _read_yaml(path), path)
    config = Config()
    return config.model_copy(update={"extensions": _demo_extensions(config.data_dir)})


def _demo_extensions(data_dir: Path) -> list[Extension]:
    """The demo tenant's extensions, with passwords generated on first start.

    The passwords are random so that a demo left running on a public address is not an
    open relay; they are kept so that phones provisioned once keep working.
    """
    path = data_dir / DEMO_ACCOUNTS_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once must not both write passwords.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _validate(_DemoAccounts, _read_yaml(path), path).extensions
    extensions = [
        Extension(number=number, name=name, password=_random_password())
        for number, name in DEMO_EXTENSIONS
    ]
    document = {"extensions": [extension.model_dump() for extension in extensions]}
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write("# Demo tenant accounts generated by ipbx on first start.\n")
        file.write("# Delete this file to generate new passwords.\n")
        yaml.safe_dump(document, file, sort_keys=False)
    return extensions


def _random_password() -> str:
    # Letters and digits only: these get typed on desk-phone keypads.
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


class _Loader(yaml.SafeLoader):
    """SafeLoader whose integers are YAML 1.2 decimals without leading zeros.

    YAML 1.1 reads ``0100`` as octal 64 and ``1:30`` as sexagesimal 90, which would turn
    an extension number into a different one. Here those stay strings.
    """


_INT_TAG = "tag:yaml.org,2002:int"
# Dates stay strings too: pydantic reads them where a date is expected, and refuses a
# 2026-13-01 with its line, where PyYAML's own date constructor would raise unmarked.
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file into Python data plus the node tree that knows line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, None
        _check_duplicate_keys(node, path)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{path}:{line} {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    finally:
        loader.dispose()


def _check_duplicate_keys(node: yaml.Node, path: Path) -> None:
    # PyYAML keeps the last of two equal keys silently; a repeated key is almost always a
    # copy-paste mistake, so it is reported like any other error.
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    line = key.start_mark.line + 1
                    raise ConfigError(f"{path}:{line}: {key.value}: duplicate key")
                seen.add(key.value)
            _check_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, path)


def _validate(model: type[_M], parsed: tuple[Any, yaml.Node | None], path: Path) -> _M:
    data, root = parsed
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = sorted(
            (_describe(error, root) for error in exc.errors(include_url=False)),
            key=lambda issue: issue[0] or 0,
        )
        raise ConfigError(
            "\n".join(
                f"{path}:{line}: {text}" if line else f"{path}: {text}" for line, text in issues
            )
        ) from None


def _describe(error: Any, root: yaml.Node | None) -> tuple[int | None, str]:
    """The line a pydantic error points at, and its text as ``field: message``."""
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"]) + tuple(ctx.get("at", ()))
    message = str(ctx["error"]) if error["type"] == "value_error" else error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    field = _field_path(loc)
    return _line_of(root, loc), f"{field}: {message}" if field else message


def _field_path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic's marker for an error in a mapping's key, named already
        else:
            text += f".{part}" if text else part
    return text


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node that `loc` reaches in the YAML tree.

    A missing field has no node of its own, so the enclosing mapping's line is used.
    """
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    line = key.start_mark.line + 1
                    child = value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
