"""A conference room's rules without audio: the PIN prompt and its three tries, who is a
moderator, a full or locked room, the keys *1, *2 and *3 (each answered by speech to the
member alone), waiting for the moderator on music, recording while anybody is mixed, a
reload, and the conference events (the mixer is a stand-in that notes what the room asks
of it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from ipbx.config import Config
from ipbx.media.codecs import Pcm
from ipbx.media.endpoint import MediaEndpoint
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.conference.config import ConferenceConfig
from ipbx.pbx.conference.engine import (
    ASK_MODERATOR_PIN,
    ASK_PIN,
    RETRY_PIN,
    Conferences,
    ask_pin,
    key_menu,
)
from ipbx.pbx.conference.room import Room
from ipbx.pbx.events import Event, EventBus
from ipbx.pbx.session import Session
from tests.support.softphone import write_tone


class Keypad:
    """A caller who types these entries, one per prompt."""

    def __init__(self, *entries: str) -> None:
        self.entries = list(entries)
        self.prompts: list[str | None] = []

    async def collect(
        self, max_digits: int, timeout: float, terminators: str = "#", prompt: str | None = None
    ) -> str:
        self.prompts.append(prompt)
        if not self.entries:
            raise asyncio.CancelledError  # the caller hangs up
        return self.entries.pop(0)


class Member(Keypad):
    """A member's keypad in the room, whose keys the room answers by speech."""

    def __init__(self, sound: Path, *entries: str) -> None:
        super().__init__(*entries)
        self.sound = sound
        self.said: list[str] = []

    async def prompt(self, text: str) -> Path:
        self.said.append(text)
        return self.sound


def pin_of(config: ConferenceConfig, keypad: Keypad) -> bool | None:
    return asyncio.run(ask_pin(cast(Session, keypad), config))


def test_the_pin_makes_a_member_or_a_moderator_in_three_tries() -> None:
    room = ConferenceConfig(name="standup", pin="4321", moderator_pin="9999")
    assert pin_of(room, Keypad("4321")) is False
    assert pin_of(room, Keypad("9999")) is True
    late = Keypad("1111", "", "9999")
    assert pin_of(room, late) is True
    assert late.prompts == [ASK_PIN, RETRY_PIN, RETRY_PIN]
    wrong = Keypad("1", "2", "3", "4321")
    assert pin_of(room, wrong) is None
    assert len(wrong.prompts) == 3


def test_a_room_with_only_a_moderator_pin_is_open_to_members() -> None:
    room = ConferenceConfig(name="standup", moderator_pin="9999")
    nothing = Keypad("")
    assert pin_of(room, nothing) is False
    assert nothing.prompts == [ASK_MODERATOR_PIN]
    assert pin_of(room, Keypad("9999")) is True
    assert pin_of(room, Keypad("5", "5", "5")) is None
    open_room = Keypad()
    assert pin_of(ConferenceConfig(name="open"), open_room) is False
    assert open_room.prompts == []


class FakeMixer:
    def __init__(self, on_talking: Callable[[MediaEndpoint, bool], None]) -> None:
        self.on_talking = on_talking
        self.members: dict[object, bool] = {}  # endpoint -> muted
        self.played = 0
        self.told: list[object] = []  # the endpoints a prompt was played to alone
        self.recording: Path | None = None
        self.closed = False

    def join(self, endpoint: MediaEndpoint, muted: bool = False) -> None:
        self.members[endpoint] = muted

    def leave(self, endpoint: MediaEndpoint) -> None:
        self.members.pop(endpoint, None)

    def mute(self, endpoint: MediaEndpoint, muted: bool) -> None:
        self.members[endpoint] = muted

    def play(self, pcm: Pcm, rate: int) -> None:
        self.played += 1

    def play_to(self, endpoint: MediaEndpoint, pcm: Pcm, rate: int) -> None:
        assert len(pcm) == rate // 5  # the 0.2 s said
        self.told.append(endpoint)

    def record(self, path: str | Path) -> None:
        self.recording = Path(path)
        self.recording.write_bytes(b"RIFF")

    def stop_recording(self) -> Path | None:
        path, self.recording = self.recording, None
        return path

    def close(self) -> None:
        self.closed = True


class Music:
    def __init__(self) -> None:
        self.listening: set[object] = set()

    def listen(self, endpoint: object) -> Callable[[], None]:
        self.listening.add(endpoint)
        return lambda: self.listening.discard(endpoint)


class Line:
    """A member's media endpoint, as far as the room looks at it."""

    closed = False
    pcm_rate = 8000


def caller(number: str) -> Session:
    call = SimpleNamespace(uid=f"call-{number}")
    leg = SimpleNamespace(media=Line())
    return cast(Session, SimpleNamespace(caller=number, call=call, leg=leg))


def room_of(tmp_path: Path, **settings: Any) -> tuple[Room, list[FakeMixer], list[Event], Music]:
    mixers: list[FakeMixer] = []
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    music = Music()

    def mixer(on_talking: Callable[[MediaEndpoint, bool], None]) -> FakeMixer:
        mixers.append(FakeMixer(on_talking))
        return mixers[-1]

    config = ConferenceConfig(name="standup", **settings)
    return Room(config, mixer, bus, tmp_path, music), mixers, events, music  # type: ignore[arg-type]


def test_members_mute_talk_and_leave_with_events(tmp_path: Path) -> None:
    room, mixers, events, _ = room_of(tmp_path, moderator_pin="9999", max_members=3)
    alice = room.join(caller("1001"), moderator=True)
    bob = room.join(caller("1002"), moderator=False)
    carol = room.join(caller("1003"), moderator=False)
    [mixer] = mixers
    assert len(mixer.members) == 3 and mixer.played == 2  # a chime for bob and carol
    assert room.refusal(moderator=True) == "full"

    room.set_muted(bob, True)  # *1
    assert mixer.members[bob.endpoint] is True
    room.mute_others()  # the moderator's *3 mutes carol too, not alice
    assert [mixer.members[m.endpoint] for m in (alice, bob, carol)] == [False, True, True]
    room.mute_others()
    assert [m.muted for m in (alice, bob, carol)] == [False, False, False]

    mixer.on_talking(carol.endpoint, True)
    status = room.status()
    assert [(m.id, m.caller, m.moderator, m.talking) for m in status.members] == [
        (1, "1001", True, False), (2, "1002", False, False), (3, "1003", False, True),
    ]  # fmt: skip

    room.leave(bob)
    room.locked = True
    assert room.refusal(moderator=False) == "locked"
    assert room.refusal(moderator=True) is None
    room.leave(alice)
    room.leave(carol)
    assert mixer.closed
    assert [(e.type, e.data["member"]) for e in events] == [
        ("conference.joined", 1), ("conference.joined", 2), ("conference.joined", 3),
        ("conference.talking", 3),
        ("conference.left", 2), ("conference.left", 1), ("conference.left", 3),
    ]  # fmt: skip
    talking = events[3].data
    assert talking == {"conference": "standup", "member": 3, "caller": "1003",
                       "call_id": "call-1003", "talking": True}  # fmt: skip


def test_members_wait_on_music_for_the_moderator_and_go_back_when_it_leaves(
    tmp_path: Path,
) -> None:
    room, mixers, _, music = room_of(tmp_path, moderator_pin="9999", wait_for_moderator=True)
    bob = room.join(caller("1002"), moderator=False)
    assert music.listening == {bob.endpoint} and not mixers
    assert room.status().members[0].waiting
    alice = room.join(caller("1001"), moderator=True)
    [mixer] = mixers
    assert set(mixer.members) == {alice.endpoint, bob.endpoint} and not music.listening
    room.leave(alice)
    assert music.listening == {bob.endpoint} and mixer.closed


def test_the_mix_is_recorded_while_anybody_is_in_it(tmp_path: Path) -> None:
    room, mixers, events, _ = room_of(tmp_path, record=True)
    alice = room.join(caller("1001"), moderator=False)
    recording = room.status().recording
    assert recording is not None and recording.startswith(tuple("0123456789"))
    assert (tmp_path / recording).exists()
    # Listed where recordings are: the member's call record names the room's file.
    assert alice.session.call.room_recording == tmp_path / recording
    room.leave(alice)
    ready = [e.data for e in events if e.type == "recording.ready"]
    assert ready == [{"conference": "standup", "recording": recording,
                      "seconds": pytest.approx(0, abs=1)}]  # fmt: skip
    assert room.status().recording is None and mixers[0].recording is None


def test_the_keys_in_the_room_mute_oneself_and_let_a_moderator_lock_and_mute_all(
    tmp_path: Path,
) -> None:
    room, mixers, _, _ = room_of(tmp_path, moderator_pin="9999")
    alice = room.join(caller("1001"), moderator=True)
    bob = room.join(caller("1002"), moderator=False)
    sound = write_tone(tmp_path / "said.wav", 600, 0.2)

    def press(member_id: int, *keys: str) -> list[str]:
        member = Member(sound, *keys)
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(key_menu(cast(Session, member), room, member_id))
        return member.said

    # A member's *2 and *3 do nothing; each key that does is answered to the member alone.
    assert press(bob.id, "*", "1", "5", "*", "2", "*", "3") == ["Muted."]
    assert (bob.muted, room.locked) == (True, False)
    assert mixers[0].told == [bob.endpoint]
    # *3 with every other member muted already (bob, by himself) unmutes them all.
    assert press(alice.id, "*", "2", "*", "3") == [
        "The conference is locked.",
        "All other members are unmuted.",
    ]
    assert (room.locked, alice.muted, bob.muted) == (True, False, False)
    assert press(alice.id, "*", "3", "*", "1", "*", "2") == [
        "All other members are muted.",
        "Muted.",
        "The conference is unlocked.",
    ]
    assert (alice.muted, bob.muted, room.locked) == (True, True, False)
    assert mixers[0].told == [bob.endpoint] + [alice.endpoint] * 5


def test_a_reload_keeps_the_rooms_that_stay_and_hangs_up_the_members_of_one_removed(
    tmp_path: Path,
) -> None:
    hung_up: list[object] = []
    calls = SimpleNamespace(hold=SimpleNamespace(music=None), hang_up=hung_up.append)
    standup, board = ConferenceConfig(name="standup"), ConferenceConfig(name="board")
    config = Config(data_dir=tmp_path, conferences=[standup, board])
    rooms = Conferences(cast(Calls, calls), EventBus(), FakeMixer, config)  # type: ignore[arg-type]
    alice = rooms.rooms["standup"].join(caller("1001"), moderator=False)
    bob = rooms.rooms["board"].join(caller("1002"), moderator=False)
    rooms.update([standup.model_copy(update={"max_members": 5})])
    assert rooms.status("standup").members[0].caller == "1001"
    assert rooms.rooms["standup"].config.max_members == 5
    assert hung_up == [bob.session.call] and alice.session.call not in hung_up
    with pytest.raises(LookupError):
        rooms.status("board")
