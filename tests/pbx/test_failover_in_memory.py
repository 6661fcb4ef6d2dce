"""Calls out through trunks with failover, in memory (tests/support/testbed.py): the
route's trunks are tried one at a time, in order; a provider's failure (5xx, 408, no
answer at all) moves the call to the next trunk as a new dialog, a refusal on the
caller's side (404) does not; a digest challenge is answered once per attempt; when every
trunk has failed, the caller gets the best of their answers. An outside number invited
into a conference room goes out the same way. The providers are gateways on the
in-memory network (the real-socket versions: test_trunk_routing.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.testbed import Testbed, play
from tests.support.user_agents import OutgoingCall, Phone

DIALLED, E164 = "92125551234", "+12125551234"
CALLER_ID = "+15550111"
PROVIDER1, PROVIDER2 = "10.0.0.101", "10.0.0.102"


def routing(t1: float | None = None, **provider1: Any) -> Any:
    """1000 dials national numbers (9 + ten digits) out through provider1, then provider2
    (`provider1` changes its trunk's settings); `t1` is the PBX's SIP timer T1."""

    def edit(config: dict[str, Any]) -> None:
        config["country"] = "US"
        if t1 is not None:
            config["sip"]["timer_t1"] = t1
        config["trunks"] = [
            {"name": name, "host": f"{host}:5060", "allow_from": [f"{host}:5060"],
             "options_interval": 0, **(provider1 if name == "provider1" else {})}
            for name, host in (("provider1", PROVIDER1), ("provider2", PROVIDER2))
        ]  # fmt: skip
        config["outbound_routes"] = [
            {"name": "national", "pattern": "_9NXXNXXXXXX", "strip": 1, "prepend": "+1",
             "trunks": ["provider1", "provider2"], "caller_id": CALLER_ID}
        ]  # fmt: skip

    return edit


def _gateways(lab: Testbed) -> tuple[Phone, Phone]:
    return lab.gateway(PROVIDER1), lab.gateway(PROVIDER2)


async def _call_out(lab: Testbed) -> tuple[OutgoingCall, Phone, Phone]:
    """1000 dials the outside number; the call, and the gateways of provider1 and 2."""
    gw1, gw2 = _gateways(lab)
    alice = await lab.registered("1000")
    return alice.call(DIALLED), gw1, gw2


def test_a_call_out_leaves_through_the_first_trunk_in_e164_with_the_route_caller_id(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        call, gw1, gw2 = await _call_out(lab)
        out = await gw1.rings()
        assert str(out.invite.uri) == f"sip:{E164}@{PROVIDER1}:5060"
        assert (out.invite.from_.uri.user, out.invite.to.uri.user) == (CALLER_ID, E164)
        out.answer()
        assert (await call.final()).status == 200
        await call.hang_up()
        await out.hung_up()
        assert await gw2.rings_not()
        [record] = await lab.records()
        assert (record.callee, record.result, record.direction) == (DIALLED, "answered", "outbound")

    play(tmp_path, story, routing())


def test_a_trunk_that_answers_503_is_failed_over_in_a_new_dialog(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        call, gw1, gw2 = await _call_out(lab)
        first = await gw1.rings()
        first.refuse(503, [("Retry-After", "60")])
        second = await gw2.rings()
        assert str(second.invite.uri) == f"sip:{E164}@{PROVIDER2}:5060"
        # A new dialog: a proxy in front of both trunks would take a retry with the
        # same Call-ID and tag for a merged request (RFC 3261 §8.2.2.2).
        assert second.invite.call_id != first.invite.call_id
        second.answer()
        assert (await call.final()).status == 200
        await call.hang_up()
        await second.hung_up()
        [record] = await lab.records()
        assert record.legs[1].peer == f"UDP:{PROVIDER2}:5060"

    play(tmp_path, story, routing())


def test_a_trunk_that_never_answers_is_failed_over_when_its_invite_times_out(
    tmp_path: Path,
) -> None:
    """Nobody is at provider1's address: its INVITE fails after 64*T1 (Timer B; T1 is
    50 ms here, the caller's own INVITE must not time out first), and the call goes on
    through provider2."""

    async def story(lab: Testbed) -> None:
        gw2 = lab.gateway(PROVIDER2)
        alice = await lab.registered("1000")
        call = alice.call(DIALLED)
        dialled_at = lab.pbx.endpoint.loop.time()
        second = await gw2.rings()
        assert lab.pbx.endpoint.loop.time() - dialled_at == pytest.approx(64 * 0.05, abs=0.01)
        second.answer()
        assert (await call.final()).status == 200

    play(tmp_path, story, routing(t1=0.05))


def test_a_providers_digest_challenge_is_answered_once_with_the_trunks_credentials(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        call, gw1, _ = await _call_out(lab)
        first = await gw1.rings()
        first.challenge()
        again = await gw1.rings()
        credentials = again.invite.headers.get("Proxy-Authorization") or ""
        assert 'username="ipbx"' in credentials and f'uri="{again.invite.uri}"' in credentials
        # RFC 3261 §8.1.3.5: the same dialog, the next CSeq.
        assert again.invite.call_id == first.invite.call_id
        assert again.invite.cseq.number == first.invite.cseq.number + 1
        again.answer()
        assert (await call.final()).status == 200

    play(tmp_path, story, routing(username="ipbx", password="trunk-secret"))


def test_a_provider_that_challenges_the_credentials_again_is_failed_over(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        call, gw1, gw2 = await _call_out(lab)
        (await gw1.rings()).challenge()
        (await gw1.rings()).challenge()  # the password is wrong
        (await gw2.rings()).answer()
        assert (await call.final()).status == 200

    play(tmp_path, story, routing(username="ipbx", password="wrong"))


def test_a_refusal_on_the_callers_side_is_not_failed_over(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        call, gw1, gw2 = await _call_out(lab)
        (await gw1.rings()).refuse(404)
        assert (await call.final()).status == 404
        assert await gw2.rings_not()

    play(tmp_path, story, routing())


@pytest.mark.parametrize(
    ("answers", "heard", "result"),
    [((503, 503), 480, "no_answer"), ((503, 500), 500, "failed"), ((408, 486), 486, "busy")],
    ids=["all-unavailable", "server-error", "busy"],
)
def test_when_every_trunk_fails_the_caller_gets_the_best_of_their_answers(
    tmp_path: Path, answers: tuple[int, int], heard: int, result: str
) -> None:
    """RFC 3261 §16.7 step 6 over the trunks' answers: 503 and 408 only mean this
    trunk could not, and read as 480 Temporarily Unavailable when nothing better came."""

    async def story(lab: Testbed) -> None:
        call, gw1, gw2 = await _call_out(lab)
        (await gw1.rings()).refuse(answers[0])
        (await gw2.rings()).refuse(answers[1])
        assert (await call.final()).status == heard
        [record] = await lab.records()
        assert record.result == result

    play(tmp_path, story, routing())


def test_a_trunk_at_its_channel_limit_is_passed_over(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gw1, gw2 = _gateways(lab)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        first = alice.call(DIALLED)
        (await gw1.rings()).answer()
        assert (await first.final()).status == 200
        second = bob.call(DIALLED)
        (await gw2.rings()).answer()
        assert (await second.final()).status == 200
        await first.hang_up()
        third = alice.call(DIALLED)  # provider1's channel is free again
        (await gw1.rings()).answer()
        assert (await third.final()).status == 200

    play(tmp_path, story, routing(max_channels=1))


def test_an_outside_number_invited_into_a_room_goes_out_as_a_call_out_does(
    tmp_path: Path,
) -> None:
    """The API's invitation into a conference room (Conferences.dial) has no caller: the
    trunk's leg is the member's own. It leaves as 1000's call out would: the route's
    caller ID, E.164, the digest challenge answered, a 503 failed over; the number that
    answers joins the room, and a kick hangs it up."""
    with_trunks = routing(username="ipbx", password="trunk-secret")

    def edit(config: dict[str, Any]) -> None:
        with_trunks(config)
        config["conferences"] = [{"name": "standup", "pin": "4321"}]

    async def story(lab: Testbed) -> None:
        gw1, gw2 = _gateways(lab)
        rooms = lab.pbx.conferences
        rooms.dial("standup", DIALLED)
        first = await gw1.rings()
        assert (first.invite.from_.uri.user, first.invite.to.uri.user) == (CALLER_ID, E164)
        first.challenge()
        again = await gw1.rings()
        assert 'username="ipbx"' in (again.invite.headers.get("Proxy-Authorization") or "")
        again.refuse(503)
        second = await gw2.rings()
        second.answer()
        async with asyncio.timeout(10):  # the join chime plays first
            while not rooms.status("standup").members:
                await asyncio.sleep(0.1)
        [member] = rooms.status("standup").members
        assert member.caller == DIALLED  # no PIN asked
        rooms.kick("standup", member.id)
        await second.hung_up()
        [record] = await lab.records()
        assert (record.caller, record.callee, record.result, record.direction) == (
            DIALLED, "standup", "answered", "outbound",
        )  # fmt: skip
        assert record.path == "conference:standup"
        assert record.legs[0].peer == f"UDP:{PROVIDER2}:5060"

    play(tmp_path, story, edit)
