"""ipbx rings browsers (contacts registered over SIP over WebSocket, RFC 7118) with a
WebRTC offer wherever it offers to one: the phones rung for a caller's INVITE (beside a
desk phone of the same extension, which still gets plain RTP), a ring group and a
queue's agents (ipbx's own offer); a late offer lets the browser offer in its 2xx; and
digits from a browser reach an IVR, as RFC 4733 events and as SIP INFO. aiortc is the
browser's media (tests/support/webrtc_peer.py), a websockets client its SIP stack
(tests/support/browser.py); `ipbx phone` calls."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from ipbx import sdp
from ipbx.media.dtmf import digit_packets
from ipbx.media.wav import read_wav
from ipbx.sip.message import Request, Response
from ipbx.store import CallRecord
from tests.support.browser import Browser as SipOverWebSocket
from tests.support.phones import Phone
from tests.support.ports import LOOPBACK, free_port
from tests.support.records import call_records
from tests.support.server import Extension, IpbxServer, extension_range, start_configured_ipbx
from tests.support.sipclient import (
    SipClient,
    ack_for,
    in_dialog,
    reply_to,
    send_authenticated_invite,
    udp_socket,
)
from tests.support.softphone import ipbx_phone, write_tone
from tests.support.tones import dominant_frequency
from tests.support.webrtc_peer import Browser as WebRtcPeer
from tests.support.webrtc_peer import loopback_ice

CALLER, BROWSER, AGENT, DESK = extension_range(4)
GROUP, QUEUE, MENU = "700", "600", "500"
BROWSER_HZ, PHONE_HZ = 440, 1000
WEBRTC_SIDE = {"ice-lite", "ice-ufrag", "ice-pwd", "candidate", "fingerprint", "rtcp-mux"}
# Chrome's offer lists telephone-event at Opus's rate and at 8 kHz.
CHROME_EVENTS = {110: "telephone-event/48000", 126: "telephone-event/8000"}


@dataclass
class Pbx:
    server: IpbxServer
    ws: str


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    ws = f"ws://{LOOPBACK}:{free_port('tcp')}"

    def edit(config: dict[str, Any]) -> None:
        config["sip"]["listen"].append(ws)
        members = [AGENT.number, DESK.number]
        config["groups"] = [{"name": "mixed", "members": members, "ring_seconds": 20}]
        config["queues"] = [{"name": "help", "strategy": "linear", "agents": [AGENT.number]}]
        config["ivrs"] = [
            {"name": "main", "greeting": "Press 4.", "options": {"4": "ivr:second"}},
            {
                "name": "second",
                "greeting": "Press 7.",
                "options": {"7": f"extension:{DESK.number}"},
            },
        ]
        config["numbers"] = [
            {"number": GROUP, "destination": "group:mixed"},
            {"number": QUEUE, "destination": "queue:help"},
            {"number": MENU, "destination": "ivr:main"},
        ]

    server = start_configured_ipbx(
        tmp_path_factory.mktemp("ipbx-browsers"), edit, extensions=extension_range(4)
    )
    yield Pbx(server, ws)
    alive = server.process.poll() is None
    server.stop()
    assert alive, f"the server died during the tests:\n{server.log_tail()}"


class WebPhone:
    """A browser tab signed in as `user`: SIP over the WebSocket, media from aiortc
    sending a tone of `hz` (limited to `codec` when given)."""

    def __init__(self, url: str, user: Extension, hz: float, codec: str | None = None) -> None:
        self.sip = SipOverWebSocket(url, user.number, user.password)
        self.peer = WebRtcPeer(hz, codec)

    async def register(self) -> None:
        assert (await asyncio.to_thread(self.sip.register)).status == 200

    async def rings(self) -> Request:
        """The next INVITE, which the browser answers 180 Ringing at once."""
        invite = await self.request("INVITE", timeout=10)
        self.sip.send(reply_to(invite, 180, []))
        return invite

    async def answer(self, invite: Request) -> bytes:
        """Answer with aiortc's SDP; the ACK comes. The answer sent."""
        answer = await self.peer.answer(invite.body)
        extra = [f"Contact: {self.sip.contact}", "Content-Type: application/sdp"]
        self.sip.send(reply_to(invite, 200, extra, answer))
        await self.request("ACK")
        return answer

    async def hung_up(self) -> None:
        """The other side's BYE, taken with 200."""
        self.sip.send(reply_to(await self.request("BYE", timeout=15), 200, []))

    async def request(self, method: str, timeout: float = 5.0) -> Request:
        return await asyncio.to_thread(self.sip.next_request, method, timeout)

    async def close(self) -> None:
        await self.peer.close()
        self.sip.close()


def _webrtc_offer(body: bytes) -> sdp.SessionDescription:
    """ipbx's offer to a browser: WebRTC (UDP/TLS/RTP/SAVPF with ipbx's ICE-lite side, its
    one host candidate, its fingerprint and a=setup:actpass)."""
    offer = sdp.SessionDescription.parse(body)
    audio = offer.audio
    assert audio is not None and audio.proto == "UDP/TLS/RTP/SAVPF"
    assert {a.name for a in (*audio.attributes, *offer.attributes)} >= WEBRTC_SIDE
    assert audio.attribute("setup") == "actpass"
    return offer


def _assert_tone(pcm: np.ndarray[Any, Any], rate: int, hz: float) -> None:
    steady = pcm[len(pcm) // 4 :]
    assert len(steady) > rate // 2
    assert dominant_frequency(steady, rate) == pytest.approx(hz, abs=15)


def test_a_phone_calls_a_browser_which_rings_beside_a_desk_phone_and_answers(
    pbx: Pbx, tmp_path: Path
) -> None:
    """1001 is signed in in a browser (Opus only) and on a desk phone. `ipbx phone` as
    1000 (G.711) calls 1001: the browser rings with ipbx's WebRTC offer on an endpoint of
    its own, the desk phone with plain RTP/AVP on another; the browser answers
    setup:active (ipbx is the DTLS server), the desk phone is cancelled, and the call is
    transcoded: each hears the other's tone."""
    tone = write_tone(tmp_path / "phone.wav", PHONE_HZ, 10)
    recording = tmp_path / "heard.wav"
    desk = Phone(pbx.server, BROWSER.number, BROWSER.password)
    try:
        with loopback_ice(), ipbx_phone(
            tmp_path, pbx.server.port, CALLER, "--call", BROWSER.number, "--play", str(tone),
            "--record", str(recording), "--duration", "5", "--timeout", "30",
        ) as caller:  # fmt: skip
            heard, rate = asyncio.run(_browser_beside_desk_phone(pbx, desk))
            status, out = caller.finish(30)
    finally:
        desk.close()
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), caller.log
    _assert_tone(heard, rate, PHONE_HZ)
    _assert_tone(read_wav(recording), 8000, BROWSER_HZ)


async def _browser_beside_desk_phone(pbx: Pbx, desk: Phone) -> tuple[np.ndarray[Any, Any], int]:
    browser = WebPhone(pbx.ws, BROWSER, BROWSER_HZ, codec="opus")
    try:
        await browser.register()
        invite = await browser.rings()
        offer = _webrtc_offer(invite.body)
        to_desk = await asyncio.to_thread(desk.rings)
        desk.ringing(to_desk)
        plain = sdp.SessionDescription.parse(to_desk.body)
        assert plain.audio is not None and plain.audio.proto == "RTP/AVP"
        assert not {a.name for a in plain.audio.attributes} & WEBRTC_SIDE
        assert plain.audio.port != offer.audio.port  # type: ignore[union-attr]
        answer = sdp.SessionDescription.parse(await browser.answer(invite))
        assert answer.audio is not None and answer.audio.attribute("setup") == "active"
        assert sdp.first_codec(answer.audio).name == "opus"
        await asyncio.to_thread(desk.cancelled, to_desk)
        heard = await browser.peer.hear(2.5)
        await browser.hung_up()
        return heard, browser.peer.rate
    finally:
        await browser.close()


def test_a_ring_group_rings_a_browser_and_a_desk_phone_and_the_desk_phone_answers(
    pbx: Pbx, tmp_path: Path
) -> None:
    """The group rings its members with ipbx's own offer: the browser (1002) as WebRTC,
    the desk phone (1003) in plain RTP. The desk phone answers; the browser is
    cancelled (487 to its INVITE, which ipbx ACKs)."""
    desk = Phone(pbx.server, DESK.number, DESK.password)
    try:
        with loopback_ice(), ipbx_phone(
            tmp_path, pbx.server.port, CALLER, "--call", GROUP, "--duration", "1",
            "--timeout", "30",
        ) as caller:  # fmt: skip
            asyncio.run(_desk_phone_answers_the_group(pbx, desk))
            status, out = caller.finish(30)
    finally:
        desk.close()
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), caller.log


async def _desk_phone_answers_the_group(pbx: Pbx, desk: Phone) -> None:
    browser = WebPhone(pbx.ws, AGENT, BROWSER_HZ)
    try:
        await browser.register()
        invite = await browser.rings()
        _webrtc_offer(invite.body)
        to_desk = await asyncio.to_thread(desk.rings)
        assert b"RTP/AVP" in to_desk.body and b"fingerprint" not in to_desk.body
        desk.answer(to_desk)
        cancel = await browser.request("CANCEL")
        assert cancel.call_id == invite.call_id
        browser.sip.send(reply_to(cancel, 200, []))
        browser.sip.send(reply_to(invite, 487, []))
        await browser.request("ACK")
        await asyncio.to_thread(desk.hung_up)
    finally:
        await browser.close()


def test_a_queue_agent_on_a_browser_answers_a_queue_call(pbx: Pbx, tmp_path: Path) -> None:
    """The queue's agent 1002 is signed in in a browser: the queue rings it with ipbx's
    own WebRTC offer; it answers in Opus and talks with the caller (G.711), each hearing
    the other's tone."""
    tone = write_tone(tmp_path / "phone.wav", PHONE_HZ, 12)
    recording = tmp_path / "heard.wav"
    with loopback_ice(), ipbx_phone(
        tmp_path, pbx.server.port, CALLER, "--call", QUEUE, "--play", str(tone),
        "--record", str(recording), "--duration", "6", "--timeout", "30",
    ) as caller:  # fmt: skip
        heard, rate = asyncio.run(_agent_answers(pbx))
        status, out = caller.finish(30)
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), caller.log
    _assert_tone(heard, rate, PHONE_HZ)
    # The caller heard music while waiting, then the agent: the end is the agent's.
    _assert_tone(read_wav(recording)[-2 * 8000 :], 8000, BROWSER_HZ)


async def _agent_answers(pbx: Pbx) -> tuple[np.ndarray[Any, Any], int]:
    agent = WebPhone(pbx.ws, AGENT, BROWSER_HZ)
    try:
        await agent.register()
        invite = await agent.rings()
        _webrtc_offer(invite.body)
        answer = sdp.SessionDescription.parse(await agent.answer(invite))
        assert answer.audio is not None and sdp.first_codec(answer.audio).name == "opus"
        heard = await agent.peer.hear(2.5)
        await agent.hung_up()
        return heard, agent.peer.rate
    finally:
        await agent.close()


def test_a_late_offer_reaches_a_browser_which_offers_in_its_2xx(pbx: Pbx) -> None:
    """An INVITE without SDP (RFC 3264 §2) to a browser: the browser's 2xx carries its
    WebRTC offer, the caller gets ipbx's plain RTP offer; the caller's ACK brings the
    answer, and the browser's ACK ipbx's WebRTC answer with a=setup:active: ipbx opens
    the DTLS handshake, and the browser's PCMU reaches the caller through it."""
    caller, rtp = SipClient(pbx.server.port, timeout=10), udp_socket()
    try:
        with loopback_ice():
            asyncio.run(_late_offer_to_browser(pbx, caller, rtp))
    finally:
        caller.close()
        rtp.close()


async def _late_offer_to_browser(pbx: Pbx, caller: SipClient, rtp: socket.socket) -> None:
    browser = WebPhone(pbx.ws, BROWSER, BROWSER_HZ, codec="PCMU")
    try:
        await browser.register()
        contact = f"Contact: <sip:{CALLER.number}@{LOOPBACK}:{caller.local_port}>"
        uri = f"sip:{BROWSER.number}@{LOOPBACK}"
        await asyncio.to_thread(send_authenticated_invite, caller, uri, [contact])
        invite = await browser.rings()
        assert invite.body == b""
        extra = [f"Contact: {browser.sip.contact}", "Content-Type: application/sdp"]
        browser.sip.send(reply_to(invite, 200, extra, await browser.peer.offer()))
        ok = await asyncio.to_thread(_final, caller)
        assert ok.status == 200 and b"RTP/AVP" in ok.body and b"fingerprint" not in ok.body
        answer = _plain_answer(rtp.getsockname()[1])
        caller.send(ack_for(ok, caller, answer))
        ack = await browser.request("ACK")
        assert b"UDP/TLS/RTP/SAVPF" in ack.body and b"a=setup:active" in ack.body
        await browser.peer.answered(ack.body)
        data = await asyncio.to_thread(rtp.recv, 2048)
        assert data[1] & 0x7F == 0  # the browser's PCMU, keyed by ipbx's handshake
        local, remote = str(ok.headers.get("From")), str(ok.headers.get("To"))
        target = str(ok.contacts[0].uri)
        caller.send(in_dialog(caller, "BYE", target, local, remote, ok.call_id, 3))
        await browser.hung_up()
    finally:
        await browser.close()


def _final(caller: SipClient) -> Response:
    """The final response to the INVITE, past the challenge and the 180."""
    while (response := caller.receive()) is not None:
        if response.cseq.number == 2 and response.status >= 200:
            return response
    raise AssertionError("no final response to the INVITE")


def _plain_answer(port: int) -> bytes:
    """A desk phone's answer: PCMU on `port`."""
    return (
        f"v=0\r\no=- 9 9 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    ).encode()


def test_digits_from_a_browser_reach_an_ivr_as_sip_info_and_rfc_4733(pbx: Pbx) -> None:
    """A browser calls the IVR offering Opus and G.711 with telephone-event at 48 and
    8 kHz, as Chrome does: ipbx answers G.711 with the 8 kHz telephone-event beside it.
    It presses 4 as SIP INFO (application/dtmf), then 7 as RFC 4733 events over its
    DTLS-SRTP: the menus lead to extension 1003, whose phone rings, and the call record
    holds both digits."""
    desk = Phone(pbx.server, DESK.number, DESK.password)
    try:
        with loopback_ice():
            asyncio.run(_browser_presses_keys(pbx, desk))
    finally:
        desk.close()
    record = _record_of(pbx.server, BROWSER.number)
    assert record.digits == "47"
    assert record.path.startswith("ivr:main,ivr:second,extension:1003")


def _record_of(server: IpbxServer, caller: str) -> CallRecord:
    """The record of `caller`'s call, once written."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [r for r in call_records(server) if r.caller == caller]
        if mine:
            return mine[0]
        time.sleep(0.1)
    raise AssertionError(f"no call record of {caller}")


async def _browser_presses_keys(pbx: Pbx, desk: Phone) -> None:
    browser = WebPhone(pbx.ws, BROWSER, BROWSER_HZ)
    sip = browser.sip
    try:
        await browser.register()
        offer = await browser.peer.offer()
        uri, body = f"sip:{MENU}@{LOOPBACK}", _with_events(offer)
        assert await asyncio.to_thread(sip.send_authenticated, "INVITE", uri, body=body) is None
        ok = await asyncio.to_thread(sip.final, 10)
        assert ok.status == 200, ok
        answer = sdp.SessionDescription.parse(ok.body)
        assert answer.audio is not None and sdp.first_codec(answer.audio).name == "PCMU"
        assert sdp.telephone_event(answer, sdp.first_codec(answer.audio)) == 126
        assert b"telephone-event/48000" not in ok.body
        target = str(ok.contacts[0].uri)
        local, remote = ok.headers.get("From"), ok.headers.get("To")
        sip.send(sip.message("ACK", target, call_id=ok.call_id, cseq=2, from_=local, to=remote))
        await browser.peer.answered(ok.body)
        await browser.peer.hear(0.5)  # DTLS-SRTP is up
        info = sip.message(
            "INFO", target, call_id=ok.call_id, cseq=3, from_=local, to=remote, body=b"4",
            content_type="application/dtmf",
        )  # fmt: skip
        sip.send(info)
        assert (await asyncio.to_thread(sip.final)).status == 200
        await _send_rfc_4733(browser.peer, "7", 126)
        to_desk = await asyncio.to_thread(desk.rings)
        desk.ringing(to_desk)
        sip.send(sip.message("BYE", target, call_id=ok.call_id, cseq=4, from_=local, to=remote))
        assert (await asyncio.to_thread(sip.final)).status == 200
        await asyncio.to_thread(desk.cancelled, to_desk)
    finally:
        await browser.close()


def _with_events(offer: bytes) -> bytes:
    """aiortc's offer with telephone-event listed as Chrome lists it."""
    lines = offer.decode().split("\r\n")
    index = next(i for i, line in enumerate(lines) if line.startswith("m=audio"))
    lines[index] += "".join(f" {pt}" for pt in CHROME_EVENTS)
    rtpmaps = [f"a=rtpmap:{pt} {name}" for pt, name in CHROME_EVENTS.items()]
    return "\r\n".join(lines[: index + 1] + rtpmaps + lines[index + 1 :]).encode()


async def _send_rfc_4733(peer: WebRtcPeer, digit: str, payload_type: int) -> None:
    """One key press as telephone-events through the peer's own DTLS-SRTP transport
    (aiortc has no DTMF sender): a stream of its own (SSRC), paced every 20 ms."""
    transport = peer.transceiver.sender.transport
    ssrc, first = secrets.randbits(32), secrets.randbits(16)
    for index, event in enumerate(digit_packets(digit, secrets.randbits(32))):
        packet = RtpPacket(
            payload_type=payload_type, marker=int(event.marker), timestamp=event.timestamp,
            sequence_number=(first + index) % 65536, ssrc=ssrc, payload=event.payload,
        )  # fmt: skip
        await transport._send_rtp(packet.serialize())
        await asyncio.sleep(0.02)
