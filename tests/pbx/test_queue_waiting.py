"""A caller waiting in a queue, at the session level over real RTP on loopback: music,
the position announcement, music again, then the callback key and the callback prompt;
a second caller's wait is cancelled in the middle of an announcement (an agent took the
call) and its leg falls silent at once while the first caller's music goes on."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from ipbx.media.codecs import PCMU, TELEPHONE_EVENT
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.moh import MusicOnHold
from ipbx.media.ports import PortPool
from ipbx.media.wav import read_wav
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.queue.callback import ask_callback_number, callback_number, spoken
from ipbx.pbx.queue.waiting import (
    CALLBACK,
    CALLBACK_NUMBER,
    WaitingRoom,
    position_announcement,
    spoken_number,
)
from ipbx.pbx.session import Prompts, Session
from ipbx.sip.transaction import Address
from tests.support.invites import invite
from tests.support.media import run
from tests.support.softphone import write_tone
from tests.support.tones import heard

MUSIC_HZ, ANNOUNCEMENT_HZ = 2000, 700
CALLER = "5550123"


class _Place:
    def position(self) -> int:
        return 3

    def estimated_wait(self) -> float | None:
        return None


@pytest.fixture
def pool() -> PortPool:
    first = random.randrange(40000, 49800, 2)
    return PortPool("127.0.0.1", first, first + 199)


async def _caller(pool: PortPool, tmp_path: Path, name: str) -> tuple[Session, MediaEndpoint]:
    """A session on ipbx's leg, answered, and the caller's phone, recording what it hears."""
    ours, phone = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
    ours.set_remote(*phone.local_address, PCMU, TELEPHONE_EVENT.payload_type)
    phone.set_remote(*ours.local_address, PCMU, TELEPHONE_EVENT.payload_type)
    phone.record(tmp_path / f"{name}.wav")
    call = Call(id=name, from_number=CALLER)
    leg = Leg(call, Address("UDP", "127.0.0.1", 5060), ours, invite())
    session = Session(cast(Calls, None), call, leg, Prompts(tmp_path / "prompts"), answered=True)
    return session, phone


async def _received(phone: MediaEndpoint, packets: int) -> None:
    async with asyncio.timeout(8):
        while phone.stats.packets_received < packets:
            await asyncio.sleep(0.02)


def _heard(pcm: np.ndarray) -> list[str]:
    """What each 100 ms sounds like: the music, the recorded announcement (each a pure
    tone) or speech, in order, silences left out and repeats merged."""
    return [kind for kind, _ in heard(pcm, {"music": MUSIC_HZ, "tone": ANNOUNCEMENT_HZ})]


def test_a_waiting_caller_hears_music_its_position_and_asks_for_a_callback(
    pool: PortPool, tmp_path: Path
) -> None:
    folder = tmp_path / "moh"
    folder.mkdir()
    write_tone(folder / "music.wav", MUSIC_HZ, 5)
    announcement = write_tone(tmp_path / "thanks.wav", ANNOUNCEMENT_HZ, 3)
    music = MusicOnHold(folder)
    spoken_position = WaitingRoom(music, announce_position_seconds=1.0, callback_key="1")
    periodic = WaitingRoom(music, periodic_announcement=f"file:{announcement}",
                           periodic_announcement_seconds=0.6)  # fmt: skip

    async def scenario() -> None:
        session, phone = await _caller(pool, tmp_path, "caller")
        other, other_phone = await _caller(pool, tmp_path, "other")
        waiting = asyncio.ensure_future(spoken_position.wait(session, _Place()))
        other_waiting = asyncio.ensure_future(periodic.wait(other, _Place()))
        # The other caller's announcement plays (0.6 s of music, then the tone) when an
        # agent takes its call: its leg falls silent at once, the first caller's not.
        # Without a callback key its keys are not listened for while it waits.
        await _received(other_phone, 40)
        assert other.leg.media.digits is None and session.leg.media.digits is not None
        other_waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other_waiting
        assert other.leg.media.digits is not None
        assert music.listeners == 1
        await asyncio.sleep(0.05)
        sent = other.leg.media.stats.packets_sent
        await asyncio.sleep(0.2)
        assert other.leg.media.stats.packets_sent == sent
        # Music, "You are caller number 3.", music again: then the caller presses 1,
        # and 1# at the callback prompt, which offers the caller's own number.
        await _received(phone, 200)
        await phone.send_dtmf("1")
        await asyncio.sleep(0.5)
        await phone.send_dtmf("1#")
        assert await waiting == CALLBACK
        assert session.variables[CALLBACK_NUMBER] == CALLER
        assert music.listeners == 0
        for endpoint in (session.leg.media, phone, other.leg.media, other_phone):
            endpoint.stop_recording()
            endpoint.close()

    run(scenario, timeout=20)  # about 8 s of real-time audio
    # (The 100 ms that holds both the music and the tone is neither.)
    other_heard = [kind for kind in _heard(read_wav(tmp_path / "other.wav")) if kind != "voice"]
    assert other_heard == ["music", "tone"]
    assert _heard(read_wav(tmp_path / "caller.wav"))[:4] == ["music", "voice", "music", "voice"]


def test_the_position_announcement_rounds_the_wait_to_minutes() -> None:
    def said(position: int, wait: float | None) -> str:
        return " ".join(position_announcement(position, wait))

    assert said(3, 100) == "You are caller number three Your estimated wait is about two minutes"
    assert said(1, 70).endswith("about one minute")
    assert said(1, 20).endswith("less than a minute.")
    assert said(2, None) == "You are caller number two"


@pytest.mark.parametrize(
    ("number", "words"),
    [(0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (42, "forty two"),
     (100, "one hundred"), (105, "one hundred five"), (342, "three hundred forty two"),
     (1200, "1200")],
)  # fmt: skip
def test_numbers_are_said_in_words_from_few_pieces(number: int, words: str) -> None:
    assert " ".join(spoken_number(number)) == words


def test_every_position_below_a_thousand_takes_some_thirty_pieces() -> None:
    pieces = {piece for n in range(1000) for piece in spoken_number(n)}
    assert len(pieces) == 29


class _Keypad:
    """A session whose caller answers each prompt with the next keys of a script."""

    def __init__(self, caller: str, keys: list[str]) -> None:
        self.caller = caller
        self.keys = keys
        self.heard: list[str] = []

    def flush_digits(self) -> None:
        pass

    async def collect(self, max_digits: int, timeout: float, terminators: str = "#",
                      prompt: str | None = None) -> str:  # fmt: skip
        assert prompt is not None
        self.heard.append(prompt)
        return self.keys.pop(0)

    async def say(self, text: str, interruptible: bool = False) -> str:
        self.heard.append(text)
        return ""


@pytest.mark.parametrize(
    ("caller", "keys", "number"),
    [
        (CALLER, ["1"], CALLER),  # its own number
        (CALLER, ["0612345678", "1"], "0612345678"),  # another, confirmed
        (CALLER, ["0612345678", ""], None),  # another, not confirmed
        (CALLER, ["*"], None),  # declined
        (CALLER, [""], None),  # silence
        (CALLER, ["12", "1"], CALLER),  # not a number: one more try
        ("anonymous", ["5551234", "1"], "5551234"),  # nothing to offer: asked for one
    ],
)
def test_the_callback_prompt(caller: str, keys: list[str], number: str | None) -> None:
    keypad = _Keypad(caller, list(keys))
    assert asyncio.run(ask_callback_number(cast(Session, keypad))) == number
    assert not keypad.keys
    first = keypad.heard[0]
    if caller == CALLER:
        assert first == (
            "Press 1 to be called back at 5 5 5 0 1 2 3, or enter another number followed by hash."
        )
    else:
        assert first == "Enter the number to call you back at, followed by hash."
    if keys[0] == "0612345678":
        assert keypad.heard[1] == "You entered 0 6 1 2 3 4 5 6 7 8. Press 1 to confirm."
    if keys[0] == "12":
        assert keypad.heard[1] == "That number cannot be used."
    if number is not None:
        assert keypad.heard[-1] == "Thank you. We will call you back."


def test_a_callback_number_is_3_to_15_digits() -> None:
    assert [callback_number(n) for n in ("1001", "+15551234567", "12", "555*1", "anonymous")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert spoken("+1555") == "1 5 5 5"
