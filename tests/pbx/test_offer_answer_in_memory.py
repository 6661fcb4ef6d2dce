"""Offer/answer through the PBX (RFC 3264), in memory (tests/support/testbed.py): each
phone sees the PBX's address and port in the SDP it gets, never the other phone's; the
caller is answered with the callee's choice when it offered that codec (less the formats
it did not offer), and otherwise with the PBX's own answer from the caller's offer alone
(the call is then transcoded), the callee's choice being its first audio codec wherever
it lists telephone-event; early media is answered the same way, and a late offer's
answer passes through anchored; a callee that drops the SRTP it was offered is hung up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipbx import sdp
from ipbx.media.codecs import G722, OPUS, PCMA, PCMU, Codec
from tests.support.testbed import Testbed, play
from tests.support.user_agents import RTP_HOST, RTP_PORT, answer_to


def _codecs(body: bytes) -> list[str]:
    audio = sdp.SessionDescription.parse(body).audio
    assert audio is not None
    return [audio.rtpmaps()[pt].name for pt in audio.payload_types()]


def _anchored(body: bytes) -> bool:
    """Media goes to the PBX, not to the other phone (whose SDP says port 9)."""
    return sdp.remote_address(sdp.SessionDescription.parse(body))[1] != RTP_PORT


def test_a_caller_that_offered_the_callees_codec_gets_its_answer_anchored(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        assert _anchored(ringing.invite.body)
        ringing.answer()
        answer = await call.final()
        assert _codecs(answer.body) == ["PCMU", "telephone-event"]
        assert _anchored(answer.body)

    play(tmp_path, story)


def test_a_caller_without_the_callees_codec_is_answered_from_its_own_offer(
    tmp_path: Path,
) -> None:
    """The G.722-only caller's offer reaches the callee with every codec the PBX can
    transcode to after G.722; the G.711 phone picks PCMU, and the caller is answered in
    G.722, a codec it offered, not the callee's PCMU (RFC 3264 §6.1)."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (G722,))))
        ringing = await bob.rings()
        offered = _codecs(ringing.invite.body)
        assert offered[:2] == ["G722", "telephone-event"] and "PCMU" in offered
        ringing.answer()
        answer = await call.final()
        assert answer.status == 200
        assert _codecs(answer.body) == ["G722", "telephone-event"]
        assert (await call.hang_up()).status == 200
        await ringing.hung_up()

    play(tmp_path, story)


def _events_first(answer: bytes) -> bytes:
    """An answer listing telephone-event before its codec, as baresip does when the
    offer it answers lists telephone-event before that codec."""
    description = sdp.SessionDescription.parse(answer)
    audio = description.audio
    assert audio is not None
    audio.formats.reverse()
    return bytes(description)


def test_a_callee_listing_telephone_event_first_has_its_codec_transcoded(
    tmp_path: Path,
) -> None:
    """The Opus-only caller's offer reaches the G.711 callee as `opus telephone-event
    G722 PCMU ...`; the callee answers `101 0` (telephone-event, then PCMU). Its codec
    is PCMU, which the caller did not offer: the caller is answered in Opus, and the
    legs are transcoded (RFC 3264 §6.1)."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (OPUS,))))
        ringing = await bob.rings()
        reply = _events_first(answer_to(ringing.invite.body))
        assert _codecs(reply) == ["telephone-event", "PCMU"]
        ringing.answer(reply)
        answer = await call.final()
        assert answer.status == 200
        assert _codecs(answer.body) == ["opus", "telephone-event"]
        assert (await call.hang_up()).status == 200
        await ringing.hung_up()

    play(tmp_path, story)


def test_an_offer_that_changes_nothing_is_answered_on_its_own_leg(tmp_path: Path) -> None:
    """A re-INVITE whose SDP keeps its o= version changes nothing (RFC 3264 §8): a session
    refresh (RFC 4028). In a transcoded call, the G.722 caller's and the PCMU callee's
    each get the SDP they have from the PBX again, limited to what they offer, and the
    other phone hears nothing of it (relayed, the callee would get a G.722-only offer)."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        offer = bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (G722,)))
        call = alice.call("1001", offer)
        ringing = await bob.rings()
        bobs = answer_to(ringing.invite.body)
        ringing.answer(bobs)
        answer = await call.final()
        again = await call.request("INVITE", offer, "application/sdp")
        assert (again.status, again.body) == (200, answer.body)
        refreshed = await ringing.request("INVITE", bobs, "application/sdp")
        assert refreshed.status == 200
        assert _codecs(refreshed.body) == ["PCMU", "telephone-event"]
        assert _anchored(refreshed.body)
        assert await call.requests.none_within(0.5, lambda r: r.method == "INVITE")
        assert await ringing.requests.none_within(0.5, lambda r: r.method == "INVITE")
        assert (await call.hang_up()).status == 200
        await ringing.hung_up()

    play(tmp_path, story)


def test_a_caller_gets_only_the_formats_it_offered_of_the_callees_answer(
    tmp_path: Path,
) -> None:
    """The PCMU-only caller's offer reaches the callee with the codecs the PBX added
    after PCMU; a callee that answers PCMU, PCMA and telephone-event shares PCMU with
    the caller, which gets that answer without PCMA, a codec it never offered."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (PCMU,))))
        ringing = await bob.rings()
        ringing.answer(bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (PCMU, PCMA))))
        answer = await call.final()
        assert answer.status == 200
        assert _codecs(answer.body) == ["PCMU", "telephone-event"]
        assert _anchored(answer.body)

    play(tmp_path, story)


def test_early_media_in_a_codec_the_caller_lacks_is_transcoded(tmp_path: Path) -> None:
    """A 183 answering `101 0` to the Opus-only caller's offer: the caller's 183 is the
    PBX's own answer in Opus, and its 200 holds "that same exact answer" (RFC 3261
    §13.2.1)."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (OPUS,))))
        ringing = await bob.rings()
        bob.respond(ringing.tx, 183, _events_first(answer_to(ringing.invite.body)))
        early = await call.provisional(183)
        assert _codecs(early.body) == ["opus", "telephone-event"]
        ringing.answer(_events_first(answer_to(ringing.invite.body)))
        assert (await call.final()).body == early.body

    play(tmp_path, story)


def test_early_media_reaches_the_caller_anchored(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        bob.respond(ringing.tx, 183, answer_to(ringing.invite.body))
        early = await call.provisional(183)
        assert _codecs(early.body) == ["PCMU", "telephone-event"]
        assert _anchored(early.body)
        ringing.answer()
        assert (await call.final()).status == 200

    play(tmp_path, story)


def test_a_late_offer_and_its_answer_pass_through_anchored(tmp_path: Path) -> None:
    """RFC 3264 §2: the INVITE has no SDP, the callee's 2xx makes the offer and the
    caller's ACK answers it."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", b"")
        ringing = await bob.rings()
        assert ringing.invite.body == b""
        ringing.answer()
        relayed = await call.final()
        assert relayed.status == 200 and _anchored(relayed.body)
        ack = await ringing.received("ACK")
        assert _codecs(ack.body) == ["PCMU", "telephone-event"]
        assert _anchored(ack.body)

    play(tmp_path, story)


def _srtp_required(config: dict[str, Any]) -> None:
    config["extensions"][1]["srtp"] = "required"


def test_a_callee_that_answers_srtp_with_plain_rtp_is_hung_up(tmp_path: Path) -> None:
    """RFC 3264 §6: the answer keeps the offer's transport; the media would otherwise
    go in the clear. The caller gets 488."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        offered = sdp.SessionDescription.parse(ringing.invite.body).audio
        assert offered is not None and offered.proto == "RTP/SAVP"
        ringing.answer(bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (PCMU,))))
        assert (await call.final()).status == 488
        await ringing.hung_up()

    play(tmp_path, story, _srtp_required)


def test_srtp_ends_on_the_leg_that_speaks_it(tmp_path: Path) -> None:
    """The callee answers one of the keys it was offered; the plain RTP caller is
    answered in plain RTP."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        ringing.answer()
        answer = await call.final()
        assert answer.status == 200
        audio = sdp.SessionDescription.parse(answer.body).audio
        assert audio is not None and audio.proto == "RTP/AVP"
        assert not sdp.crypto_attributes(audio)

    play(tmp_path, story, _srtp_required)


def _flows(config: dict[str, Any]) -> None:
    config["conferences"] = [{"name": "standup", "announce_join": False}]
    config["numbers"] = [{"number": "800", "destination": "conference:standup"}]


def test_a_call_flow_answers_g711_first_any_codec_it_has_else_and_a_room_wideband(
    tmp_path: Path,
) -> None:
    """What ipbx answers itself (the echo test, a room): the offer's G.711 first, a
    phone without G.711 in the codec it has (not 488), a conference room in ipbx's own
    order (Opus, G.722 first: its mix runs at its best member's rate); an offer of
    nothing ipbx has gets 488 and no member stays in the room."""
    unknown = Codec("x-unknown", 98, 8000)

    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        wide = bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (OPUS, G722, PCMU)))
        cases = [
            ("9196", wide, "PCMU"),
            ("9196", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (G722,))), "G722"),
            ("800", wide, "opus"),
            ("800", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (G722, PCMA))), "G722"),
        ]
        for number, offer, codec in cases:
            call = alice.call(number, offer)
            answer = await call.final()
            assert answer.status == 200, (number, codec)
            assert _codecs(answer.body)[0] == codec, (number, _codecs(answer.body))
            assert (await call.hang_up()).status == 200
        refused = alice.call("800", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (unknown,))))
        assert (await refused.final()).status == 488
        assert lab.pbx.conferences.status("standup").members == ()

    play(tmp_path, story, _flows)


def _says_playback_rate(body: bytes, rate: str | None) -> None:
    """The SDP's Opus format gives `rate` as maxplaybackrate and sprop-maxcapturerate
    (RFC 7587 §6.1), or, with None, no maxplaybackrate."""
    audio = sdp.SessionDescription.parse(body).audio
    assert audio is not None
    pt = next(pt for pt, rtpmap in audio.rtpmaps().items() if rtpmap.name.lower() == "opus")
    limits = audio.format_parameters(pt)
    if rate is None:
        assert "maxplaybackrate" not in limits
    else:
        assert limits["maxplaybackrate"] == limits["sprop-maxcapturerate"] == rate


def test_an_opus_caller_transcoded_to_a_narrower_codec_is_told_how_wide_to_send(
    tmp_path: Path,
) -> None:
    """RFC 7587 §6.1: the Opus caller's answer says what the callee hears, 8 kHz audio
    for G.711 and 16 kHz for G.722 (maxplaybackrate, sprop-maxcapturerate); an Opus
    callee's answer passes through as it is."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        offer = sdp.make_offer(RTP_HOST, RTP_PORT, (OPUS,))
        audio = offer.audio
        assert audio is not None
        audio.attributes.insert(1, sdp.Attribute("fmtp", f"{OPUS.payload_type} useinbandfec=1"))
        for callee_codec, rate in ((PCMU, "8000"), (G722, "16000"), (OPUS, None)):
            call = alice.call("1001", bytes(offer))
            ringing = await bob.rings()
            ringing.answer(bytes(sdp.make_offer(RTP_HOST, RTP_PORT, (callee_codec,))))
            answer = await call.final()
            assert answer.status == 200
            _says_playback_rate(answer.body, rate)
            assert (await call.hang_up()).status == 200
            await ringing.hung_up()

    play(tmp_path, story)


def test_opus_added_to_a_narrower_callers_offer_says_how_wide_the_caller_hears(
    tmp_path: Path,
) -> None:
    """The callee's INVITE lists Opus after the caller's codecs; added by ipbx to a G.711
    offer it says 8000, to a G.722 one 16000 (RFC 7587 §6.1), and the caller's own Opus
    goes on as the caller wrote it."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        for offered, rate in (((PCMU,), "8000"), ((G722, PCMU), "16000"), ((OPUS,), None)):
            call = alice.call("1001", bytes(sdp.make_offer(RTP_HOST, RTP_PORT, offered)))
            ringing = await bob.rings()
            _says_playback_rate(ringing.invite.body, rate)
            ringing.answer()
            assert (await call.final()).status == 200
            assert (await call.hang_up()).status == 200
            await ringing.hung_up()

    play(tmp_path, story)
