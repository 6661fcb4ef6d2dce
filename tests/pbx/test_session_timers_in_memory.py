"""Session timers (RFC 4028) on the PBX's legs, in memory and virtual time
(tests/support/testbed.py): each leg negotiates its own timer; a session nobody
refreshes ends with a BYE to both phones and a record that says session_expired; a
refresh keeps the call up; too short an interval gets 422 with Min-SE. The media
timeout is off here: no phone of the testbed sends RTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.testbed import Testbed, play
from tests.support.user_agents import offer

TIMER = ("Supported", "timer")


def _no_media_timeout(settings: dict[str, Any]) -> None:
    settings["media"] = {"timeout_seconds": 0}


def _now() -> float:
    return asyncio.get_running_loop().time()


def test_a_caller_that_stops_refreshing_is_hung_up_before_its_session_ends(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", headers=[TIMER, ("Session-Expires", "120;refresher=uac")])
        ringing = await bob.rings()
        ringing.answer()
        ok = await call.final()
        assert ok.headers.get("Session-Expires") == "120;refresher=uac"
        assert ok.headers.get("Require") == "timer"
        # A refresh (an UPDATE) before the end starts the session again.
        await asyncio.sleep(60)
        refreshed = _now()
        refresh = await call.request("UPDATE", extra=[TIMER, ("Session-Expires", "120")])
        assert refresh.status == 200
        assert refresh.headers.get("Session-Expires") == "120;refresher=uac"
        # None after that one: the BYE comes 120 - 32 s after it, to both phones.
        await call.hung_up(timeout=120)
        assert _now() - refreshed == pytest.approx(120 - 32, abs=0.5)
        await ringing.hung_up()
        [record] = await lab.records()
        assert (record.result, record.end_reason) == ("answered", "session_expired")

    play(tmp_path, story, _no_media_timeout)


def test_an_interval_below_min_se_is_refused_with_422(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        call = alice.call("1001", headers=[TIMER, ("Session-Expires", "60")])
        refused = await call.final()
        assert (refused.status, refused.headers.get("Min-SE")) == (422, "90")

    play(tmp_path, story)


def test_a_caller_without_timers_is_refreshed_by_the_pbx_and_hung_up_once_gone(
    tmp_path: Path,
) -> None:
    """RFC 4028 §9: the UAS refreshes for a UAC that knows no timers. The phone answers
    the first refresh (a re-INVITE offering the same SDP); then it vanishes, the second
    refresh times out (408), and the PBX ends the call."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        answered = await bob.rings()
        assert answered.invite.headers.get("Session-Expires") == "1800;refresher=uas"
        answered.answer()
        ok = await call.final()
        assert ok.headers.get("Session-Expires") == "1800;refresher=uas"
        assert "Require" not in ok.headers
        first = await call.received("INVITE", timeout=1800)
        assert first.headers.get("Session-Expires") == "1800;refresher=uac"
        assert first.body and b"sendrecv" in first.body
        gone = _now()
        lab.network.lose(lambda datagram: datagram.dest == alice.address)
        await answered.hung_up(timeout=1800)
        assert 900 <= _now() - gone <= 900 + 33
        [record] = await lab.records()
        assert record.end_reason == "session_expired"

    play(tmp_path, story, _no_media_timeout)


def test_a_refresh_after_a_refused_re_offer_offers_the_session_that_stands(
    tmp_path: Path,
) -> None:
    """RFC 3264 §8: a refused offer leaves the session as it was. The callee's new offer
    reaches the caller, who refuses it (488): the PBX's next refresh of the caller offers
    what the caller last agreed to, not the refused offer."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        answered = await bob.rings()
        answered.answer()
        ok = await call.final()
        call.refuses_offers = 488
        moved = offer().replace(b"a=sendrecv", b"a=sendrecv\r\na=ptime:30")
        refused = await answered.request("INVITE", moved, "application/sdp")
        assert refused.status == 488
        relayed = await call.received("INVITE")
        assert b"ptime:30" in relayed.body
        call.refuses_offers = None
        refresh = await call.received("INVITE", timeout=1800)
        assert refresh.body == ok.body
        assert (await call.hang_up()).status == 200

    play(tmp_path, story, _no_media_timeout)


def test_a_callee_that_hands_the_refreshing_back_is_refreshed_by_update(
    tmp_path: Path,
) -> None:
    """The PBX asks the callee to refresh (refresher=uas); a callee that answers
    refresher=uac and allows UPDATE gets an UPDATE at half its interval."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        assert ringing.invite.headers.get("Min-SE") == "90"
        ringing.answer(
            headers=[
                TIMER,
                ("Session-Expires", "300;refresher=uac"),
                ("Allow", "INVITE, ACK, BYE, UPDATE"),
            ]
        )
        assert (await call.final()).status == 200
        answered_at = _now()
        update = await ringing.received("UPDATE", timeout=300)
        assert _now() - answered_at == pytest.approx(150, abs=0.5)
        assert update.headers.get("Session-Expires") == "300;refresher=uac"
        assert not update.body
        assert (await call.hang_up()).status == 200
        await ringing.hung_up()

    play(tmp_path, story, _no_media_timeout)


def test_a_callee_whose_minimum_is_higher_gets_the_invite_again_with_it(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        (await bob.rings()).refuse(422, [("Min-SE", "3600")])
        again = await bob.rings()
        assert again.invite.headers.get("Session-Expires") == "3600;refresher=uas"
        again.answer()
        assert (await call.final()).status == 200

    play(tmp_path, story)
