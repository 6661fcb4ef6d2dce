"""`ipbx phone` against Linphone (linphonec), through ipbx: linphonec registers as 1000 and
answers automatically, sending a 1 kHz tone from a file; `ipbx phone` registered as 1001
calls it with a 700 Hz tone. Each must hear the other's tone: ours in what linphonec records,
linphonec's in our recording.

linphonec runs headless, driven through its stdin (tests/support/linphone.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.linphone import linphonec
from tests.support.server import IpbxFactory, extension_range
from tests.support.softphone import analyse, ipbx_phone, write_tone

LINPHONE, PHONE = extension_range(2)
TOLERANCE_HZ = 20


def test_ipbx_phone_calls_linphone(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    server = ipbx_server(extensions=2)
    linphone_tone = write_tone(tmp_path / "1000hz.wav", 1000, 6)
    our_tone = write_tone(tmp_path / "700hz.wav", 700, 3)
    recording = tmp_path / "heard-by-ipbx-phone.wav"
    linphone_recording = tmp_path / "heard-by-linphone.wav"
    with linphonec(tmp_path, server.port, LINPHONE) as linphone:
        linphone.wait_registered()
        assert f"{LINPHONE.number} registered 1 contact(s)" in server.log_tail(200)
        linphone.send(f"play {linphone_tone}")
        linphone.send(f"record {linphone_recording}")
        with ipbx_phone(
            tmp_path, server.port, PHONE,
            "--register", "--call", LINPHONE.number, "--play", str(our_tone),
            "--record", str(recording), "--timeout", "20",
        ) as phone:  # fmt: skip
            status, out = phone.finish()
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log + linphone.log
    heard_by_us = analyse(recording)
    assert heard_by_us.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert heard_by_us.seconds >= 1.0
    assert linphone_recording.exists(), linphone.log
    heard_by_linphone = analyse(linphone_recording)
    assert heard_by_linphone.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)
    assert heard_by_linphone.seconds >= 1.0
