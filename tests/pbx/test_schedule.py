"""Schedules: office hours on the schedule's own wall clock, holidays as its dates, and
the two nights a year when that clock jumps (Europe/Kyiv: 2026-03-29 03:00 -> 04:00,
2026-10-25 04:00 -> 03:00)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.pbx.destination import Destination
from ipbx.pbx.schedule import (
    DAYS,
    Schedule,
    ScheduleConfig,
    ScheduleError,
    parse_days,
    parse_ranges,
)

KYIV = ZoneInfo("Europe/Kyiv")
OPEN, CLOSED, HOLIDAY = (
    Destination.parse(d) for d in ("ivr:main", "announcement:closed", "hangup")
)


def schedule(
    hours: dict[str, str], timezone: str = "Europe/Kyiv", holidays: tuple[str, ...] = (), **kw: str
) -> Schedule:
    return Schedule.from_config(
        ScheduleConfig.model_validate(
            {
                "name": "office",
                "timezone": timezone,
                "hours": hours,
                "holidays": list(holidays),
                "open": "ivr:main",
                "closed": "announcement:closed",
                **kw,
            }
        )
    )


def kyiv(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=KYIV)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_issue_schedule() -> None:
    office = schedule({"mon-fri": "09:00-18:00"}, holidays=("2026-12-25",))
    assert office.destination_at(kyiv("2026-12-21 09:00")) == OPEN  # Monday
    assert office.destination_at(kyiv("2026-12-21 08:59")) == CLOSED
    assert office.destination_at(kyiv("2026-12-21 17:59")) == OPEN
    assert office.destination_at(kyiv("2026-12-21 18:00")) == CLOSED  # the end is exclusive
    assert office.destination_at(kyiv("2026-12-26 12:00")) == CLOSED  # Saturday
    assert office.destination_at(kyiv("2026-12-25 12:00")) == CLOSED  # a Friday holiday


def test_days_and_ranges_as_operators_write_them() -> None:
    assert parse_days("mon-fri") == {0, 1, 2, 3, 4}
    assert parse_days("sat,sun") == parse_days("sat-sun") == {5, 6}
    assert parse_days("fri-mon") == {4, 5, 6, 0}  # over the weekend
    assert parse_days(" Mon - Wed , fri ") == {0, 1, 2, 4}
    assert parse_days("mon-sun") == set(range(7))
    assert parse_ranges("09:00-12:00,13:00-18:00") == ((540, 720), (780, 1080))
    assert parse_ranges("0:00-24:00") == ((0, 1440),)
    assert parse_ranges("22:00-06:00") == ((1320, 360),)
    for bad_days in ("", "monday", "mon-", "mon-xyz", "1-5"):
        with pytest.raises(ScheduleError):
            parse_days(bad_days)
    for bad_ranges in (
        "",
        "9-18",
        "09:00",
        "09:00-24:01",
        "24:00-01:00",
        "09:00-09:00",
        "9:60-10:00",
    ):
        with pytest.raises(ScheduleError):
            parse_ranges(bad_ranges)


def test_a_lunch_break_and_a_short_saturday() -> None:
    office = schedule({"mon-fri": "09:00-12:00,13:00-18:00", "sat": "10:00-14:00"})
    assert office.destination_at(kyiv("2026-12-22 11:59")) == OPEN
    assert office.destination_at(kyiv("2026-12-22 12:30")) == CLOSED
    assert office.destination_at(kyiv("2026-12-22 13:00")) == OPEN
    assert office.destination_at(kyiv("2026-12-26 10:00")) == OPEN
    assert office.destination_at(kyiv("2026-12-26 14:00")) == CLOSED
    assert office.destination_at(kyiv("2026-12-27 12:00")) == CLOSED  # Sunday


def test_a_night_shift_runs_past_midnight_into_the_next_day() -> None:
    night = schedule({"fri": "22:00-02:00", "sun": "23:00-24:00"})
    assert night.destination_at(kyiv("2026-12-25 21:59")) == CLOSED
    assert night.destination_at(kyiv("2026-12-25 23:30")) == OPEN
    assert night.destination_at(kyiv("2026-12-26 01:59")) == OPEN  # Saturday morning
    assert night.destination_at(kyiv("2026-12-26 02:00")) == CLOSED
    assert night.destination_at(kyiv("2026-12-27 23:59")) == OPEN
    assert night.destination_at(kyiv("2026-12-28 00:00")) == CLOSED
    sunday_night = schedule({"sun": "22:00-06:00"})
    assert sunday_night.destination_at(kyiv("2026-12-28 05:59")) == OPEN  # Monday, wrapped


def test_holidays_are_dates_on_the_schedules_own_clock() -> None:
    office = schedule({"mon-sun": "00:00-24:00"}, holidays=("2026-12-25",), holiday="hangup")
    # 22:30 UTC on the 24th is already the 25th in Kyiv (UTC+2) ...
    assert office.destination_at(utc("2026-12-24 22:30")) == HOLIDAY
    assert office.destination_at(utc("2026-12-24 21:59")) == OPEN
    # ... and 22:30 UTC on the 25th is the 26th.
    assert office.destination_at(utc("2026-12-25 21:59")) == HOLIDAY
    assert office.destination_at(utc("2026-12-25 22:00")) == OPEN
    # Without a holiday destination a holiday is closed.
    plain = schedule({"mon-sun": "00:00-24:00"}, holidays=("2026-12-25",))
    assert plain.destination_at(kyiv("2026-12-25 12:00")) == CLOSED
    assert not plain.is_open(kyiv("2026-12-25 12:00"))


def test_no_hours_is_always_closed() -> None:
    closed = schedule({})
    assert closed.destination_at(kyiv("2026-12-22 12:00")) == CLOSED


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        schedule({"mon": "09:00-18:00"}).destination_at(datetime(2026, 12, 21, 12))


def minutes_open(office: Schedule, start: datetime, hours: int) -> list[datetime]:
    """The minutes (in UTC) during which `office` is open, from `start` for `hours`."""
    minutes = (start + timedelta(minutes=m) for m in range(hours * 60))
    return [m for m in minutes if office.destination_at(m) == OPEN]


def test_spring_forward_office_hours_keep_to_the_wall_clock() -> None:
    office = schedule({"mon-fri": "09:00-18:00"})
    # Friday before the change: Kyiv is UTC+2, the office opens at 07:00 UTC.
    assert office.destination_at(utc("2026-03-27 06:59")) == CLOSED
    assert office.destination_at(utc("2026-03-27 07:00")) == OPEN
    # Monday after: UTC+3, it opens at 06:00 UTC, and still for nine hours.
    assert office.destination_at(utc("2026-03-30 05:59")) == CLOSED
    assert office.destination_at(utc("2026-03-30 06:00")) == OPEN
    assert len(minutes_open(office, utc("2026-03-30 00:00"), 24)) == 9 * 60


def test_spring_forward_an_hour_that_never_happens_is_never_open() -> None:
    # 03:00-04:00 local does not exist on 2026-03-29 (03:00 EET is 04:00 EEST).
    gap = schedule({"sun": "03:00-04:00"})
    assert minutes_open(gap, utc("2026-03-28 12:00"), 24) == []
    # Around the gap, a range spanning it is open only for the hours that exist.
    around = schedule({"sun": "02:00-05:00"})
    assert len(minutes_open(around, utc("2026-03-28 12:00"), 24)) == 2 * 60
    assert around.destination_at(kyiv("2026-03-29 02:59")) == OPEN
    assert around.destination_at(utc("2026-03-29 01:00")) == OPEN  # 04:00 EEST


def test_fall_back_an_hour_that_happens_twice_is_open_twice() -> None:
    # 2026-10-25: 04:00 EEST is 03:00 EET, so 03:00-03:59 local happens twice.
    twice = schedule({"sun": "03:00-04:00"})
    opened = minutes_open(twice, utc("2026-10-24 12:00"), 24)
    assert len(opened) == 2 * 60
    assert opened[0] == utc("2026-10-25 00:00")  # 03:00 EEST
    assert opened[-1] == utc("2026-10-25 01:59")  # 03:59 EET
    # A whole working day that day is 24 hours of wall clock and 25 of real time.
    day = schedule({"sun": "00:00-24:00"})
    assert len(minutes_open(day, utc("2026-10-24 12:00"), 36)) == 25 * 60


# --- properties ----------------------------------------------------------------------


def reference_open(hours: dict[str, str], local: datetime) -> bool:
    """The rule written out directly, for each range as the operator wrote it."""
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    for days, ranges in hours.items():
        for day in parse_days(days):
            for start, end in parse_ranges(ranges):
                if end > start:
                    if weekday == day and start <= minute < end:
                        return True
                elif (weekday == day and minute >= start) or (
                    weekday == (day + 1) % 7 and minute < end
                ):
                    return True
    return False


def clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


day_specs = st.one_of(
    st.sampled_from(DAYS),
    st.tuples(st.sampled_from(DAYS), st.sampled_from(DAYS)).map("-".join),
    st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True).map(",".join),
)
ranges = (
    st.tuples(st.integers(0, 1439), st.integers(0, 1440))
    .filter(lambda r: r[0] != r[1])
    .map(lambda r: f"{clock(r[0])}-{clock(r[1])}")
)
hours_specs = st.dictionaries(
    day_specs, st.lists(ranges, min_size=1, max_size=3).map(",".join), max_size=4
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
)
zones = st.sampled_from(["Europe/Kyiv", "America/New_York", "Australia/Lord_Howe", "UTC"])


@given(hours=hours_specs, when=instants, timezone=zones)
def test_open_exactly_when_a_written_range_covers_the_wall_clock(
    hours: dict[str, str], when: datetime, timezone: str
) -> None:
    office = schedule(hours, timezone)
    expected = reference_open(hours, when.astimezone(ZoneInfo(timezone)))
    assert office.destination_at(when) == (OPEN if expected else CLOSED)


@given(hours=hours_specs, when=instants, other=zones)
def test_the_zone_a_time_is_given_in_does_not_matter(
    hours: dict[str, str], when: datetime, other: str
) -> None:
    office = schedule(hours, "America/New_York")
    assert office.destination_at(when) == office.destination_at(when.astimezone(ZoneInfo(other)))


@given(
    hours=hours_specs,
    when=instants,
    holidays=st.lists(st.dates(date(2000, 1, 1), date(2037, 12, 31)), max_size=5),
)
def test_a_holiday_overrides_the_hours_for_its_whole_local_date(
    hours: dict[str, str], when: datetime, holidays: list[date]
) -> None:
    local_date = when.astimezone(KYIV).date()
    office = schedule(hours, holidays=(*map(str, holidays), str(local_date)), holiday="hangup")
    assert office.destination_at(when) == HOLIDAY
    plain = schedule(hours)
    if local_date not in holidays:
        without = schedule(hours, holidays=tuple(map(str, holidays)), holiday="hangup")
        assert without.destination_at(when) == plain.destination_at(when)
