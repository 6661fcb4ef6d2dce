"""WebRTC legs with a real WebRTC stack (aiortc, tests/support/webrtc_peer.py) as the
browser: ICE with ipbx as the ICE-lite side, DTLS-SRTP keyed by the handshake and
checked against a=fingerprint (RFC 5763, 5764), rtcp-mux, bridged to a plain RTP phone;
the tones are checked by frequency in both directions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from ipbx import sdp
from ipbx.media.bridge import connect
from ipbx.media.codecs import OPUS, PCMU
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool
from ipbx.media.srtp import SrtpContext, new_crypto
from ipbx.media.wav import read_wav
from ipbx.media.webrtc import certificate
from ipbx.pbx.call import negotiate
from ipbx.pbx.call.model import Leg
from ipbx.sip.message import Response
from tests.support.ports import LOOPBACK, free_udp_range
from tests.support.server import extension_range, start_configured_ipbx
from tests.support.sipclient import SipClient, ack_for, in_dialog, send_authenticated_invite
from tests.support.softphone import ipbx_phone, write_tone
from tests.support.tones import dominant_frequency
from tests.support.webrtc_peer import Browser, loopback_ice

CALLER, CALLEE, _ = extension_range(3)
BROWSER_HZ, PHONE_HZ = 440, 1000


def _attributes(body: bytes) -> tuple[str, set[str]]:
    """The audio stream's proto, and the attribute names of the audio stream and session."""
    description = sdp.SessionDescription.parse(body)
    audio = description.audio
    assert audio is not None
    names = {a.name for a in (*audio.attributes, *description.attributes)}
    return audio.proto, names


WEBRTC_SIDE = {"ice-lite", "ice-ufrag", "ice-pwd", "candidate", "fingerprint", "rtcp-mux"}


def _assert_tone(pcm: np.ndarray[Any, Any], rate: int, hz: float) -> None:
    steady = pcm[len(pcm) // 4 :]
    assert len(steady) > rate // 2
    assert dominant_frequency(steady, rate) == pytest.approx(hz, abs=15)


def test_a_browser_calls_a_phone_and_each_hears_the_other(tmp_path: Path) -> None:
    """A browser offering Opus only calls 1001, an `ipbx phone` in G.711. The phone's
    INVITE is plain RTP/AVP with none of the browser's ICE or DTLS attributes; the
    browser's 200 OK is ipbx's ICE-lite, DTLS (setup:active, RFC 5763 §5) and rtcp-mux
    side in Opus; the call is transcoded, and each hears the other's tone."""
    ipbx = start_configured_ipbx(tmp_path / "ipbx", lambda config: None)
    try:
        tone = write_tone(tmp_path / "phone.wav", PHONE_HZ, 8)
        recording = tmp_path / "heard.wav"
        with ipbx_phone(
            tmp_path, ipbx.port, CALLEE, "--register", "--answer", "--play", str(tone),
            "--record", str(recording), "--timeout", "30",
        ) as phone:  # fmt: skip
            phone.wait_for("registered as", 15)
            with loopback_ice():
                answer, heard, rate = asyncio.run(_browser_calls(ipbx.port))
            status, out = phone.finish(20)
            assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log
    finally:
        ipbx.stop()
    proto, names = _attributes(answer)
    assert proto == "UDP/TLS/RTP/SAVPF" and names >= WEBRTC_SIDE
    audio = sdp.SessionDescription.parse(answer).audio
    assert audio is not None and audio.attribute("setup") == "active"
    assert sdp.first_codec(audio).name == "opus"
    _assert_tone(heard, rate, PHONE_HZ)
    _assert_tone(read_wav(recording), 8000, BROWSER_HZ)


async def _browser_calls(port: int) -> tuple[bytes, np.ndarray[Any, Any], int]:
    """The browser's side: INVITE 1001 with its offer, ACK the 2xx, hear 2 s, BYE.
    Returns the answer, what it heard and the rate."""
    browser = Browser(BROWSER_HZ, codec="opus")
    client = SipClient(port, timeout=15)
    try:
        offer = await browser.offer()
        await asyncio.to_thread(
            send_authenticated_invite, client, f"sip:{CALLEE.number}@{LOOPBACK}",
            ["Content-Type: application/sdp"], offer,
        )  # fmt: skip
        ok = await asyncio.to_thread(client.receive)
        assert isinstance(ok, Response) and ok.status == 200, ok
        client.send(ack_for(ok, client))
        await browser.answered(ok.body)
        heard = await browser.hear(2.5)
        target = ok.contacts[0].uri
        bye = in_dialog(
            client, "BYE", str(target), str(ok.headers.get("From")),
            str(ok.headers.get("To")), ok.call_id, 3,
        )  # fmt: skip
        client.send(bye)
        return ok.body, heard, browser.rate
    finally:
        await browser.close()
        client.close()


@pytest.mark.parametrize("sdes", [False, True], ids=["plain RTP", "SDES-SRTP"])
def test_ipbx_offers_a_browser_webrtc_and_relays_it_to_a_phone(tmp_path: Path, sdes: bool) -> None:
    """A phone's PCMU offer reaches a browser as ipbx's WebRTC offer (ice-lite, its
    candidate, fingerprint, setup:actpass); the browser answers setup:active, so ipbx is
    the DTLS server; the phone gets its own transport back (RTP/AVP, or RTP/SAVP with
    ipbx's SDES key) without the browser's; PCMU is relayed, SRTP ended and begun on
    each leg, and each hears the other's tone. The browser's re-offer (actpass again)
    is answered passive: ipbx keeps its DTLS role in the association."""
    with loopback_ice():
        asyncio.run(_offer_to_browser(tmp_path, sdes))


async def _offer_to_browser(tmp_path: Path, sdes: bool) -> None:
    first = free_udp_range(8)[0]
    pool: PortPool[Any] = PortPool(LOOPBACK, first, first + 7)
    phone = await MediaEndpoint.open(pool, latching=False)
    towards_phone, towards_browser = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
    nobody = cast(Any, None)
    a = Leg(nobody, (LOOPBACK, 5060), towards_phone, nobody)
    b = Leg(nobody, (LOOPBACK, 5062), towards_browser, nobody)
    browser = Browser(BROWSER_HZ)
    try:
        phone_offer = sdp.make_offer(LOOPBACK, phone.local_address[1], (PCMU,))
        phone_key = new_crypto(1)
        if sdes:
            audio = phone_offer.audio
            assert audio is not None
            audio.proto = sdp.SAVP
            audio.attributes.append(sdp.Attribute("crypto", str(phone_key)))
        body = negotiate.callee_offer(a, phone_offer, towards_browser, LOOPBACK, (PCMU,))
        offer = negotiate.offer_for(body, towards_browser, LOOPBACK, browser=True)
        proto, names = _attributes(offer)
        assert proto == "UDP/TLS/RTP/SAVPF" and names >= WEBRTC_SIDE
        assert f"{LOOPBACK} {towards_browser.local_address[1]} typ host" in offer.decode()
        assert b"a=setup:actpass" in offer
        answer = await browser.answer(offer)
        assert b"a=setup:active" in answer
        for_phone = negotiate.forward(b, sdp.SessionDescription.parse(answer), a, LOOPBACK)
        proto, names = _attributes(for_phone)
        assert proto == ("RTP/SAVP" if sdes else "RTP/AVP") and not names & WEBRTC_SIDE
        described = sdp.SessionDescription.parse(for_phone)
        phone.set_remote(*sdp.remote_address(described), PCMU)
        if sdes:
            assert described.audio is not None
            phone.set_srtp(SrtpContext(phone_key, sdp.crypto_attributes(described.audio)[0]))
        connect(towards_phone, towards_browser)
        recording = tmp_path / "phone.wav"
        phone.record(recording)
        playing = asyncio.ensure_future(phone.play(write_tone(tmp_path / "t.wav", PHONE_HZ, 6)))
        heard = await browser.hear(2.5)
        playing.cancel()
        phone.stop_recording()
        assert towards_browser.webrtc is not None and towards_browser.webrtc.keyed
        _assert_tone(heard, browser.rate, PHONE_HZ)
        _assert_tone(read_wav(recording), 8000, BROWSER_HZ)
        # The browser offers again (a hold, say) with a=setup:actpass, as browsers do:
        # the answer keeps ipbx the DTLS server of the association, which stays keyed.
        reoffer = await browser.offer()
        assert b"a=setup:actpass" in reoffer
        negotiate.forward(b, sdp.SessionDescription.parse(reoffer), a, LOOPBACK)
        for_browser = negotiate.forward(a, described, b, LOOPBACK)
        assert b"a=setup:passive" in for_browser
        await browser.answered(for_browser)
        assert towards_browser.webrtc.keyed
    finally:
        await browser.close()
        for endpoint in (phone, towards_phone, towards_browser):
            endpoint.close()


def test_two_browsers_talk_through_ipbx_each_on_its_own_dtls_srtp(tmp_path: Path) -> None:
    """Browser A's Opus offer reaches browser B as ipbx's own WebRTC offer; B's answer
    reaches A as ipbx's WebRTC answer (A's mid, our ICE and fingerprint, not B's): SRTP
    is ended and begun again on each leg, and each browser hears the other's tone."""
    with loopback_ice():
        asyncio.run(_browser_to_browser())


async def _browser_to_browser() -> None:
    first = free_udp_range(4)[0]
    pool: PortPool[Any] = PortPool(LOOPBACK, first, first + 3)
    towards_a, towards_b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
    alice, bob = Browser(BROWSER_HZ, codec="opus"), Browser(PHONE_HZ, codec="opus")
    nobody = cast(Any, None)
    try:
        offer = sdp.SessionDescription.parse(await alice.offer())
        a = Leg(nobody, (LOOPBACK, 5060), towards_a, nobody, offer=offer)
        b = Leg(nobody, (LOOPBACK, 5062), towards_b, nobody)
        body = negotiate.callee_offer(a, offer, towards_b, LOOPBACK, (OPUS, PCMU))
        answer = await bob.answer(negotiate.offer_for(body, towards_b, LOOPBACK, browser=True))
        for_alice = negotiate.join(a, b, sdp.SessionDescription.parse(answer), LOOPBACK, (OPUS,))
        assert towards_b.webrtc is not None and towards_a.webrtc is not None
        assert towards_a.webrtc.local.ufrag.encode() in for_alice
        assert towards_b.webrtc.local.ufrag.encode() not in for_alice
        await alice.answered(for_alice)
        _assert_tone(await alice.hear(2.5), alice.rate, PHONE_HZ)
        _assert_tone(await bob.hear(2.5), bob.rate, BROWSER_HZ)
    finally:
        await alice.close()
        await bob.close()
        towards_a.close()
        towards_b.close()


def test_a_browser_whose_certificate_is_not_its_fingerprint_gets_no_media() -> None:
    """RFC 5763 §5: the certificate offered in DTLS must match a=fingerprint. With the
    fingerprint in the offer replaced, ipbx ends the handshake without keys and sends
    nothing, though ICE succeeded and the leg echoes what it hears."""
    with loopback_ice():
        asyncio.run(_forged_fingerprint())


async def _forged_fingerprint() -> None:
    first = free_udp_range(2)[0]
    pool: PortPool[Any] = PortPool(LOOPBACK, first, first + 1)
    endpoint = await MediaEndpoint.open(pool)
    browser = Browser(BROWSER_HZ, codec="PCMU")
    nobody = cast(Any, None)
    try:
        offer = sdp.SessionDescription.parse(await browser.offer())
        audio = offer.audio
        assert audio is not None
        for attribute in audio.attributes:
            if attribute.name == "fingerprint":
                attribute.value = certificate().fingerprint  # ipbx's, not the browser's
        leg = Leg(nobody, (LOOPBACK, 5060), endpoint, nobody)
        answer = negotiate.answer(leg, offer, LOOPBACK, (PCMU,))
        endpoint.echo()
        await browser.answered(bytes(answer))
        transport = endpoint.webrtc
        assert transport is not None
        async with asyncio.timeout(10):
            while not transport.failed:
                await asyncio.sleep(0.02)
        assert not transport.keyed and endpoint.stats.packets_sent == 0
    finally:
        await browser.close()
        endpoint.close()
