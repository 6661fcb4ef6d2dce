"""The YAML configuration file: the whole file's schema, defaults and error reporting.

`load_config(path)` is the only entry point. Each feature's part of the file is a model
of its own module (pbx/schema.py); `Config` composes them with the server's own settings
(SIP, media, API) and checks what spans features: that destinations point at something
and go round in no loop. The models are frozen and forbid unknown keys, so a typo such
as ``lisen:`` is an error rather than a silently ignored setting. Errors name the file,
the line and the field (``ipbx.yaml:7: extensions[1].password: ...``; configfile.py
reads the YAML and places the errors).

With no file the embedded default is used, with a demo tenant whose passwords are
generated once and kept in ``<data_dir>/demo-accounts.yaml``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ipbx.configfile import read_yaml, validate
from ipbx.pbx.apps.announcement_config import AnnouncementConfig
from ipbx.pbx.apps.group_config import GroupConfig
from ipbx.pbx.apps.ivr_config import IvrConfig
from ipbx.pbx.blacklist import BlacklistConfig
from ipbx.pbx.conference.config import ConferenceConfig
from ipbx.pbx.crm import CrmConfig
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.dialplan import COUNTRIES, NumberConfig, OutboundRouteConfig
from ipbx.pbx.extension import FORWARD_KEYS, Extension
from ipbx.pbx.mailer import SmtpConfig
from ipbx.pbx.parking_config import Parking
from ipbx.pbx.queue.config import QueueConfig
from ipbx.pbx.schedule import ScheduleConfig
from ipbx.pbx.schema import Digits, Model, Where, item_lists
from ipbx.pbx.trunk_config import TrunkConfig
from ipbx.pbx.webhook_config import WebhookConfig
from ipbx.sip.transport.resolve import split_host_port
from ipbx.sip.transport.websocket import check_origin

DEMO_ACCOUNTS_FILE = "demo-accounts.yaml"
DEMO_EXTENSIONS = (("1000", "Alice"), ("1001", "Bob"), ("1002", "Carol"), ("1003", "Dave"))

Transport = Literal["udp", "tcp", "tls", "ws", "wss"]

# RFC 3261 §19.1.2: sip: defaults to 5060 and sips: (TLS) to 5061. WebSocket listeners
# have no SIP default port (RFC 7118 rides on HTTP ports), so they must name one.
_DEFAULT_PORTS: dict[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}


class ListenAddress(Model):
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


DigestAlgorithm = Literal["MD5", "SHA-256"]


def _md5() -> list[DigestAlgorithm]:
    return ["MD5"]


class SipConfig(Model):
    """The SIP server: listeners, digest realm and registrar limits (RFC 3261 §10.3)."""

    listen: list[ListenAddress] = Field(
        default_factory=lambda: [
            ListenAddress(transport="udp", host="0.0.0.0", port=5060),
            ListenAddress(transport="tcp", host="0.0.0.0", port=5060),
            ListenAddress(transport="tls", host="0.0.0.0", port=5061),
            # Browsers: SIP over secure WebSocket (RFC 7118).
            ListenAddress(transport="wss", host="0.0.0.0", port=8089),
        ]
    )
    realm: str = Field(default="ipbx", min_length=1)
    domain: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    min_expires: int = Field(default=60, ge=1)
    max_expires: int = Field(default=3600, ge=1)
    default_expires: int = Field(default=3600, ge=1)
    max_subscriptions: int = Field(default=100, ge=1)  # per watching extension
    qualify_interval: float = Field(default=30.0, gt=0)
    # A TCP/TLS connection idle this long is closed; the default outlasts the longest
    # registration, so a phone's refreshes keep its connection (and reachability).
    tcp_idle_timeout: float = Field(default=3660.0, gt=0)
    # Phones registered with outbound (RFC 5626) keep their flow alive at least this
    # often (the Flow-Timer of the registrar's 200): CRLF pings over TCP/TLS, STUN over UDP.
    # Below tcp_idle_timeout, or the pinged connections are closed as idle in between.
    flow_timer: int = Field(default=120, ge=1, le=999)
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
    # Session timers (RFC 4028): the interval ipbx asks for, and the least it accepts
    # (422 below it). The RFC's floor is 90 s; a smaller min_se is for tests.
    session_expires: int = Field(default=1800, ge=1, le=86400)
    min_se: int = Field(default=90, ge=1, le=86400)
    # Web pages whose browsers may open a SIP WebSocket besides the server's own host's
    # (sip/transport/websocket.py): origins such as https://pbx.example.com, or `*`.
    websocket_origins: list[Annotated[str, AfterValidator(check_origin)]] = Field(
        default_factory=list
    )

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
        if self.min_se > self.session_expires:
            raise ValueError("need min_se <= session_expires")
        return self


CodecName = Literal["opus", "g722", "pcmu", "pcma", "g729"]


class MediaConfig(Model):
    """Where RTP is sent from and which ports it may use. RTP binds on `address`; SDP
    carries `public_address` when set, else `address`, else (`address` is every
    interface, the default) the address each phone reaches SIP on."""

    address: str = "0.0.0.0"
    public_address: str | None = None
    rtp_ports: PortRange = (20000, 29999)
    # Recorded calls: one WAV channel per side (caller left), or both mixed into one.
    recording_format: Literal["stereo", "mixed"] = "stereo"
    # Codecs in order of preference: what SDP offer/answer picks first where ipbx
    # chooses, and what it transcodes to (G.729 only where libbcg729 is installed).
    codecs: list[CodecName] = Field(default_factory=lambda: list(get_args(CodecName)), min_length=1)
    # An answered call whose RTP stops this long on either leg is ended (held calls
    # excepted); 0 never ends one.
    timeout_seconds: float = Field(default=60.0, ge=0, le=86400)
    # Processes that carry bridged calls' RTP (media/workers.py): a count, or auto (the
    # cores ipbx may use, less one for SIP); 0 keeps all media in the server's process.
    workers: Literal["auto"] | Annotated[int, Field(ge=0, le=256)] = "auto"
    # Who forwards the RTP of relayed calls once they stand (media/kernel.py): ipbx
    # itself, or the Linux kernel (nftables; needs root, and IP forwarding for phones on
    # other machines).
    relay: Literal["userspace", "kernel"] = "userspace"

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


class ApiConfig(Model):
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


class Config(Model):
    """The whole configuration file."""

    # Each feature's part is a model of the feature's own module. Every list of Items
    # (pbx/schema.py) is provisioned through the API and `ipbx apply` as well
    # (pbx/provisioning.py): a feature with a list of its own is one field here.
    #
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
    # PBX features (docs/features.md).
    smtp: SmtpConfig | None = None
    groups: list[GroupConfig] = Field(default_factory=list)
    queues: list[QueueConfig] = Field(default_factory=list)
    conferences: list[ConferenceConfig] = Field(default_factory=list)
    ivrs: list[IvrConfig] = Field(default_factory=list)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    announcements: list[AnnouncementConfig] = Field(default_factory=list)
    blacklist: list[BlacklistConfig] = Field(default_factory=list)
    parking: Parking = None
    # The API, live events and webhooks (docs/api.md).
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

    @field_validator("country")
    @classmethod
    def _check_country(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in COUNTRIES:
            raise ValueError(f"{value!r}: expected one of {', '.join(sorted(COUNTRIES))}")
        return None if value is None else value.upper()

    @field_validator("*")
    @classmethod
    def _check_lists(cls, value: Any, info: ValidationInfo) -> Any:
        """Each list of Items passes its item model's check of the whole list (by
        default, no two items with one key); the error's `at` points at the item's line."""
        assert info.field_name is not None
        model = item_lists(cls).get(info.field_name)
        if model is not None:
            model.check_list(value, info.field_name)
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
                    if key in FORWARD_KEYS and str(value).strip() in numbers
                    else value
                    for key, value in forward.items()
                }
                extension = {**extension, "forward": forward}
            rewritten.append(extension)
        return {**data, "extensions": rewritten}

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        """Every destination in the file, with where it is written."""
        for name in item_lists(type(self)):
            for i, item in enumerate(getattr(self, name)):
                for at, target in item.destinations():
                    yield (name, i, *at), target

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        """Destinations, group members and blacklist extensions point at things that
        exist, and a mailbox that mails its messages has a mail server to do it with."""
        extensions = {e.number: e for e in self.extensions}
        named: dict[Kind, set[str]] = {}
        for name, model in item_lists(type(self)).items():
            if model.destination_kind is not None:
                named[model.destination_kind] = {item.key() for item in getattr(self, name)}
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
                if not member.startswith("+") and member not in extensions:
                    raise _config_error(
                        "unknown_member",
                        f"there is no extension {member}",
                        ("groups", i, "members", j),
                    )
        for i, queue in enumerate(self.queues):
            for j, agent in enumerate(queue.agents):
                if agent.extension not in extensions:
                    raise _config_error(
                        "unknown_agent",
                        f"there is no extension {agent.extension}",
                        ("queues", i, "agents", j),
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
        are followed at once, so a cycle through them would never end; so is a queue's
        time-out destination when no agent is logged in. (Forwarding on no answer,
        group fallbacks and menus ring someone or wait for the caller first.)"""
        edges: dict[str, list[tuple[Where, Destination]]] = {}
        for at, target in self.destinations():
            if at[0] == "schedules":
                source = f"schedule:{self.schedules[int(at[1])].name}"
            elif at[0] == "queues":
                source = f"queue:{self.queues[int(at[1])].name}"
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


def _config_error(kind: str, message: str, at: Where) -> PydanticCustomError:
    """An error of a whole-file check that points at the field `at` (and its line)."""
    return PydanticCustomError(kind, "{message}", {"message": message, "at": at})


class _DemoAccounts(Model):
    extensions: list[Extension]


def load_config(path: Path | None) -> Config:
    """Load and validate the configuration file, or the embedded default when None."""
    if path is not None:
        return validate(Config, read_yaml(path), path)
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
        return validate(_DemoAccounts, read_yaml(path), path).extensions
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
