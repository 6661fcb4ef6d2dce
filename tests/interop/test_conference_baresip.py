"""A conference room with baresip phones on three codecs: PCMU, G.722 and Opus members
send 440, 1,000 and 1,500 Hz, and each hears the other two and not its own (N-1 mixing
at the room's best rate, 48 kHz here, each member transcoded to its own codec)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.baresip import start_baresip, wait_registered
from tests.support.processes import stop_process
from tests.support.server import extension_range, start_configured_ipbx
from tests.support.softphone import write_tone
from tests.support.tones import seconds_heard

ROOM = "800"
A, B, C = extension_range(3)
MEMBERS = {
    A.number: ("PCMU", 440),
    B.number: ("G722/16000/1", 1000),
    C.number: ("opus/48000/2", 1500),
}
TALK_SECONDS = 10
TONES = [hz for _, hz in MEMBERS.values()]


def tone_for(path: Path, codecs: str, hz: int) -> Path:
    """baresip's file source must come at the codec's own rate (and in stereo for Opus)."""
    name, _, rate = codecs.partition("/")
    if name == "opus":
        return write_tone(path, hz, TALK_SECONDS, rate=48000, channels=2)
    return write_tone(path, hz, TALK_SECONDS, rate=int(rate.partition("/")[0] or 8000))


def test_baresip_members_on_three_codecs_hear_each_other_and_not_themselves(
    tmp_path: Path,
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["conferences"] = [{"name": "standup"}]
        config["numbers"] = [{"number": ROOM, "destination": "conference:standup"}]

    server = start_configured_ipbx(tmp_path / "ipbx", edit, extensions=[A, B, C])
    phones = []
    try:
        for user in (A, B, C):
            codecs, hz = MEMBERS[user.number]
            workdir = tmp_path / user.number
            workdir.mkdir()
            phones.append(
                start_baresip(
                    workdir,
                    registrar_port=server.port,
                    user=user,
                    audio_file=tone_for(workdir / "tone.wav", codecs, hz),
                    dial=ROOM,
                    codecs=codecs,
                    seconds=TALK_SECONDS + 10,
                )
            )
            wait_registered(server, user.number)
        # Each hangs up when its tone ends.
        deadline = time.monotonic() + TALK_SECONDS + 15
        for phone in phones:
            phone.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for phone in phones:
            stop_process(phone)
        server.stop()
    for number, (codecs, own) in MEMBERS.items():
        dumps = sorted((tmp_path / number / "snd").glob("dump-*-dec.wav"))
        assert dumps, (tmp_path / number / f"baresip-{number}.log").read_text(errors="replace")
        heard = seconds_heard(dumps[-1], TONES)
        assert set(TONES) - {own} in heard, (codecs, heard)
        assert not any(own in second for second in heard), (codecs, heard)
