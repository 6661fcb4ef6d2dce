"""`ipbx phone` against baresip, through ipbx: baresip registers as 1000 and answers
automatically, sending a 1 kHz tone from a file; `ipbx phone` registered as 1001 calls it
with a 700 Hz tone. Each must hear the other's tone: ours in baresip's decoded dump
(sndfile module), baresip's in our recording. Two baresips with no codec in common (Opus
only, PCMU only) call each other the same way, both directions.

baresip's Contact user is `1000-0x...` with +sip.instance (PEERS.md): the PBX has to route
to the registered Contact URI as sent, which this test exercises too.

baresip 1.0.0 (libre) fails a REGISTER outright on a SHA-256 challenge, which is why ipbx
offers MD5 alone unless `sip.digest_algorithms` says otherwise; this test runs the
default, so it also guards that choice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ipbx import sdp
from tests.support.baresip import (
    BARESIP,
    PHONE,
    TOLERANCE_HZ,
    baresip_calls_baresip,
    baresip_calls_phone,
    baresip_tone,
    start_baresip,
    wait_registered,
)
from tests.support.processes import stop_process
from tests.support.server import IpbxFactory
from tests.support.softphone import analyse, ipbx_phone, write_tone


def test_ipbx_phone_calls_baresip(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    server = ipbx_server(extensions=2)
    baresip_tone = write_tone(tmp_path / "1000hz.wav", 1000, 5)
    our_tone = write_tone(tmp_path / "700hz.wav", 700, 3)
    recording = tmp_path / "heard-by-ipbx-phone.wav"
    baresip = start_baresip(
        tmp_path, registrar_port=server.port, user=BARESIP, audio_file=baresip_tone, seconds=25
    )
    try:
        wait_registered(server, BARESIP.number)
        with ipbx_phone(
            tmp_path, server.port, PHONE,
            "--register", "--call", BARESIP.number, "--play", str(our_tone),
            "--record", str(recording), "--timeout", "20",
        ) as phone:  # fmt: skip
            status, out = phone.finish()
    finally:
        stop_process(baresip)
    baresip_log = (tmp_path / f"baresip-{BARESIP.number}.log").read_text(errors="replace")
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log + baresip_log
    heard_by_us = analyse(recording)
    assert heard_by_us.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert heard_by_us.seconds >= 1.0
    dumps = sorted((tmp_path / "snd").glob("dump-*-dec.wav"))
    assert dumps, baresip_log
    heard_by_baresip = analyse(dumps[-1])
    assert heard_by_baresip.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)
    assert heard_by_baresip.seconds >= 1.0


def test_srtp_caller_to_plain_rtp_phone(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    """baresip with mandatory SDES-SRTP calls `ipbx phone`, which speaks plain RTP only:
    ipbx ends SRTP on the caller's leg. baresip refuses unencrypted media, so
    its hearing our tone shows our packets to it were SRTP; our hearing its tone shows
    ipbx decrypted its SRTP."""
    server = ipbx_server(extensions=2)
    tone = write_tone(tmp_path / "1000hz.wav", 1000, 4)
    heard_by_us, heard_by_baresip, log = baresip_calls_phone(
        server, tmp_path, tone, media_encryption="srtp-mand"
    )
    assert "SRTP is Enabled" in log, log  # baresip's leg negotiated SDES
    assert heard_by_us.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ), log
    assert heard_by_baresip.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)
    assert heard_by_baresip.seconds >= 1.0


def test_opus_only_caller_to_pcmu_only_phone_is_transcoded(
    ipbx_server: IpbxFactory, tmp_path: Path
) -> None:
    """baresip offering only Opus calls `ipbx phone`, which speaks only G.711: no codec
    in common, so ipbx transcodes both ways and each hears the other's tone."""
    server = ipbx_server(extensions=2)
    tone = baresip_tone(tmp_path / "1000hz.wav", 1000, 4, "opus/48000/2")
    heard_by_us, heard_by_baresip, log = baresip_calls_phone(
        server, tmp_path, tone, ("--codec", "PCMU"), codecs="opus/48000/2"
    )
    assert "transcoding opus <-> PCMU" in server.log_tail(100)
    assert heard_by_us.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ), server.log_tail()
    assert heard_by_us.seconds >= 1.0
    assert heard_by_baresip.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ), log
    assert heard_by_baresip.seconds >= 1.0


def _answer_in_trace(log: str) -> list[str]:
    """The encodings of baresip's 200 answer in the order of its m= line, read from its
    SIP trace (the message, a blank line, the SDP, then the trace's colour codes)."""
    message = log.replace("\r\n", "\n")[log.index("SIP/2.0 200 Answering") :]
    body = message.split("\n\n", 1)[1].split("\x1b", 1)[0]
    audio = sdp.SessionDescription.parse(body).audio
    assert audio is not None
    rtpmaps = audio.rtpmaps()
    return [rtpmaps[pt].name for pt in audio.payload_types()]


@pytest.mark.parametrize(
    ("caller", "callee", "transcoding"),
    [("opus/48000/2", "PCMU", "opus <-> PCMU"), ("PCMU", "opus/48000/2", "PCMU <-> opus")],
    ids=["opus-calls-pcmu", "pcmu-calls-opus"],
)
def test_opus_only_and_pcmu_only_baresips_hear_each_other(
    ipbx_server: IpbxFactory, tmp_path: Path, caller: str, callee: str, transcoding: str
) -> None:
    """Two baresips with no codec in common. baresip answers in the order of the offer it
    gets, and ipbx offers the callee the caller's own formats (the codec, then
    telephone-event) before the codecs it adds: the callee answers `RTP/AVP 101 0` (or
    `101 96`), telephone-event first, as its SIP trace shows. Its codec is the one after;
    the caller, which never offered it, is answered in its own codec, the legs are
    transcoded, and each baresip hears the other's tone."""
    server = ipbx_server(extensions=2)
    heard_by_caller, heard_by_callee, callee_log = baresip_calls_baresip(
        server, tmp_path, caller, callee
    )
    assert _answer_in_trace(callee_log)[0] == "telephone-event"
    assert f"transcoding {transcoding}" in server.log_tail(100)
    assert heard_by_caller.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ), server.log_tail()
    assert heard_by_caller.seconds >= 1.0
    assert heard_by_callee.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ), server.log_tail()
    assert heard_by_callee.seconds >= 1.0
