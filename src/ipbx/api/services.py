"""What the API uses of the PBX: the one interface its routes, metrics and webhook
workers are written against. `ipbx.pbx.core.Pbx` has this shape (mypy checks it where
`ipbx serve` hands the one to the other, ipbx/serve.py); the API never imports the PBX
core, so the PBX can be rebuilt under it as long as this shape holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Literal, Protocol

from ipbx.config import Config
from ipbx.pbx.conference.model import ConferenceStatus
from ipbx.pbx.control import CallControl
from ipbx.pbx.events import EventBus
from ipbx.pbx.location import Location
from ipbx.pbx.messaging import Messaging
from ipbx.pbx.queue.analytics import QueueTargets
from ipbx.pbx.queue.model import AgentStatus, QueueStatus
from ipbx.pbx.trunks import Trunks
from ipbx.pbx.voicemail import Mailboxes
from ipbx.sip.counts import MessageCounts
from ipbx.store import AsyncStore


class LiveCall(Protocol):
    """A call in progress as GET /calls/active shows it; times are Unix epoch seconds."""

    @property
    def uid(self) -> str: ...  # the id its call record will have

    @property
    def from_number(self) -> str: ...

    @property
    def to_number(self) -> str: ...

    @property
    def started(self) -> float: ...

    @property
    def answered(self) -> float | None: ...

    @property
    def person_answered(self) -> float | None: ...


AgentAction = Literal["login", "logout", "pause", "unpause"]


class ConfiguredQueue(Protocol):
    @property
    def config(self) -> QueueTargets: ...


class QueueDesk(Protocol):
    """The call queues as the API sees them: their configuration, their live picture and
    the agents' states (the queue engine, pbx/queue/engine.py)."""

    @property
    def queues(self) -> Mapping[str, ConfiguredQueue]:
        """The configured queues by name."""

    def status(self, name: str) -> QueueStatus:
        """The live picture of a queue; LookupError for no such queue."""

    def set_agent(self, extension: str, action: AgentAction, reason: str | None) -> AgentStatus:
        """Log an agent in or out of all its queues, pause it (with a reason) or unpause
        it; LookupError for an extension that is no queue's agent."""


class ConferenceDesk(Protocol):
    """The conference rooms as the API sees them (pbx/conference/engine.py); every
    method raises LookupError for no such room, member, or number to invite."""

    @property
    def rooms(self) -> Mapping[str, object]:
        """The configured rooms by name."""

    def status(self, name: str) -> ConferenceStatus: ...

    def mute(self, name: str, member_id: int, muted: bool) -> ConferenceStatus: ...

    def record(self, name: str, on: bool) -> ConferenceStatus:
        """Start or stop recording the room's mix; RoomConflict when it cannot."""

    def kick(self, name: str, member_id: int) -> None:
        """End the member's call."""

    def dial(self, name: str, number: str) -> LiveCall:
        """Invite `number` into the room: an extension's phones ring now, an outside
        number is called through the outbound routes; RoomConflict
        (pbx/conference/room.py) when the room is full or locked."""


class PbxServices(Protocol):
    @property
    def config(self) -> Config:
        """The configuration in use: the file's with the provisioned items."""

    @property
    def base_config(self) -> Config:
        """What the configuration file says (its items cannot be removed through the API)."""

    @property
    def on_reconfigure(self) -> list[Callable[[Config], Awaitable[None]]]:
        """Called with the new configuration after every reload."""

    async def reload(self, config: Config | None = None) -> None:
        """Take up the provisioning the store holds now (`config`: already composed)."""

    @property
    def store(self) -> AsyncStore: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def location(self) -> Location: ...

    @property
    def mailboxes(self) -> Mailboxes: ...

    @property
    def trunks(self) -> Trunks: ...

    @property
    def queues(self) -> QueueDesk | None:
        """The call queues; None when the PBX runs none."""

    @property
    def conferences(self) -> ConferenceDesk:
        """The conference rooms."""

    @property
    def messaging(self) -> Messaging:
        """Text messages: POST /messages sends through it."""

    @property
    def control(self) -> CallControl:
        """Hang up, transfer, record and send DTMF on a call in progress."""

    def active_calls(self) -> Collection[LiveCall]:
        """The calls in progress, as they are now."""

    def originate(self, agent: str, number: str, timeout: float) -> LiveCall:
        """Click-to-call; LookupError when `agent` is no extension or `number` no
        extension and no outside number a route takes, PermissionError when the agent
        may not call that number."""

    def is_extension(self, number: str) -> bool: ...

    def rtp_totals(self) -> tuple[int, int]:
        """(received, lost): the RTP packets of every stream so far."""

    def media_bridges(self) -> list[int]:
        """How many bridged calls each media worker carries (none without workers)."""

    @property
    def sip_messages(self) -> MessageCounts:
        """The SIP endpoint's message counters (sip/counts.py)."""
