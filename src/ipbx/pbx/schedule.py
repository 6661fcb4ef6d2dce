"""Schedules: office hours by weekday in a time zone, and holidays, each with a destination.

A schedule is asked where a call goes at one instant (`destination_at`): on one of its
holiday dates, its `holiday` destination (or `closed`); inside its hours, `open`;
otherwise `closed`. The instant is converted to the schedule's own zone first, so
"09:00-18:00" in Europe/Kyiv means Kyiv's wall clock on both sides of a DST change, and
a holiday is a date on that wall clock.

Hours are written as in the YAML file: days (``mon``, ``mon-fri``, ``sat,sun``,
``fri-mon`` wraps over the weekend) mapped to one or more ranges
(``09:00-12:00,13:00-18:00``). A range ends at its end minute (exclusive), ``24:00`` is
midnight at the end of the day, and a range that ends before it starts runs over
midnight into the next day (``22:00-06:00``), as night shifts are written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field

from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.schema import DestinationField, Item, Name, Where

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
MINUTES_PER_DAY = 24 * 60

_TIME = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])")

# A span of minutes within one day, start inclusive, end exclusive (0 <= start < end <= 1440).
Span = tuple[int, int]


class ScheduleError(ValueError):
    """Hours, days or a time zone that cannot be read; the message says what was expected."""


def parse_days(spec: str) -> frozenset[int]:
    """The weekdays (0 = Monday) of ``mon``, ``mon-fri``, ``sat,sun`` or ``fri-mon``."""
    days: set[int] = set()
    for part in spec.split(","):
        first, dash, last = (p.strip().lower() for p in part.partition("-"))
        if first not in DAYS or (dash and last not in DAYS):
            raise ScheduleError(
                f"{spec!r}: expected days such as mon, mon-fri or sat,sun ({', '.join(DAYS)})"
            )
        start = DAYS.index(first)
        end = DAYS.index(last) if dash else start
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(days)


def _minute(text: str, spec: str) -> int:
    match = _TIME.fullmatch(text.strip())
    if match is None or (match[1] == "24" and match[2] != "00"):
        raise ScheduleError(f"{spec!r}: expected HH:MM-HH:MM ranges such as 09:00-18:00")
    return int(match[1]) * 60 + int(match[2])


def parse_ranges(spec: str) -> tuple[tuple[int, int], ...]:
    """``09:00-12:00,13:00-18:00`` as (start, end) minutes after midnight.

    An end at or before its start runs past midnight (end is then taken on the next day);
    ``00:00-24:00`` is the whole day. A range of no length is refused.
    """
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        first, dash, last = part.partition("-")
        if not dash:
            raise ScheduleError(f"{spec!r}: expected HH:MM-HH:MM ranges such as 09:00-18:00")
        start, end = _minute(first, spec), _minute(last, spec)
        if start in (MINUTES_PER_DAY, end):
            raise ScheduleError(f"{spec!r}: {part.strip()} is an empty range")
        ranges.append((start, end))
    return tuple(ranges)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (Europe/Kyiv, America/New_York, UTC)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r}: not an IANA time zone such as Europe/Kyiv") from None


def weekly_spans(hours: Mapping[str, str]) -> tuple[tuple[Span, ...], ...]:
    """Per weekday (0 = Monday), the open spans of `hours`, merged and sorted.

    A range past midnight is split: its evening part on its own day, its morning part on
    the next (Sunday night runs into Monday morning).
    """
    per_day: list[list[Span]] = [[] for _ in DAYS]
    for days, ranges in hours.items():
        for day in parse_days(days):
            for start, end in parse_ranges(ranges):
                if end > start:
                    per_day[day].append((start, end))
                else:
                    per_day[day].append((start, MINUTES_PER_DAY))
                    if end:
                        per_day[(day + 1) % 7].append((0, end))
    return tuple(_merge(spans) for spans in per_day)


def _merge(spans: Iterable[Span]) -> tuple[Span, ...]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _check_days(value: str) -> str:
    parse_days(value)
    return value


def _check_ranges(value: str) -> str:
    parse_ranges(value)
    return value


def _check_zone(value: str) -> str:
    zone(value)
    return value


class ScheduleConfig(Item):
    """Office hours: `open` inside `hours` (weekday ranges on the `timezone` wall clock),
    `closed` outside them, and `holiday` (or `closed`) on the `holidays` dates."""

    destination_kind: ClassVar[Kind | None] = Kind.SCHEDULE

    name: Name
    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"
    hours: dict[
        Annotated[str, AfterValidator(_check_days)], Annotated[str, AfterValidator(_check_ranges)]
    ] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)
    open: DestinationField
    closed: DestinationField
    holiday: DestinationField | None = None

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        for key in ("open", "closed", "holiday"):
            target = getattr(self, key)
            if target is not None:
                yield (key,), target


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    timezone: ZoneInfo
    spans: tuple[tuple[Span, ...], ...]  # per weekday, Monday first
    holidays: frozenset[date]
    open: Destination
    closed: Destination
    holiday: Destination | None = None

    @classmethod
    def from_config(cls, cfg: ScheduleConfig) -> Schedule:
        return cls(
            name=cfg.name,
            timezone=zone(cfg.timezone),
            spans=weekly_spans(cfg.hours),
            holidays=frozenset(cfg.holidays),
            open=cfg.open,
            closed=cfg.closed,
            holiday=cfg.holiday,
        )

    def is_open(self, when: datetime) -> bool:
        """Whether `when` (an aware datetime) falls inside the hours on a working day."""
        local = self._local(when)
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.spans[local.weekday()])

    def destination_at(self, when: datetime) -> Destination:
        """Where a call arriving at `when` (an aware datetime) goes."""
        local = self._local(when)
        if local.date() in self.holidays:
            return self.holiday or self.closed
        return self.open if self.is_open(when) else self.closed

    def _local(self, when: datetime) -> datetime:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("a schedule needs an aware datetime (with a time zone)")
        return when.astimezone(self.timezone)
