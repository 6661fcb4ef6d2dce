"""Call-queue analytics, computed from the queue log alone (so any span can be reproduced
from it, as the call analytics are from the call records).

A queued call is the events of one call id: it entered (ENTERQUEUE, with the caller's
number), rang agents who did not answer (RINGNOANSWER), was answered (CONNECT, with the
hold time), talked (COMPLETEAGENT or COMPLETECALLER, with the talk time) or left
waiting: it hung up (ABANDON), waited out ``max_wait_seconds`` (EXITWITHTIMEOUT), found
no agent logged in (EXITEMPTY) or pressed the callback key (EXITWITHKEY). A callback
keeps the caller's call id and place: when an agent takes it, it is answered (CONNECT)
like the others. Times are the fields the events carry (whole seconds, as Asterisk
writes them).

Definitions, per queue and per agent:
- offered: the calls that entered the queue; for an agent, the calls that rang it.
- answered: the calls an agent answered (for an agent: the ones it answered).
- abandoned: callers who hung up while waiting, after more than 5 s;
  abandoned_within_5s counts those who hung up within 5 s, apart (a caller who
  misdialled is no failure of the queue).
- timed_out: callers sent on after ``max_wait_seconds``; no_agent: callers sent on at
  once because no agent was logged in; callbacks: callers who pressed the callback key.
- service_level: the answered calls whose hold time was at most the queue's
  ``service_level_seconds``, over the offered calls.
- average_speed_of_answer: the mean hold time of the answered calls; longest_wait: the
  longest hold time of any call, answered or not.
- average_handling_time: the mean talk time of the answered calls that ended, plus the
  queue's ``wrapup_seconds`` (the agent's after-call work).
- first_call_resolution: the answered calls whose caller did not enter the same queue
  again within 24 h, over the answered calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ipbx.pbx.analytics import DEFAULT_SERVICE_LEVEL_SECONDS, mean
from ipbx.pbx.queue.model import NONE, QueueEvent

QueueGrouping = Literal["queue", "agent"]
SHORT_ABANDON_SECONDS = 5
REPEAT_CALL_SECONDS = 24 * 3600


class QueueTargets(Protocol):
    """What the analytics read of a queue's configuration."""

    @property
    def service_level_seconds(self) -> float: ...

    @property
    def wrapup_seconds(self) -> float: ...


@dataclass(frozen=True, slots=True)
class QueueFigures:
    offered: int
    answered: int
    abandoned: int
    abandoned_within_5s: int
    timed_out: int
    no_agent: int
    callbacks: int
    service_level: float | None
    average_speed_of_answer: float | None
    average_handling_time: float | None
    longest_wait: float | None
    first_call_resolution: float | None


@dataclass(slots=True)
class QueuedCall:
    """One caller's way through a queue, read from its events."""

    call_id: str
    queue: str
    entered: float | None = None
    caller: str | None = None
    rang: set[str] = field(default_factory=set)
    agent: str | None = None  # who answered
    hold: float | None = None  # seconds waited: until answered, or until it left
    talk: float | None = None
    ended_waiting: str | None = None  # ABANDON, EXITWITHTIMEOUT or EXITEMPTY
    callback: bool = False
    repeated: bool = False  # the caller entered the queue again within 24 h


def queued_calls(events: Iterable[QueueEvent]) -> list[QueuedCall]:
    """The calls the events tell of, in the order they entered; events that concern no
    call (an agent's login or pause) are skipped."""
    calls: dict[tuple[str, str], QueuedCall] = {}
    for event in events:
        if event.call_id == NONE or event.queue == NONE:
            continue
        call = calls.setdefault(
            (event.queue, event.call_id), QueuedCall(event.call_id, event.queue)
        )
        _READ.get(event.event, _ignore)(call, event)
    ordered = sorted(calls.values(), key=lambda c: c.entered or 0.0)
    _mark_repeats(ordered)
    return ordered


def figures(
    calls: Iterable[QueuedCall],
    targets: Mapping[str, QueueTargets],
    agent: str | None = None,
) -> QueueFigures:
    """The figures of `calls` (each measured by its own queue's targets); with `agent`,
    only the calls that agent answered count as answered."""
    calls = list(calls)
    answered = [c for c in calls if c.agent is not None and (agent is None or c.agent == agent)]
    left = [c for c in calls if c.ended_waiting == "ABANDON"]
    short = [c for c in left if (c.hold or 0.0) <= SHORT_ABANDON_SECONDS]
    waits = [c.hold for c in calls if c.hold is not None]
    in_time = [c for c in answered if (c.hold or 0.0) <= _service_level(targets, c.queue)]
    handled = [c.talk + _wrapup(targets, c.queue) for c in answered if c.talk is not None]
    return QueueFigures(
        offered=len(calls),
        answered=len(answered),
        abandoned=len(left) - len(short),
        abandoned_within_5s=len(short),
        timed_out=sum(1 for c in calls if c.ended_waiting == "EXITWITHTIMEOUT"),
        no_agent=sum(1 for c in calls if c.ended_waiting == "EXITEMPTY"),
        callbacks=sum(1 for c in calls if c.callback),
        service_level=_share(len(in_time), len(calls)),
        average_speed_of_answer=mean(c.hold or 0.0 for c in answered),
        average_handling_time=mean(handled),
        longest_wait=max(waits) if waits else None,
        first_call_resolution=_share(sum(1 for c in answered if not c.repeated), len(answered)),
    )


def grouped(
    calls: Iterable[QueuedCall],
    by: QueueGrouping,
    targets: Mapping[str, QueueTargets],
    entered_since: float | None = None,
    entered_until: float | None = None,
) -> dict[str, QueueFigures]:
    """Figures per queue, or per agent (the calls that rang it), of the calls that
    entered in [entered_since, entered_until); the calls after that are there to find
    repeat calls."""
    groups: dict[str, list[QueuedCall]] = {}
    for call in calls:
        if not _entered_between(call, entered_since, entered_until):
            continue
        for name in [call.queue] if by == "queue" else sorted(call.rang):
            groups.setdefault(name, []).append(call)
    return {
        name: figures(members, targets, None if by == "queue" else name)
        for name, members in sorted(groups.items())
    }


def _entered_between(call: QueuedCall, since: float | None, until: float | None) -> bool:
    if call.entered is None:
        return since is None  # it entered before the events read
    return (since is None or call.entered >= since) and (until is None or call.entered < until)


def _enter(call: QueuedCall, event: QueueEvent) -> None:
    call.entered = event.time
    call.caller = event.data[1] if len(event.data) > 1 and event.data[1] else None


def _ring_no_answer(call: QueuedCall, event: QueueEvent) -> None:
    call.rang.add(event.agent)


def _connect(call: QueuedCall, event: QueueEvent) -> None:
    call.rang.add(event.agent)
    call.agent = event.agent
    call.hold = _seconds(event.data, 0)
    call.ended_waiting = None


def _complete(call: QueuedCall, event: QueueEvent) -> None:
    call.talk = _seconds(event.data, 1)


def _left(call: QueuedCall, event: QueueEvent) -> None:
    call.ended_waiting = event.event
    call.hold = _seconds(event.data, 2)


def _callback(call: QueuedCall, event: QueueEvent) -> None:
    call.callback = True
    call.hold = _seconds(event.data, 3)


def _ignore(call: QueuedCall, event: QueueEvent) -> None:
    return None


_READ: dict[str, Callable[[QueuedCall, QueueEvent], None]] = {
    "ENTERQUEUE": _enter,
    "RINGNOANSWER": _ring_no_answer,
    "CONNECT": _connect,
    "COMPLETEAGENT": _complete,
    "COMPLETECALLER": _complete,
    "ABANDON": _left,
    "EXITWITHTIMEOUT": _left,
    "EXITEMPTY": _left,
    "EXITWITHKEY": _callback,
}


def _mark_repeats(calls: list[QueuedCall]) -> None:
    """A call is repeated when its caller enters the same queue again within 24 h."""
    last: dict[tuple[str, str], QueuedCall] = {}
    for call in calls:  # in the order they entered
        if call.caller is None or call.entered is None:
            continue
        key = (call.queue, call.caller)
        before = last.get(key)
        if before is not None and before.entered is not None:
            before.repeated = call.entered - before.entered <= REPEAT_CALL_SECONDS
        last[key] = call


def _seconds(data: tuple[str, ...], index: int) -> float | None:
    try:
        return float(data[index])
    except (IndexError, ValueError):
        return None


def _service_level(targets: Mapping[str, QueueTargets], queue: str) -> float:
    found = targets.get(queue)
    return DEFAULT_SERVICE_LEVEL_SECONDS if found is None else found.service_level_seconds


def _wrapup(targets: Mapping[str, QueueTargets], queue: str) -> float:
    found = targets.get(queue)
    return 0.0 if found is None else found.wrapup_seconds


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
