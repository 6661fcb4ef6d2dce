"""What a call queue is made of, as the queue's parts share it: an agent's state, the
events the queue writes (Asterisk's queue_log rows), a waiting caller's place, and the
live picture the API shows.

The engine (who is offered which caller) writes `QueueEvent`s to a `QueueLog`; the log
keeps them, and analytics and the ``queue_log`` export are read from them. A waiting
caller's music and announcements ask its `Place` where it stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

NONE = "NONE"  # queue_log's word for a field with no value (an agent event has no call)
# What a waiting room returns when the caller asked to be called back, and the session
# variable that holds the number the caller confirmed.
CALLBACK = "callback"
CALLBACK_NUMBER = "callback_number"


class AgentState(Enum):
    """An agent (an extension) is in one state, shared by all its queues."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    IN_CALL = "in_call"
    WRAPUP = "wrapup"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One row of Asterisk's queue_log: ``time|call_id|queue|agent|event|data1|data2|...``.

    `event` is queue_log's verb (ENTERQUEUE, CONNECT, COMPLETEAGENT, COMPLETECALLER,
    ABANDON, EXITWITHTIMEOUT, EXITWITHKEY, RINGNOANSWER, PAUSE, UNPAUSE, ADDMEMBER,
    REMOVEMEMBER) and `data` its fields in Asterisk's order for that verb.
    """

    time: float  # epoch seconds
    call_id: str  # the call record's id, NONE for an agent's own events
    queue: str  # the queue's name, NONE for an event of the agent in all its queues
    agent: str  # the agent's extension, NONE when no agent is concerned
    event: str
    data: tuple[str, ...] = ()


class QueueLog(Protocol):
    """Where the engine writes what happened; writing never blocks or raises."""

    def record(self, event: QueueEvent) -> None: ...


class Place(Protocol):
    """A waiting caller's place in its queue, asked for each announcement."""

    def position(self) -> int:
        """1 for the caller next in line."""

    def estimated_wait(self) -> float | None:
        """Seconds until an agent answers, from recent answer times; None with no history."""


@dataclass(frozen=True, slots=True)
class WaitingCaller:
    call_id: str
    caller: str  # the caller's number (its caller ID)
    caller_name: str | None
    position: int
    waited: float  # seconds since the caller joined
    callback: bool  # a callback holding the caller's place, the caller hung up


@dataclass(frozen=True, slots=True)
class AgentStatus:
    extension: str
    state: AgentState
    since: float  # epoch seconds the state began
    calls_taken: int  # queue calls answered today
    reason: str | None = None  # why paused


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """The live picture of one queue (GET /queues/{name})."""

    name: str
    strategy: str
    waiting: tuple[WaitingCaller, ...]
    agents: tuple[AgentStatus, ...]
    service_level_today: float | None  # answered within the queue's service level / offered
