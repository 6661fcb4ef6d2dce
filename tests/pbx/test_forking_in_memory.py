"""Parallel forking and personal call handling, in memory (tests/support/testbed.py):
an extension with several registered phones rings them all at once; the first to answer
takes the call, the others are cancelled (RFC 3261 §9.1: only once they have answered
provisionally); when none answers, the caller gets the best of their refusals
(§16.7 step 6); forwarding on busy and on no answer takes over from the phones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.network import Datagram
from tests.support.testbed import Testbed, play


def test_every_phone_of_the_extension_rings_and_the_first_to_answer_takes_the_call(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        desk, mobile = await lab.registered("1001"), await lab.registered("1001")
        call = alice.call("1001")
        on_desk, on_mobile = await desk.rings(), await mobile.rings()
        assert on_desk.caller == on_mobile.caller == "1000"
        on_desk.ring()
        on_mobile.ring()
        assert (await call.provisional(180)).status == 180
        on_mobile.answer()
        assert (await call.final()).status == 200
        await on_desk.was_cancelled()
        assert (await call.hang_up()).status == 200
        await on_mobile.hung_up()
        [record] = await lab.records()
        assert (record.result, record.legs[1].peer) == ("answered", "UDP:10.0.0.13:5060")

    play(tmp_path, story)


def test_a_phone_is_cancelled_only_after_its_first_provisional_response(tmp_path: Path) -> None:
    """RFC 3261 §9.1: a CANCEL must not be sent before a provisional response. The desk
    phone's 100 Trying is lost, so its CANCEL waits for its 180."""

    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        desk, mobile = await lab.registered("1001"), await lab.registered("1001")

        def desk_trying(d: Datagram) -> bool:
            return d.source == desk.address and d.status == 100

        lab.network.lose(desk_trying)
        call = alice.call("1001")
        on_desk, on_mobile = await desk.rings(), await mobile.rings()
        on_mobile.answer()
        assert (await call.final()).status == 200
        with pytest.raises(AssertionError, match="no CANCEL"):
            await on_desk.was_cancelled(timeout=2.0)
        on_desk.ring()
        await on_desk.was_cancelled()

    play(tmp_path, story)


@pytest.mark.parametrize(
    ("refusals", "heard"),
    [((486, 480), 486), ((480, 486), 486), ((486, 603), 603)],
    ids=["busy-beats-unavailable", "in-any-order", "6xx-wins"],
)
def test_when_no_phone_answers_the_caller_gets_the_best_refusal(
    tmp_path: Path, refusals: tuple[int, int], heard: int
) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        desk, mobile = await lab.registered("1001"), await lab.registered("1001")
        call = alice.call("1001")
        (await desk.rings()).refuse(refusals[0])
        (await mobile.rings()).refuse(refusals[1])
        assert (await call.final()).status == heard

    play(tmp_path, story)


def test_the_caller_who_gives_up_cancels_every_ringing_phone(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        desk, mobile = await lab.registered("1001"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = [await desk.rings(), await mobile.rings()]
        for phone in ringing:
            phone.ring()
        await call.provisional(180)
        call.cancel()
        assert (await call.final()).status == 487
        for phone in ringing:
            await phone.was_cancelled()
        [record] = await lab.records()
        assert record.result == "cancelled"

    play(tmp_path, story)


def _forward(**forward: Any) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["extensions"][1]["forward"] = forward

    return edit


def test_a_busy_phone_forwards_the_call(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call = alice.call("1001")
        (await bob.rings()).refuse(486)
        forwarded = await carol.rings()
        assert forwarded.invite.uri.user == "1002"
        forwarded.answer()
        assert (await call.final()).status == 200
        await call.hang_up()
        [record] = await lab.records()
        assert record.path == "extension:1001,extension:1002"

    play(tmp_path, story, _forward(busy="1002"))


def test_a_phone_that_rings_unanswered_is_cancelled_and_the_call_forwarded(
    tmp_path: Path,
) -> None:
    """The no-answer time runs on the PBX's clock: 20 virtual seconds, no real wait."""

    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call = alice.call("1001")
        ringing = await bob.rings()
        assert await ringing.rings_unanswered() == pytest.approx(20, abs=0.1)
        (await carol.rings()).answer()
        assert (await call.final()).status == 200

    play(tmp_path, story, _forward(no_answer="1002", no_answer_seconds=20))


def test_forward_always_rings_the_target_and_not_the_phone(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call = alice.call("1001")
        (await carol.rings()).answer()
        assert (await call.final()).status == 200
        assert await bob.rings_not(2.0)

    play(tmp_path, story, _forward(always="1002"))


def test_a_phone_may_ring_for_longer_than_64_t1(tmp_path: Path) -> None:
    """RFC 3261 §17.1.1.2: Timer B runs in the Calling state only; once the phone has
    answered provisionally, its INVITE waits for the final answer as long as it rings
    (the caller, a ring time-out or a forward ends the ringing, not the transaction)."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        ringing.ring()
        await call.provisional(180)
        since = len(lab.network.sent)
        await asyncio.sleep(60)
        to_alice = [d.first_line for d in lab.network.sent[since:] if d.dest == alice.address]
        assert not [line for line in to_alice if line.startswith("SIP/2.0")], to_alice

    play(tmp_path, story)
