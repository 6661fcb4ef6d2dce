"""The event bus: what happened in the PBX, published once, delivered to every subscriber
(the WebSocket feed, webhooks, metrics; later the analytics writer).

On one machine the bus is in-process (in a cluster it is to become Redis pub/sub behind
the same two calls, docs/architecture.md). Subscribers run synchronously inside
`publish`, in the order they subscribed, so they must be quick: a subscriber that needs
I/O queues the event and does the I/O in its own task. A subscriber that raises is
logged and skipped; the publisher and the other subscribers never see its exception.

Event types and the keys of `data` (all values JSON-able; times are epoch seconds).
`call_id` is the call record's id (`CallRecord.call_id`, GET /calls/{call_id}), so an
event can be joined with the record written when the call ends. Numbers are strings.

``call.started``
    call_id, caller, callee, direction (``internal``, ``inbound`` from a trunk,
    ``outbound`` to a trunk); optional caller_name (the display name of the caller's
    From, when it shows one) and trunk (the trunk an inbound call came in on). An
    outbound call's trunk is not known yet when it starts (failover picks it):
    call.answered names it.
``call.ringing``
    call_id, caller, callee, direction, extension (the extension whose phones ring;
    one event per extension rung); optional caller_name, the CRM's name for a caller
    from outside when it knows one (pbx/crm.py), else the From's display name.
``call.answered``
    call_id, caller, callee, direction, extension (who answered: the extension, or the
    outside number a trunk reached), wait (seconds from call.started to the first answer
    by a person); optional trunk (the trunk that took a call out). Only a person
    answers: a phone, or an outside number. ipbx answering the caller itself (a menu,
    voicemail, a group's ringback) is no call.answered; a call a menu or a group
    answered first is call.answered when a phone takes it. A call transferred (REFER
    or the API) is call.answered again, with the new extension, when the target
    answers, so a CRM opens the card on the phone that has the caller now. A phone
    that takes a call by dialling (a pickup code, a parking slot) adds joined: the
    call_id of its own call, which becomes this one (no call.ended comes for it).
``call.ended``
    call_id, caller, callee, direction, result (as in the call record: answered by a
    person, cancelled, busy, no_answer, failed, menu, voicemail, group, announcement,
    blocked or service; pbx/call/outcome.py says what each means), duration (seconds
    from the answer, by a phone or by ipbx's call flow, to the end; 0 when nothing
    answered).
``call.missed``
    call_id, caller, callee, direction, extension (the number called), result; what a
    call-back task needs. Published besides call.ended, not instead of it, for every
    call no person answered: also one that ended in a menu, voicemail or a ring
    group's ringback; not for a blocked caller or a call to ipbx's own services
    (result blocked or service).
``call.parked``
    call_id, caller, callee, direction, slot (where the call waits), extension (who
    parked it: the phone that transferred it to the park number), party (the number
    of the party that waits, hearing music); pbx/parking.py.
``call.unparked``
    call_id, caller, callee, direction, slot, extension (who parked it), reason
    (``retrieved`` by a phone that dialled the slot, named in ``by``; ``timeout``: it
    rings its parker again; ``hangup``: the parked party hung up).
``recording.ready``
    call_id, caller, callee, direction, recording (the file's name under the
    recordings folder, as in the call record), seconds; once the file is complete:
    the recording was stopped (POST /calls/active/{call_id}/recording) or the call
    ended. A conference room's recording has conference (the room's name), recording
    and seconds instead, when the room empties.
``voicemail.new``
    extension, caller, message (its id in the mailbox), duration.
``queue.joined``
    call_id, queue, caller (the caller's number; None when it hides it), position.
``queue.answered``
    call_id, queue, extension (the agent who answered), wait (seconds in the queue).
``queue.abandoned``
    call_id, queue, position, wait: the caller hung up while waiting.
``queue.callback``
    call_id, queue, position, wait: the caller pressed the callback key and hung up; the
    callback keeps its place.
    The queue events are made from the queue log (pbx/queue/log.py), whose events
    carry whole seconds, as Asterisk's queue_log does.
``conference.joined``
    conference (the room's name), member (its id in the room, as in GET
    /conferences/{name}), caller (the member's number), call_id, moderator (bool); when
    a caller enters a room (pbx/conference/room.py).
``conference.left``
    conference, member, caller, call_id: the member hung up or was kicked.
``conference.talking``
    conference, member, caller, call_id, talking (bool): the mixer heard the member
    start or stop talking.
``registration.changed``
    extension, registered (bool), contacts (how many bindings the AOR has now).
``agent.state``
    extension, state (a queue agent's: logged_out, available, ringing, in_call, wrapup
    or paused), since (when it began), reason (why paused; null otherwise),
    calls_taken (queue calls answered today), queues (the agent's queues, by name);
    published on every change of the state (pbx/queue/agents.py).
``message.received``
    message_id (GET /messages), caller (the sender: an extension, or the outside number
    of a message from a trunk), callee (the extension it is for), extension (the
    same), direction (internal or inbound), status (pending), content_type, body; when
    a text message for an extension arrives, before it is delivered (pbx/messaging.py).
``message.status``
    the same keys, status now delivered or failed (extension: the recipient, or the
    sender of a message to an outside number, direction outbound).

`Event.involves(extension)` (the `?extension=` filter of the feed) looks at the keys
caller, callee and extension.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

log = logging.getLogger("ipbx.events")

DEFAULT_TENANT = "default"

# The types of docs/architecture.md; `publish` accepts any dotted lower-case name (queue.* and
# others come with their features), these are the ones documented above.
CALL_STARTED = "call.started"
CALL_RINGING = "call.ringing"
CALL_ANSWERED = "call.answered"
CALL_ENDED = "call.ended"
CALL_MISSED = "call.missed"
CALL_PARKED = "call.parked"
CALL_UNPARKED = "call.unparked"
VOICEMAIL_NEW = "voicemail.new"
RECORDING_READY = "recording.ready"
REGISTRATION_CHANGED = "registration.changed"
AGENT_STATE = "agent.state"
MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
EVENT_TYPES = (
    CALL_STARTED,
    CALL_RINGING,
    CALL_ANSWERED,
    CALL_ENDED,
    CALL_MISSED,
    CALL_PARKED,
    CALL_UNPARKED,
    VOICEMAIL_NEW,
    RECORDING_READY,
    REGISTRATION_CHANGED,
    AGENT_STATE,
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
)

_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# The data keys that name an extension or a number taking part.
_PARTIES = ("caller", "callee", "extension")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `id` is unique (uuid4 hex): webhook receivers drop a
    delivery whose id they have seen, which makes retried deliveries exactly-once."""

    type: str
    data: dict[str, object]
    tenant: str = DEFAULT_TENANT
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.type,
            "time": self.time,
            "tenant": self.tenant,
            "data": self.data,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)

    def involves(self, extension: str) -> bool:
        return any(str(self.data.get(key)) == extension for key in _PARTIES if key in self.data)


def type_matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether `event_type` matches one of `patterns` (``call.*``, ``*``, exact names)."""
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


Subscriber = Callable[[Event], None]


class EventBus:
    """Publish-subscribe within the process; see the module documentation."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._subscribers: list[Subscriber] = []
        self.published = 0

    def publish(
        self,
        type: str,  # the field is called type in every API (JSON, webhooks)
        data: Mapping[str, object] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Event:
        """Make an event and hand it to every subscriber; returns it.

        Raises ValueError for a malformed type and TypeError for data that is not
        JSON-able: both are mistakes of the publishing code, found by its tests.
        """
        if not _TYPE.match(type):
            raise ValueError(f"event type {type!r}: expected dotted lower-case words")
        payload = dict(data or {})
        json.dumps(payload)  # TypeError here, not in a subscriber later
        event = Event(type=type, data=payload, tenant=tenant, time=self._clock())
        self.published += 1
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s %s", subscriber, type, event.id)
        return event

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on; returns the function
        that unsubscribes (safe to call twice, also from inside a callback)."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
