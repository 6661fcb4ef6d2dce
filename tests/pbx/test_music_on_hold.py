"""Hold with music: the caller (`ipbx phone --hold`) holds at 2 s and resumes at 4 s; with
music in DATA_DIR/moh, ipbx answers the hold itself and the callee hears the music in
between, the caller's voice before and after."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests.support.media import dominant_frequency
from tests.support.records import call_records
from tests.support.server import extension_range, start_configured_ipbx
from tests.support.softphone import ipbx_phone, write_tone

CALLER, CALLEE = extension_range(2)
VOICE_HZ, MUSIC_HZ = 1000, 500


def test_the_held_party_hears_music_until_the_call_resumes(tmp_path: Path) -> None:
    workdir = tmp_path / "ipbx"
    (workdir / "data" / "moh").mkdir(parents=True)
    write_tone(workdir / "data" / "moh" / "music.wav", MUSIC_HZ, 10, rate=16000)
    server = start_configured_ipbx(workdir, lambda config: None)
    voice = write_tone(tmp_path / "voice.wav", VOICE_HZ, 7)
    heard = tmp_path / "heard.wav"
    try:
        with ipbx_phone(
            tmp_path, server.port, CALLEE,
            "--register", "--answer", "--record", str(heard), "--timeout", "20",
        ) as callee:  # fmt: skip
            callee.wait_for("registered as")
            with ipbx_phone(
                tmp_path, server.port, CALLER,
                "--call", CALLEE.number, "--play", str(voice), "--hold", "2", "--timeout", "20",
            ) as caller:  # fmt: skip
                status, _ = caller.finish()
            callee.finish()
        assert status == 0, caller.log
        assert "on hold" in caller.log and "resumed" in caller.log
    finally:
        server.stop()
    with wave.open(str(heard)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")

    def hz(start: float, end: float) -> float:
        return dominant_frequency(pcm[int(start * rate) : int(end * rate)][:: rate // 8000])

    assert hz(0.3, 1.7) == pytest.approx(VOICE_HZ, abs=20)
    assert hz(2.5, 3.5) == pytest.approx(MUSIC_HZ, abs=20)
    assert hz(4.5, 6.0) == pytest.approx(VOICE_HZ, abs=20)
    [record] = call_records(server)
    assert record.path == "extension:1001,hold"
