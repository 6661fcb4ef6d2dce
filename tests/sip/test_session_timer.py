"""Session timers (RFC 4028) without I/O: what a UAS answers (§9), what a UAC reads from
the 2xx (§7.2), the 422 for a short interval (§6), and when a refresh or the BYE is due
(§10), on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.session_timer import (
    IntervalTooSmall,
    Negotiated,
    RefreshDue,
    SessionExpired,
    SessionTimer,
    answer_request,
    check_interval,
    min_se,
    read_answer,
    request_fields,
    session_expires,
)
from ipbx.sip.uri import Uri


def _headers(fields: tuple[tuple[str, str], ...]) -> Headers:
    headers = Headers()
    for name, value in (("CSeq", "1 INVITE"), *fields):
        headers.add(name, value)  # compact names become full ones, as when parsed
    return headers


def invite(*fields: tuple[str, str]) -> Request:
    return Request(_headers(fields), b"", "INVITE", Uri("sip", "1001", None, "ipbx"))


def ok(*fields: tuple[str, str]) -> Response:
    return Response(_headers(fields), b"", 200, "OK")


def test_session_expires_and_min_se_are_read_with_their_compact_form_and_defaults() -> None:
    asked = session_expires(invite(("x", "1800 ; Refresher=UAC")))
    assert asked is not None
    assert (asked.interval, asked.refresher) == (1800, "uac")
    assert str(asked) == "1800;refresher=uac"
    assert session_expires(invite()) is None
    assert min_se(invite()) == 90
    assert min_se(invite(("Min-SE", "600"))) == 600
    for bad in ("soon", "0", "90;refresher=proxy"):
        with pytest.raises(SipError) as info:
            session_expires(invite(("Session-Expires", bad)))
        assert info.value.status == 400


def test_an_interval_below_our_minimum_gets_422_with_the_minimum() -> None:
    with pytest.raises(IntervalTooSmall) as info:
        check_interval(invite(("Session-Expires", "60")), 90)
    assert (info.value.status, info.value.min_se) == (422, 90)
    # The request's own Min-SE, when higher, is what it has to ask for next.
    with pytest.raises(IntervalTooSmall) as info:
        check_interval(invite(("Session-Expires", "100"), ("Min-SE", "300")), 120)
    assert info.value.min_se == 300
    check_interval(invite(("Session-Expires", "90")), 90)
    check_interval(invite(), 90)


def test_a_uac_that_supports_timers_and_asks_to_refresh_does() -> None:
    request = invite(("Supported", "replaces, timer"), ("Session-Expires", "600;refresher=uac"))
    negotiated, fields = answer_request(request, 90)
    assert negotiated == Negotiated(600, we_refresh=False)
    assert fields == [("Session-Expires", "600;refresher=uac"), ("Require", "timer")]


def test_a_uac_that_supports_timers_and_leaves_the_choice_refreshes_at_our_interval() -> None:
    negotiated, fields = answer_request(invite(("k", "timer"), ("Min-SE", "2000")), 90, 1800)
    assert negotiated == Negotiated(2000, we_refresh=False)  # never below its Min-SE
    assert ("Require", "timer") in fields
    negotiated, _ = answer_request(invite(("Supported", "timer"), ("x", "900")), 90)
    assert negotiated == Negotiated(900, we_refresh=False)


def test_a_uac_that_knows_no_timers_gets_one_we_refresh_and_no_require() -> None:
    negotiated, fields = answer_request(invite(), 90, 1800)
    assert negotiated == Negotiated(1800, we_refresh=True)
    assert fields == [("Session-Expires", "1800;refresher=uas")]
    # A proxy put Session-Expires in; the UAC still knows none: we refresh (§9).
    negotiated, fields = answer_request(invite(("Session-Expires", "300;refresher=uac")), 90)
    assert negotiated == Negotiated(300, we_refresh=True)
    assert fields == [("Session-Expires", "300;refresher=uas")]


def test_what_a_uac_reads_from_the_2xx() -> None:
    assert read_answer(ok()) is None  # no Session-Expires: no timer (§7.2)
    assert read_answer(ok(("Session-Expires", "1800;refresher=uac"))) == Negotiated(1800, True)
    assert read_answer(ok(("Session-Expires", "1800;refresher=uas"))) == Negotiated(1800, False)
    assert read_answer(ok(("Session-Expires", "1800"))) == Negotiated(1800, True)
    assert request_fields(1800, 90, "uas") == [
        ("Session-Expires", "1800;refresher=uas"),
        ("Min-SE", "90"),
    ]


def test_the_refresher_refreshes_at_half_the_interval_and_gives_up_before_the_end() -> None:
    timer = SessionTimer(Negotiated(1800, we_refresh=True), now=0.0)
    assert timer.next_deadline() == 900.0
    assert timer.expire(899.0) == []
    assert timer.expire(900.0) == [RefreshDue()]
    # The refresh went out; if its 2xx never comes, the BYE is due at 1800 - 32.
    assert timer.next_deadline() == 1768.0
    assert timer.expire(1767.0) == []
    assert timer.expire(1768.0) == [SessionExpired()]


def test_a_refresh_that_met_glare_is_sent_again_before_the_end() -> None:
    timer = SessionTimer(Negotiated(1800, we_refresh=True), now=0.0)
    assert timer.expire(900.0) == [RefreshDue()]
    timer.refresh_again(903.0)  # 491 to our re-INVITE
    assert timer.next_deadline() == 903.0
    assert timer.expire(903.0) == [RefreshDue()]
    timer.refresh_again(1800.0)  # past the end: the BYE comes first
    assert timer.next_deadline() == 1768.0


def test_the_side_that_does_not_refresh_waits_for_the_refresh() -> None:
    timer = SessionTimer(Negotiated(90, we_refresh=False), now=100.0)
    assert timer.next_deadline() == 100.0 + 90 - 30  # a third of 90 is less than 32 s
    timer.refreshed(Negotiated(120, we_refresh=False), now=150.0)
    assert timer.next_deadline() == 150.0 + 120 - 32
    assert timer.expire(237.0) == []
    assert timer.expire(238.0) == [SessionExpired()]


@given(
    interval=st.integers(1, 7200),
    we_refresh=st.booleans(),
    refreshes=st.lists(st.floats(0, 1.0), max_size=20),
)
def test_a_session_refreshed_in_time_never_expires(
    interval: int, we_refresh: bool, refreshes: list[float]
) -> None:
    """Refreshed anywhere before its deadline, again and again, a session lives on; and
    a refresher is asked to refresh before the session could expire."""
    negotiated = Negotiated(interval, we_refresh)
    timer = SessionTimer(negotiated, now=0.0)
    now = 0.0
    for fraction in refreshes:
        deadline = timer.next_deadline()
        assert deadline > now
        if we_refresh:
            assert timer.expire(deadline) == [RefreshDue()]
            assert timer.next_deadline() > deadline  # the BYE only after the refresh
        when = now + (timer.next_deadline() - now) * fraction * 0.999
        assert SessionExpired() not in timer.expire(when)
        timer.refreshed(negotiated, when)
        now = when
