"""Who answered, in memory (tests/support/testbed.py): a call is answered when a person
takes it. ipbx answering the caller to play a menu, take a voicemail or let it hear a
ring group's ringback is no answer: the record says where such a call ended, has no
person's answer, and call.missed is published for it.

Record times are wall-clock times, and virtual time costs no wall-clock time; a story
that needs seconds to pass between two answers waits them in a thread
(`_wall_clock_wait`), during which the virtual clock runs at real speed."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from ipbx.pbx.analytics import figures
from ipbx.pbx.events import Event
from tests.support.testbed import Testbed, play

MENU, GROUP, HELP_DESK, FRONT_DESK = "500", "501", "502", "503"
CALLER, AGENT, COLLEAGUE = "1000", "1001", "1002"
# How long the agent lets the phone ring after the menu sent the caller to it.
RINGS_FOR = 1.5
# The wall-clock time the PBX's own steps (reading the greeting from disk, in a thread)
# may add to that.
SLACK = 1.0


def _silence(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * int(8000 * seconds))
    return path


def _setup(tmp_path: Path) -> Any:
    """A menu (500) that, after 3 s without a key, rings the agent; a ring group (501)
    of the agent and a colleague; a mailbox on the agent's extension. Without mailboxes:
    a group of the colleague that hangs up when nobody answers (502), and a menu that
    rings the colleague (503)."""
    greeting = _silence(tmp_path / "greeting.wav", 1.0)

    def edit(config: dict[str, Any]) -> None:
        config["ivrs"] = [
            {
                "name": "main",
                "greeting": f"file:{greeting}",
                "timeout_seconds": 3,
                "retries": 0,
                "timeout_destination": f"extension:{AGENT}",
            },
            {
                "name": "front",
                "greeting": f"file:{greeting}",
                "timeout_seconds": 3,
                "retries": 0,
                "timeout_destination": f"extension:{COLLEAGUE}",
            },
        ]
        config["groups"] = [
            {"name": "sales", "members": [AGENT, COLLEAGUE], "ring_seconds": 20},
            {"name": "help", "members": [COLLEAGUE], "fallback": "hangup"},
        ]
        config["numbers"] = [
            {"number": MENU, "destination": "ivr:main"},
            {"number": GROUP, "destination": "group:sales"},
            {"number": HELP_DESK, "destination": "group:help"},
            {"number": FRONT_DESK, "destination": "ivr:front"},
        ]
        for extension in config["extensions"]:
            if extension["number"] == AGENT:
                extension["voicemail"] = {"pin": "1234"}
                extension["forward"] = {"no_answer_seconds": 10}

    return edit


def _events(lab: Testbed) -> list[Event]:
    seen: list[Event] = []
    lab.pbx.events.subscribe(seen.append)
    return seen


def _types(events: list[Event], call_id: str) -> list[str]:
    return [e.type for e in events if e.data.get("call_id") == call_id]


async def _wall_clock_wait(seconds: float) -> None:
    await asyncio.to_thread(time.sleep, seconds)


def test_a_caller_who_hangs_up_in_the_menu_was_not_answered(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        events = _events(lab)
        alice = await lab.registered(CALLER)
        call = alice.call(MENU)
        assert (await call.final()).status == 200  # the menu answers
        await asyncio.sleep(1)
        assert (await call.hang_up()).status == 200
        [record] = await lab.records()
        assert (record.result, record.path) == ("menu", "ivr:main")
        assert record.answered is not None and record.person_answered is None
        assert _types(events, record.call_id) == ["call.started", "call.ended", "call.missed"]
        missed = next(e for e in events if e.type == "call.missed")
        assert (missed.data["extension"], missed.data["result"]) == (MENU, "menu")

    play(tmp_path, story, _setup(tmp_path))


def test_a_call_the_menu_sends_to_an_agent_is_answered_when_the_agent_answers(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        events = _events(lab)
        alice, bob = await lab.registered(CALLER), await lab.registered(AGENT)
        call = alice.call(MENU)
        assert (await call.final()).status == 200
        ringing = await bob.rings()  # the menu's time-out rings the agent
        ringing.ring()
        await _wall_clock_wait(RINGS_FOR)
        ringing.answer()
        await asyncio.sleep(5)
        assert (await call.hang_up()).status == 200
        [record] = await lab.records()
        assert record.result == "answered"
        assert record.answered is not None and record.person_answered is not None
        assert record.answered - record.started < SLACK  # the menu's answer
        wait = record.person_answered - record.started
        assert RINGS_FOR <= wait < RINGS_FOR + SLACK
        answered = next(e for e in events if e.type == "call.answered")
        assert (answered.data["extension"], answered.data["wait"]) == (
            AGENT,
            pytest.approx(wait, abs=0.01),
        )
        assert "call.missed" not in _types(events, record.call_id)
        total = figures([record], service_level_seconds=1.0)
        assert (total.answered, total.missed, total.abandoned) == (1, 0, 0)
        assert total.average_speed_of_answer == pytest.approx(wait, abs=0.01)
        assert total.service_level == 0.0  # answered by a person after more than 1 s

    play(tmp_path, story, _setup(tmp_path))


def test_a_call_that_ends_in_voicemail_was_not_answered(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        events = _events(lab)
        alice, bob = await lab.registered(CALLER), await lab.registered(AGENT)
        call = alice.call(AGENT)
        (await bob.rings()).ring()
        assert (await call.final()).status == 200  # after 10 s of ringing, the mailbox
        await asyncio.sleep(3)
        assert (await call.hang_up()).status == 200
        [record] = await lab.records()
        assert (record.result, record.path) == ("voicemail", f"extension:{AGENT},voicemail:{AGENT}")
        assert record.person_answered is None
        missed = next(e for e in events if e.type == "call.missed")
        assert (missed.data["call_id"], missed.data["result"]) == (record.call_id, "voicemail")

    play(tmp_path, story, _setup(tmp_path))


def test_a_caller_who_hangs_up_during_a_groups_ringback_abandoned(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        events = _events(lab)
        alice = await lab.registered(CALLER)
        phones = [await lab.registered(AGENT), await lab.registered(COLLEAGUE)]
        call = alice.call(GROUP)
        assert (await call.final()).status == 200  # ipbx answers: the caller hears ringback
        ringing = [await phone.rings() for phone in phones]
        for incoming in ringing:
            incoming.ring()
        await asyncio.sleep(4)
        assert (await call.hang_up()).status == 200
        for incoming in ringing:
            await incoming.was_cancelled()
        [record] = await lab.records()
        assert (record.result, record.path, record.person_answered) == (
            "group", "group:sales", None,
        )  # fmt: skip
        assert _types(events, record.call_id)[-2:] == ["call.ended", "call.missed"]
        total = figures([record], service_level_seconds=20.0)
        assert (total.offered, total.answered, total.abandoned, total.missed) == (1, 0, 1, 0)
        assert total.average_speed_of_answer is None and total.service_level == 0.0

    play(tmp_path, story, _setup(tmp_path))


def test_a_call_a_menu_sends_to_a_phone_that_never_answers_is_no_answer(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, carol = await lab.registered(CALLER), await lab.registered(COLLEAGUE)
        call = alice.call(FRONT_DESK)
        assert (await call.final()).status == 200
        (await carol.rings()).ring()  # for 30 s, then ipbx gives up and hangs up
        await call.hung_up()
        [record] = await lab.records()
        assert (record.result, record.path) == ("no_answer", f"ivr:front,extension:{COLLEAGUE}")

    play(tmp_path, story, _setup(tmp_path))


def test_a_call_a_ring_group_hangs_up_on_says_why_its_phones_did_not_answer(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        events = _events(lab)
        alice, carol = await lab.registered(CALLER), await lab.registered(COLLEAGUE)
        call = alice.call(HELP_DESK)
        assert (await call.final()).status == 200
        (await carol.rings()).refuse(486)
        await call.hung_up()  # the group's fallback
        [record] = await lab.records()
        assert (record.result, record.path) == ("busy", "group:help,hangup")
        missed = next(e for e in events if e.type == "call.missed")
        assert missed.data["result"] == "busy"

    play(tmp_path, story, _setup(tmp_path))


def test_a_call_a_menu_sends_to_an_extension_on_do_not_disturb_is_busy(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        _setup(tmp_path)(config)
        for extension in config["extensions"]:
            if extension["number"] == COLLEAGUE:
                extension["dnd"] = True

    async def story(lab: Testbed) -> None:
        alice = await lab.registered(CALLER)
        await lab.registered(COLLEAGUE)
        call = alice.call(FRONT_DESK)
        assert (await call.final()).status == 200
        await call.hung_up()
        [record] = await lab.records()
        assert (record.result, record.path) == ("busy", f"ivr:front,extension:{COLLEAGUE}")

    play(tmp_path, story, edit)


def test_figures_over_calls_that_ended_in_a_menu_a_mailbox_or_with_an_agent(
    tmp_path: Path,
) -> None:
    """Before, every call here counted as answered at once: a service level of 100 %."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered(CALLER), await lab.registered(AGENT)
        in_menu = alice.call(MENU)
        assert (await in_menu.final()).status == 200
        assert (await in_menu.hang_up()).status == 200
        to_mailbox = alice.call(AGENT)
        (await bob.rings()).ring()
        assert (await to_mailbox.final()).status == 200
        assert (await to_mailbox.hang_up()).status == 200
        to_agent = alice.call(MENU)
        assert (await to_agent.final()).status == 200
        ringing = await bob.rings()
        await _wall_clock_wait(RINGS_FOR)
        ringing.answer()
        await asyncio.sleep(1)
        assert (await to_agent.hang_up()).status == 200
        records = await lab.records()
        assert [r.result for r in records] == ["menu", "voicemail", "answered"]
        total = figures(records, service_level_seconds=20.0)
        assert (total.offered, total.answered, total.missed, total.abandoned) == (3, 1, 2, 0)
        assert (total.ended_in_menu, total.ended_in_voicemail) == (1, 1)
        assert total.service_level == pytest.approx(1 / 3, abs=1e-4)
        speed = total.average_speed_of_answer
        assert speed is not None and RINGS_FOR <= speed < RINGS_FOR + SLACK

    play(tmp_path, story, _setup(tmp_path))
