"""SRTP by policy: offered to a phone registered over TLS, required per extension; and
the codec preference of `media.codecs` in what ipbx offers a callee."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ipbx import sdp
from ipbx.media.codecs import PCMU, create_decoder
from ipbx.media.rtp import RtpPacket
from ipbx.media.srtp import AES_CM_128_HMAC_SHA1_80, SrtpContext, new_crypto
from tests.support.media import dominant_frequency
from tests.support.ports import free_port, free_udp_range
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.sipclient import SipClient, next_request, reply_to, send_authenticated_invite
from tests.support.softphone import ipbx_phone, write_tone

CALLER, CALLEE, STRICT = extension_range(3)
LOOPBACK = "127.0.0.1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[IpbxServer, int]]:
    """ipbx on UDP and TLS; 1002 requires SRTP; codecs preferred PCMA, then PCMU."""
    tls_port = free_port("tcp")

    def edit(config: dict[str, Any]) -> None:
        config["sip"]["listen"].append(f"tls://{LOOPBACK}:{tls_port}")
        config["extensions"][2]["srtp"] = "required"
        config["media"]["codecs"] = ["PCMA", "pcmu"]

    ipbx = start_configured_ipbx(tmp_path / "ipbx", edit)
    try:
        yield ipbx, tls_port
    finally:
        code = ipbx.stop()
        print(f"--- ipbx (pid {ipbx.pid}, exit {code}) log tail:\n{ipbx.log_tail()}")


def _offer(port: int, proto: str = "RTP/AVP", extra: str = "") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
    ).encode()


def test_a_phone_on_tls_is_offered_srtp_and_gets_only_ciphertext(
    server: tuple[IpbxServer, int], tmp_path: Path
) -> None:
    """1001 registers over TLS; 1000 (plain RTP) calls it with a 1 kHz tone. The INVITE
    offers RTP/SAVP with a key per suite; with our answer's key, the packets ipbx sends
    decrypt to the tone, and they are not the tone in the clear."""
    ipbx, tls_port = server
    phone = SipClient(tls_port, transport="tls", timeout=10)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((LOOPBACK, free_udp_range(2)[0]))
    rtp.settimeout(5)
    try:
        assert phone.register(CALLEE.number, CALLEE.password, contact_port=phone.local_port)
        tone = write_tone(tmp_path / "1000hz.wav", 1000, 4)
        with ipbx_phone(
            tmp_path, ipbx.port, CALLER, "--call", CALLEE.number, "--play", str(tone),
            "--duration", "4", "--timeout", "20",
        ) as caller:  # fmt: skip
            invite = next_request(phone, "INVITE")
            offer = sdp.SessionDescription.parse(invite.body)
            assert offer.audio is not None and offer.audio.proto == "RTP/SAVP"
            keys = {c.tag: c for c in sdp.crypto_attributes(offer.audio)}
            assert {c.suite for c in keys.values()} >= {AES_CM_128_HMAC_SHA1_80}
            tag = next(t for t, c in keys.items() if c.suite == AES_CM_128_HMAC_SHA1_80)
            ours = new_crypto(tag, AES_CM_128_HMAC_SHA1_80)
            contact = f"Contact: <sip:{CALLEE.number}@{LOOPBACK}:{phone.local_port};transport=tls>"
            answer = _offer(rtp.getsockname()[1], "RTP/SAVP", f"a=crypto:{ours}\r\n")
            phone.send(reply_to(invite, 200, [contact, "Content-Type: application/sdp"], answer))
            context = SrtpContext(ours, keys[tag])
            wire, clear = [], []
            for _ in range(100):
                data = rtp.recv(2048)
                wire.append(data)
                clear.append(RtpPacket.parse(context.unprotect(data)))
            caller.finish()
    finally:
        phone.close()
        rtp.close()
    decoded = np.concatenate([create_decoder(PCMU).decode(p.payload) for p in clear])
    assert dominant_frequency(decoded) == pytest.approx(1000, abs=20)
    in_the_clear = {bytes(p.payload) for p in clear}
    assert not any(payload in data for data in wire for payload in in_the_clear)


def test_an_extension_that_requires_srtp_cannot_call_in_the_clear(
    server: tuple[IpbxServer, int],
) -> None:
    ipbx, _ = server
    client = SipClient(ipbx.port, timeout=3)
    try:
        send_authenticated_invite(
            client, f"sip:{CALLER.number}@{LOOPBACK}", ["Content-Type: application/sdp"],
            _offer(free_port("udp")), user=STRICT.number, password=STRICT.password,
        )  # fmt: skip
        refusal = client.receive()
        assert refusal is not None and refusal.status == 488
    finally:
        client.close()


def test_a_callee_is_offered_srtp_when_required_and_our_codec_preference(
    server: tuple[IpbxServer, int],
) -> None:
    """1002 requires SRTP, registered over plain UDP: still offered RTP/SAVP. The caller
    offers only PCMU; ipbx adds the codecs it can transcode to in `media.codecs` order."""
    ipbx, _ = server
    callee = SipClient(ipbx.port, timeout=5)
    caller = SipClient(ipbx.port, timeout=5)
    try:
        assert callee.register(STRICT.number, STRICT.password)
        send_authenticated_invite(
            caller, f"sip:{STRICT.number}@{LOOPBACK}", ["Content-Type: application/sdp"],
            _offer(free_port("udp")),
        )  # fmt: skip
        invite = next_request(callee, "INVITE")
        offer = sdp.SessionDescription.parse(invite.body)
        assert offer.audio is not None and offer.audio.proto == "RTP/SAVP"
        assert len(sdp.crypto_attributes(offer.audio)) == 2
        names = [offer.audio.rtpmaps()[pt].name.upper() for pt in offer.audio.payload_types()]
        assert names == ["PCMU", "PCMA"]  # no Opus or G.722: not in media.codecs
        callee.send(reply_to(invite, 486, []))
        busy = caller.receive()
        assert busy is not None and busy.status == 486
    finally:
        callee.close()
        caller.close()
