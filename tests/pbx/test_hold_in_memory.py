"""Hold and resume, in memory (tests/support/testbed.py): a party holds with a
re-INVITE whose offer says sendonly and resumes with one saying sendrecv (RFC 3264
§8.4). Without music the PBX passes the re-INVITE to the other phone, which answers
recvonly; with music in DATA_DIR/moh the PBX answers the hold itself, plays the music
to the other party (who is not asked anything) and joins the two again on resume. The
real-socket version, with audio: test_music_on_hold.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.softphone import write_tone
from tests.support.testbed import Testbed, play
from tests.support.user_agents import Call, connected, direction, offer

SDP = "application/sdp"


def _music_on_hold(tmp_path: Path) -> None:
    """Music in DATA_DIR/moh of the PBX that play() builds in `tmp_path`."""
    moh = tmp_path / "data" / "moh"
    moh.mkdir(parents=True)
    write_tone(moh / "music.wav", 500, 2)


def _reinvited(call: Call) -> bool:
    return any(r.method == "INVITE" for r in call.requests.items)


@pytest.mark.parametrize("holder", ["caller", "callee"])
def test_without_music_the_hold_is_passed_to_the_other_phone(tmp_path: Path, holder: str) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        holding, held = (call, answered) if holder == "caller" else (answered, call)

        on_hold = await holding.hold()
        assert (on_hold.status, direction(on_hold)) == (200, "recvonly")
        reinvite = await held.received("INVITE")
        assert direction(reinvite) == "sendonly"
        await held.received("ACK")  # the PBX completes the re-INVITE it sent

        resumed = await holding.resume()
        assert (resumed.status, direction(resumed)) == (200, "sendrecv")
        assert direction(await held.received("INVITE")) == "sendrecv"
        assert (await holding.hang_up()).status == 200
        await held.hung_up()
        [record] = await lab.records()
        assert record.path == "extension:1001"

    play(tmp_path, story)


def test_with_music_the_pbx_answers_the_hold_and_the_other_phone_is_not_asked(
    tmp_path: Path,
) -> None:
    _music_on_hold(tmp_path)

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        on_hold = await call.hold()
        assert (on_hold.status, direction(on_hold)) == (200, "recvonly")
        resumed = await call.resume()
        assert (resumed.status, direction(resumed)) == (200, "sendrecv")
        assert not _reinvited(answered)
        assert (await call.hang_up()).status == 200
        await answered.hung_up()
        [record] = await lab.records()
        assert record.path == "extension:1001,hold"

    play(tmp_path, story)


def test_an_inactive_hold_is_answered_inactive(tmp_path: Path) -> None:
    """RFC 3264 §6.1: an offer saying inactive is answered inactive."""
    _music_on_hold(tmp_path)

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, _ = await connected(alice, bob)
        on_hold = await call.hold("inactive")
        assert (on_hold.status, direction(on_hold)) == (200, "inactive")

    play(tmp_path, story)


def test_a_hold_that_keeps_the_sdp_version_is_a_hold(tmp_path: Path) -> None:
    """A phone (or a SIPp scenario) that holds with its first SDP's o= line unchanged,
    only sendonly instead of sendrecv, against RFC 3264 §8: the SDP changed, so it is an
    offer all the same, passed to the other phone; the same SDP again is a refresh,
    answered by the PBX alone."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        first = offer()
        call = alice.call("1001", first)
        answered = await bob.rings()
        answered.answer()
        assert (await call.final()).status == 200
        held = await call.request("INVITE", first.replace(b"sendrecv", b"sendonly"), SDP)
        assert (held.status, direction(held)) == (200, "recvonly")
        assert direction(await answered.received("INVITE")) == "sendonly"
        again = await call.request("INVITE", first.replace(b"sendrecv", b"sendonly"), SDP)
        assert (again.status, again.body) == (200, held.body)
        assert await answered.requests.none_within(0.5, lambda r: r.method == "INVITE")
        assert (await call.hang_up()).status == 200

    play(tmp_path, story)
