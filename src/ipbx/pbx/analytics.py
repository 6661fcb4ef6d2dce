"""Call analytics, computed from the call records alone (so they can always be
reproduced from the CDRs, as the API promises).

Definitions, as call centres use them. Answered means answered by a person (a phone,
an outside number: `CallRecord.person_answered`); ipbx answering the caller to play a
menu, take a voicemail or let it hear a group's ringback is no answer, and the record's
result says where such a call ended (pbx/call/outcome.py).
- offered: every call except calls to ipbx's own services (feature codes, the mailbox
  menu, the echo test: result `service`), which are offered to nobody; inbound /
  outbound / internal by the record's direction. transferred: answered calls whose path
  shows a transfer.
- abandoned: the caller hung up while phones rang for it, before a person answered
  (`cancelled`, also when a call flow rang them, `group`: during a ring group's
  ringback, and `queue`: waiting in a call queue); time to abandon is from start to
  hang-up.
- blocked: callers on the blacklist.
- missed: the other calls no person answered: busy, no answer, failed, and those that
  ended in a menu, a mailbox or an announcement. Of them, ended_in_menu and
  ended_in_voicemail count those that ended in a menu and in a mailbox.
- speed of answer: start to the person's answer; handling time: that answer to the end.
- service level: the share of offered calls a person answered within
  `service_level_seconds`.
- busiest hour: the UTC hour of day (0-23) in which most offered calls started.
- MOS: the mean of every leg's estimate that has one.

Grouped, a call counts in every group it belongs to: per extension for its caller and
its callee, per ring group for each group its path went through (`group:NAME`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from ipbx.pbx.call import outcome
from ipbx.pbx.destination import Kind
from ipbx.store.records import CallRecord

Grouping = Literal["day", "hour", "extension", "group"]
DEFAULT_SERVICE_LEVEL_SECONDS = 20.0
# The caller hung up while phones rang for it.
_ABANDONED = (outcome.CANCELLED, outcome.GROUP, outcome.QUEUE)


@dataclass(frozen=True, slots=True)
class Figures:
    offered: int
    inbound: int
    outbound: int
    internal: int
    answered: int
    missed: int
    abandoned: int
    transferred: int
    average_seconds_to_abandon: float | None
    average_speed_of_answer: float | None
    average_handling_time: float | None
    service_level: float | None
    busiest_hour: int | None
    average_mos: float | None
    blocked: int
    ended_in_menu: int
    ended_in_voicemail: int


def figures(records: Iterable[CallRecord], service_level_seconds: float) -> Figures:
    calls = [r for r in records if r.result != outcome.SERVICE]
    answered = [r for r in calls if r.person_answered is not None]
    abandoned = [r for r in calls if r.result in _ABANDONED]
    results = Counter(r.result for r in calls)
    direction = Counter(r.direction for r in calls)
    moses = [leg.mos for r in calls for leg in r.legs if leg.mos is not None]
    in_time = [r for r in answered if _answer_wait(r) <= service_level_seconds]
    hours = Counter(time.gmtime(r.started).tm_hour for r in calls)
    return Figures(
        offered=len(calls),
        inbound=direction["inbound"],
        outbound=direction["outbound"],
        internal=direction["internal"],
        answered=len(answered),
        missed=len(calls) - len(answered) - len(abandoned) - results[outcome.BLOCKED],
        abandoned=len(abandoned),
        transferred=sum(1 for r in answered if _transferred(r)),
        average_seconds_to_abandon=mean(r.ended - r.started for r in abandoned),
        average_speed_of_answer=mean(_answer_wait(r) for r in answered),
        average_handling_time=mean(r.ended - (r.person_answered or r.ended) for r in answered),
        service_level=round(len(in_time) / len(calls), 4) if calls else None,
        busiest_hour=max(sorted(hours), key=lambda h: hours[h]) if hours else None,
        average_mos=mean(moses),
        blocked=results[outcome.BLOCKED],
        ended_in_menu=results[outcome.MENU],
        ended_in_voicemail=results[outcome.VOICEMAIL],
    )


def grouped(
    records: Iterable[CallRecord], by: Grouping, service_level_seconds: float
) -> dict[str, Figures]:
    """Figures per UTC day (YYYY-MM-DD), per UTC hour (YYYY-MM-DDTHH), per extension
    (a call counts for its caller and its callee) or per ring group (for each group the
    call went through; calls that met no group are in none)."""
    groups: dict[str, list[CallRecord]] = {}
    for record in records:
        for name in _KEYS[by](record):
            groups.setdefault(name, []).append(record)
    return {name: figures(calls, service_level_seconds) for name, calls in sorted(groups.items())}


def _day(record: CallRecord) -> list[str]:
    return [time.strftime("%Y-%m-%d", time.gmtime(record.started))]


def _hour(record: CallRecord) -> list[str]:
    return [time.strftime("%Y-%m-%dT%H", time.gmtime(record.started))]


def _parties(record: CallRecord) -> list[str]:
    return list(dict.fromkeys((record.caller, record.callee)))


_GROUP = f"{Kind.GROUP.value}:"


def _steps(record: CallRecord) -> list[str]:
    return record.path.split(",") if record.path else []


def _transferred(record: CallRecord) -> bool:
    """A step calls.py writes for a transfer: `transfer:NUMBER` (the call was handed over
    to NUMBER) or `transfer` (a consultation call an attended transfer ended); not a
    step that merely names a group or menu with "transfer" in it."""
    return any(s == "transfer" or s.startswith("transfer:") for s in _steps(record))


def _ring_groups(record: CallRecord) -> list[str]:
    """The groups in the record's path, once each: `group:sales` is a destination the
    router ran (router.py appends every destination it runs to the path)."""
    groups = (s.removeprefix(_GROUP) for s in _steps(record) if s.startswith(_GROUP))
    return list(dict.fromkeys(groups))


_KEYS: dict[str, Callable[[CallRecord], list[str]]] = {
    "day": _day,
    "hour": _hour,
    "extension": _parties,
    "group": _ring_groups,
}


def _answer_wait(record: CallRecord) -> float:
    return (record.person_answered or record.started) - record.started


def mean(values: Iterable[float]) -> float | None:
    """The mean to the millisecond; None of nothing."""
    items = list(values)
    return round(sum(items) / len(items), 3) if items else None
