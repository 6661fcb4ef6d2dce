"""DTMF from three kinds of sender reaches ipbx as the same digits.

Each test calls the echo test (9196), which ipbx terminates: every digit it receives on
that leg is one digit event, and the call record keeps them (`CallRecord.digits`). The
senders press the same keys, each its own way:

- SIPp plays the RFC 4733 telephone-event pcaps Debian's sip-tester ships, one per key
  (bench/scenarios/uac_dtmf_2833.xml, payload type 101 as in the pcaps);
- baresip sends RFC 4733 events of its own making, keys pressed through its ctrl_tcp
  interface ("sndcode"), while its audio source plays a 1 kHz tone;
- `ipbx phone` plays the keys as in-band tones in PCMU, which ipbx's Goertzel detector
  turns into digits.

The keys are ones sip-tester has pcaps for (0-9, * and #; none for A-D), taken in the
order the pcaps were captured: they are cut from one stream (one SSRC), so played in
this order their sequence numbers and timestamps rise as a phone's would.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ipbx.media.inband import dtmf_tone
from tests.support.baresip import baresip_presses_keys
from tests.support.records import call_records
from tests.support.server import IpbxFactory, IpbxServer, extension_range
from tests.support.sipp import run_sipp, scenario_path, write_users_csv
from tests.support.softphone import ipbx_phone, write_tone

DIGITS = "159*#"
ECHO_TEST = "9196"
[CALLER] = extension_range(1)
SCENARIO = "uac_dtmf_2833"
PCAP_NAMES = {"*": "star", "#": "pound"}


def _pcap(digit: str) -> str:
    return f"/usr/share/sip-tester/dtmf_2833_{PCAP_NAMES.get(digit, digit)}.pcap"


def sipp_plays_pcaps(server: IpbxServer, workdir: Path) -> None:
    """A SIPp UAC (digest auth as 1000) plays one telephone-event pcap per key."""
    played = re.findall(r'play_pcap_audio="([^"]+)"', scenario_path(SCENARIO).read_text())
    assert played == [_pcap(digit) for digit in DIGITS], "the scenario presses other keys"
    caller = write_users_csv(workdir / "caller.csv", [CALLER])
    result = run_sipp(
        SCENARIO,
        f"127.0.0.1:{server.port}",
        "-s",
        ECHO_TEST,
        "-inf",
        str(caller),
        calls=1,
        workdir=workdir,
        timeout=20,
    )
    assert (result.successful, result.failed) == (1, 0), result.errors()


def baresip_sends_events(server: IpbxServer, workdir: Path) -> None:
    """baresip (1000, auth) dials 9196; once the call is up each key is pressed and
    released through ctrl_tcp, 400 ms apart, then baresip hangs up."""
    baresip_presses_keys(
        workdir,
        DIGITS,
        registrar_port=server.port,
        user=CALLER,
        dial=ECHO_TEST,
        audio_file=write_tone(workdir / "1000hz.wav", 1000, 10),
    )


def phone_plays_tones(server: IpbxServer, workdir: Path) -> None:
    """`ipbx phone` (1000) plays 100 ms of each key's two tones, 100 ms apart, in PCMU."""
    gap = np.zeros(800, dtype=np.int16)
    pcm = np.concatenate([gap, *(np.concatenate([dtmf_tone(d, 100), gap]) for d in DIGITS)])
    path = workdir / "digits.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm.astype("<i2").tobytes())
    with ipbx_phone(
        workdir, server.port, CALLER, "--call", ECHO_TEST, "--play", str(path),
        "--duration", "2.5", "--timeout", "15",
    ) as phone:  # fmt: skip
        status, _ = phone.finish()
    assert status == 0, phone.log


SENDERS: dict[str, Callable[[IpbxServer, Path], None]] = {
    "SIPp RFC 4733 pcaps": sipp_plays_pcaps,
    "baresip RFC 4733": baresip_sends_events,
    "ipbx phone in-band tones": phone_plays_tones,
}


@pytest.mark.parametrize("send", SENDERS.values(), ids=SENDERS)
def test_echo_test_receives_the_keys_pressed(
    ipbx_server: IpbxFactory, tmp_path: Path, send: Callable[[IpbxServer, Path], None]
) -> None:
    server = ipbx_server(extensions=1)
    send(server, tmp_path)
    [record] = call_records(server)
    # The echo test is ipbx's own service: no person answered it.
    assert (record.caller, record.callee, record.result) == (CALLER.number, ECHO_TEST, "service")
    assert record.digits == DIGITS, server.log_tail()
