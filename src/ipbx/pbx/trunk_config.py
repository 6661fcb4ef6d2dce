"""A SIP trunk's settings, as the configuration file's `trunks:` and the API write them;
pbx/trunks.py runs them (registration, health checks, channel limits, inbound trust)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from ipbx.pbx.schema import Item, Name
from ipbx.sip.transport.resolve import split_host_port


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


HostPort = Annotated[str, AfterValidator(_host_port)]
Codec = Annotated[
    Literal["pcmu", "pcma", "g722", "g729", "opus"],
    BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),
]


class TrunkConfig(Item):
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
    # Whether the provider (or GSM gateway) takes text messages (SIP MESSAGE) to its
    # numbers: pbx/messaging.py sends those of the outbound routes through this trunk.
    messaging: bool = False
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
