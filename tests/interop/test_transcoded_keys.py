"""Keys pressed on an Opus phone are heard as DTMF tones by a PCMU phone that has no
telephone-event, across a transcoded call.

baresip (1000) offers Opus only and presses keys through its ctrl_tcp interface
("sndcode"), sent as RFC 4733 telephone-events while its audio source plays a 1 kHz tone.
It calls a SIPp UAS (1001, bench/scenarios/uas.xml) that answers PCMU alone, with no
telephone-event in its SDP: no codec in common, so ipbx transcodes, and having no event
to send that leg it plays each key as its two tones in place of the voice
(`_Transcoding._play_tones` in media/bridge.py). The unit tests hear those tones on
loopback sockets; here real peers do.

SIPp records nothing, so it echoes (-rtp_echo): every packet ipbx sent it comes back
as it was, ipbx transcodes it to Opus for baresip, and baresip's sndfile module records
what it decodes. ipbx's own Goertzel receiver (media/inband.py) reads the keys from that
recording. The echo carries audio only: SIPp's answer has no telephone-event (checked in
its message trace), and ipbx never turns tones back into events on a transcoded leg, so
the keys can reach the recording only as tones ipbx made.
"""

from __future__ import annotations

import re
from pathlib import Path

from ipbx.media.inband import InbandDetector
from ipbx.media.wav import read_wav
from tests.support.baresip import baresip_presses_keys, baresip_tone
from tests.support.ports import free_port
from tests.support.server import IpbxFactory, extension_range
from tests.support.sipp import register_contact, start_sipp

KEYS = "159#"
OPUS = "opus/48000/2"
CALLER, CALLEE = extension_range(2)


def _answer_sdp(messages: str) -> str:
    """The SDP of the 200 OK SIPp sent to the INVITE, from its -trace_msg log."""
    sent = messages.split("SIP/2.0 200 OK", 1)[1]
    return sent[sent.index("v=0") :].split("\n\n", 1)[0]


def test_keys_from_an_opus_phone_reach_a_pcmu_phone_without_telephone_event_as_tones(
    ipbx_server: IpbxFactory, tmp_path: Path
) -> None:
    server = ipbx_server(extensions=2)
    sipp_port = free_port("udp")
    registration = register_contact(server.port, CALLEE, sipp_port, tmp_path)
    assert registration.successful == 1, registration.errors()
    messages = tmp_path / "callee.messages.log"
    callee = start_sipp(
        "uas", None, "-rtp_echo", "-trace_msg", "-message_file", str(messages),
        calls=1, workdir=tmp_path, local_port=sipp_port, timeout=20,
    )  # fmt: skip
    try:
        # baresip (1000, Opus only) presses the keys while playing a 1 kHz tone, and
        # waits for the last key's tones to go out, come back from SIPp and be recorded
        # (some 0.4 s on an idle machine).
        baresip_log = baresip_presses_keys(
            tmp_path,
            KEYS,
            registrar_port=server.port,
            user=CALLER,
            dial=CALLEE.number,
            audio_file=baresip_tone(tmp_path / "1000hz.wav", 1000, 8, OPUS),
            codecs=OPUS,
            sip_trace=True,
            settle=0.5,
            linger=1.0,
        )
    finally:
        result = callee.finish(timeout=10)
    assert (result.successful, result.failed) == (1, 0), result.errors()

    # baresip declares its SSRC (a=ssrc); the stream SIPp gets is ipbx's own, from
    # another SSRC, so the offer SIPp received must not declare baresip's.
    trace = messages.read_text(errors="replace")
    assert "\na=ssrc:" in baresip_log, baresip_log  # in its INVITE, traced
    assert "a=ssrc" not in trace.split("SIP/2.0 200 OK", 1)[0], trace

    # SIPp's leg has PCMU alone, no telephone-event: the keys can only go as tones.
    answer = _answer_sdp(trace)
    assert re.search(r"^m=audio \d+ RTP/AVP 0$", answer, re.MULTILINE), answer
    assert "telephone-event" not in answer, answer
    assert "transcoding opus <-> PCMU" in server.log_tail(200)

    # What baresip decoded of the audio coming back: the keys, as tones, in order.
    dumps = sorted((tmp_path / "snd").glob("dump-*-dec.wav"))
    assert len(dumps) == 1, baresip_log
    heard = InbandDetector().feed(read_wav(dumps[0], 8000))
    assert "".join(heard) == KEYS, server.log_tail()
