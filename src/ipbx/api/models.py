"""What the API returns: pydantic models, which are also its OpenAPI schema."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ipbx.pbx.analytics import Figures
from ipbx.pbx.queue.analytics import QueueFigures
from ipbx.pbx.trunks import TrunkStatus

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: `total` items match the filters, `items` start at `offset`."""

    total: int = Field(ge=0)
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)
    items: list[T]


class Problem(BaseModel):
    """An error: what was wrong, in words."""

    detail: str


# The error responses most endpoints document (OpenAPI `responses`).
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no token, or not a valid one"},
    403: {"model": Problem, "description": "the token's scope is not enough"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such item (for this tenant)"}
}


class Extension(BaseModel):
    number: str
    name: str
    registered: bool = Field(description="at least one unexpired registration")
    contacts: int = Field(ge=0, description="unexpired registrations (bindings)")


class NewExtension(BaseModel):
    """An extension to provision: its number is also the digest username."""

    number: str = Field(pattern=r"^[0-9]{1,32}$")
    name: str = Field(default="", max_length=255)
    password: str = Field(min_length=4, max_length=128, description="stored only as digests")


class Registration(BaseModel):
    """One registered contact of an extension (RFC 3261 §10.3 binding)."""

    extension: str
    contact: str
    expires_at: float
    transport: str = Field(description="how the REGISTER came: udp, tcp, tls")
    host: str
    port: int
    user_agent: str
    reachable: bool = Field(description="answered the last OPTIONS ping")
    instance_id: str | None = None


class ActiveCall(BaseModel):
    call_id: str = Field(description="the id its call record will have")
    caller: str
    callee: str
    started: float
    answered: float | None = Field(
        description="when it was answered, by a phone or by a call flow of ipbx; null while ringing"
    )
    person_answered: float | None = Field(
        description="when a person took it; null while it rings or a call flow (a menu, "
        "voicemail, a group's ringback) holds the caller"
    )


class Leg(BaseModel):
    """One side of a finished call, as ipbx received its media."""

    role: str
    peer: str
    codec: str
    packets_received: int
    packets_lost: int
    loss_percent: float
    jitter_ms: float
    rtt_ms: float | None
    mos: float | None


class Call(BaseModel):
    """A call detail record; times are epoch seconds."""

    call_id: str
    caller: str
    callee: str
    started: float
    answered: float | None = Field(
        description="when the caller was answered, by a phone or by a call flow of ipbx "
        "(a menu, voicemail, a group's ringback); null when nothing answered"
    )
    person_answered: float | None = Field(
        description="when a person (a phone, an outside number) took the call; null when none did"
    )
    ended: float
    result: str = Field(
        description="answered (by a person), cancelled, busy, no_answer, failed, menu, "
        "voicemail, group, announcement, blocked or service (docs/api.md)"
    )
    duration: float = Field(
        ge=0,
        description="seconds from the answer (by a phone or by ipbx) to the end; 0 when "
        "nothing answered",
    )
    digits: str
    recording: str | None
    path: list[str] = Field(description="the destinations the call went through")
    end_reason: str | None = Field(
        default=None,
        description="why ipbx ended the answered call itself: media_timeout (its RTP "
        "stopped), session_expired (no session refresh) or media_failed (the media worker "
        "carrying it died); null when a party hung up",
    )
    legs: list[Leg]


# A trunk's state is ipbx.pbx.trunks.TrunkStatus, a dataclass pydantic reads as it is.
Trunk = TrunkStatus


class Delivery(BaseModel):
    """One event sent (or being sent) to one webhook."""

    id: int
    event_id: str
    event_type: str
    webhook: str
    tenant: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    created: float
    next_attempt: float | None
    delivered_at: float | None
    last_error: str
    payload: dict[str, Any]


class Originate(BaseModel):
    """Click-to-call: ring `agent`'s phones; when one answers, call `number`."""

    agent: str = Field(pattern=r"^[0-9]{1,32}$", description="the extension that rings first")
    number: str = Field(
        pattern=r"^\+?[0-9]{1,32}$",
        description="the extension or outside number it then calls (the agent's permission)",
    )
    timeout: float = Field(default=30.0, gt=0, le=300, description="seconds each side rings")


class Originated(BaseModel):
    call_id: str = Field(description="the call record's id, also in the call.* events")


class Analytics(BaseModel):
    """Figures over all the calls asked for, and per group (day, hour, extension or ring
    group) or per call queue or agent (`queues`)."""

    total: Figures
    groups: dict[str, Figures] = Field(default_factory=dict)
    queues: dict[str, QueueFigures] = Field(default_factory=dict)


# --- call control (api/control.py) ---------------------------------------------------------

# Which party of a call in progress: whoever placed it, or the other one.
Side = Literal["caller", "callee"]


class Transfer(BaseModel):
    """Blind transfer: connect `leg`'s party to `target`; the other party is hung up."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        pattern=r"^\+?[0-9]{1,32}$",
        description="the extension or outside number to connect to (the other party's permission)",
    )
    leg: Side = Field(description="the party that is connected to the target")


class Dtmf(BaseModel):
    """Key presses to send to one party of the call."""

    model_config = ConfigDict(extra="forbid")

    digits: str = Field(pattern=r"^[0-9A-Da-d*#]{1,32}$", description="0-9, *, #, A-D")
    leg: Side = Field(description="the party whose phone receives the digits")


class RecordingControl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["start", "stop"]


class Recording(BaseModel):
    """A call's on-demand recording."""

    call_id: str
    recording: str = Field(description="the file, as the call record's `recording` names it")
    active: bool = Field(description="still recording (false once stopped)")


class Accepted(BaseModel):
    """The request is under way; the call's events tell how it goes."""

    call_id: str
