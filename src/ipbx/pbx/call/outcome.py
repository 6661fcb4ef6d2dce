"""How a call ended, as its record and the call.ended and call.missed events say.

A call is answered when a person took it: a phone of an extension (also one that picked
it up), or an outside number through a trunk (`Call.person_answered`). ipbx answering
the caller itself, to play a menu, take a voicemail or let it hear a ring group's
ringback, is no answer by a person; such a call ends in the call flow that held the
caller last, the last step of its path that is one:

- ``menu``: in an IVR menu (the caller hung up there, or the menu's time-out hung up);
- ``voicemail``: in a mailbox (a message left or not);
- ``group``: the caller hung up while a ring group's phones rang (its ringback);
- ``queue``: in a call queue, no agent having answered (the caller hung up while it
  waited, or the queue's time-out hung up);
- ``announcement``: after an announcement (closed, say);
- ``conference``: in a conference room (pbx/conference/), where the caller talked with
  whoever was there, or at its PIN prompt; no missed call;
- ``blocked``: the caller is on the blacklist (with or without a message);
- ``service``: a call to ipbx itself (a feature code, the mailbox menu, the echo test),
  which is offered to nobody.

A call no person answered and no call flow held ends as the phones rung for it said:
``cancelled`` (the caller hung up while they rang, also when a call flow rang them),
``busy``, ``no_answer`` or ``failed``.
"""

from __future__ import annotations

from typing import Literal

from ipbx.pbx.call.model import Call
from ipbx.pbx.destination import Kind

# The values, as a type (the API's `result` filter takes these).
Result = Literal[
    "answered", "cancelled", "busy", "no_answer", "failed",
    "menu", "voicemail", "group", "queue", "announcement", "conference", "blocked", "service",
]  # fmt: skip
ANSWERED: Result = "answered"
CANCELLED: Result = "cancelled"
BUSY: Result = "busy"
NO_ANSWER: Result = "no_answer"
FAILED: Result = "failed"
MENU: Result = "menu"
VOICEMAIL: Result = "voicemail"
GROUP: Result = "group"
QUEUE: Result = "queue"
ANNOUNCEMENT: Result = "announcement"
CONFERENCE: Result = "conference"
BLOCKED: Result = "blocked"
SERVICE: Result = "service"

# The path step the blacklist writes (pbx/router.py), and the prefix of a feature code's.
BLACKLIST_STEP = "blacklist"
FEATURE_STEP = "feature:"
_KINDS = frozenset(kind.value for kind in Kind)
# Steps that only chose where the call went next, held nobody, and end nothing.
_PASSING = (Kind.SCHEDULE.value, Kind.HANGUP.value)
# The call flows a call no person answered can end in, by their destination kind.
_FLOWS: dict[str, Result] = {
    Kind.IVR.value: MENU,
    Kind.VOICEMAIL.value: VOICEMAIL,
    Kind.ANNOUNCEMENT.value: ANNOUNCEMENT,
    Kind.QUEUE.value: QUEUE,
    Kind.CONFERENCE.value: CONFERENCE,
}


def result(call: Call) -> Result:
    """How `call` ended (the module documentation lists the values)."""
    if call.person_answered is not None:
        return ANSWERED
    if BLACKLIST_STEP in call.path:
        return BLOCKED
    if call.answered is None:
        return _phones_said(call)
    kind = _last_flow(call.path)
    ringing = call.dialing is not None and not call.dialing.done()
    if kind == Kind.GROUP.value and ringing:
        return GROUP
    if kind in _FLOWS:
        return _FLOWS[kind]
    if kind is None or kind == FEATURE_STEP:
        return SERVICE
    return CANCELLED if ringing else _phones_said(call)


def missed(ended: str) -> bool:
    """Whether a call that ended so is a missed call (call.missed): someone called to
    reach a person and none answered. Blocked callers, conference members and calls to
    ipbx's own services are not."""
    return ended not in (ANSWERED, CONFERENCE, BLOCKED, SERVICE)


def _phones_said(call: Call) -> Result:
    if call.cancelled:
        return CANCELLED
    if call.status in (486, 600):
        return BUSY
    if call.status in (408, 480, 487):
        return NO_ANSWER
    return FAILED


def _last_flow(path: list[str]) -> str | None:
    """The kind of the last step of `path` that held the caller (`feature:` for a
    feature code); None when there is none."""
    for step in reversed(path):
        if step.startswith(FEATURE_STEP):
            return FEATURE_STEP
        kind = step.partition(":")[0]
        if kind in _KINDS and kind not in _PASSING:
            return kind
    return None
