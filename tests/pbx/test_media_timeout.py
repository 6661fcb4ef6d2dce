"""An answered call whose RTP stops for `media.timeout_seconds` is ended with a BYE to
both phones and a record that says media_timeout; a held call is not (RFC 3264 §8.4: a
held phone may send nothing). The silence detector with a fake clock, then the PBX in
memory (tests/support/testbed.py, where no phone sends RTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ipbx.pbx.call.media_timeout import RtpSilence
from tests.support.testbed import Testbed, play
from tests.support.user_agents import connected


def test_a_stream_is_silent_once_its_count_has_not_moved_for_the_timeout() -> None:
    silence: RtpSilence[str] = RtpSilence(60.0, now=0.0)
    assert silence.interval == 5.0
    assert silence.next_deadline() == 5.0
    assert silence.sweep(5.0, [("a", 10), ("b", 0)]) == []
    assert silence.sweep(30.0, [("a", 900), ("b", 0)]) == []
    assert silence.sweep(64.9, [("a", 900), ("b", 0)]) == []
    assert silence.sweep(65.0, [("a", 900), ("b", 0)]) == ["b"]
    assert silence.sweep(90.0, [("a", 900), ("b", 0)]) == ["a", "b"]
    assert silence.next_deadline() == 95.0


def test_a_stream_left_out_of_a_sweep_starts_afresh() -> None:
    """A held call's legs are not passed: after the resume, silence counts from there."""
    silence: RtpSilence[str] = RtpSilence(10.0, now=0.0)
    silence.sweep(0.0, [("a", 5)])
    silence.sweep(8.0, [])
    assert silence.sweep(12.0, [("a", 5)]) == []
    assert silence.sweep(22.0, [("a", 5)]) == ["a"]


def test_a_timeout_of_zero_never_finds_silence_but_keeps_sweeping() -> None:
    silence: RtpSilence[str] = RtpSilence(0.0, now=0.0)
    assert silence.sweep(1e6, [("a", 0)]) == []
    assert silence.next_deadline() == 1e6 + 5.0


@given(
    timeout=st.floats(0.5, 300),
    steps=st.lists(st.tuples(st.floats(0.01, 50), st.booleans()), max_size=40),
)
def test_silent_exactly_when_nothing_came_for_the_timeout(
    timeout: float, steps: list[tuple[float, bool]]
) -> None:
    silence: RtpSilence[str] = RtpSilence(timeout, now=0.0)
    assert 0.25 <= silence.interval <= 5.0
    now, packets, last_heard = 0.0, 0, 0.0
    silence.sweep(now, [("leg", packets)])
    for gap, heard in steps:
        now += gap
        if heard:
            packets += 1
            last_heard = now
        silent = silence.sweep(now, [("leg", packets)]) == ["leg"]
        assert silent == (now - last_heard >= timeout)


def _timeout(seconds: float) -> Any:
    def edit(settings: dict[str, Any]) -> None:
        settings["media"] = {"timeout_seconds": seconds}

    return edit


def test_a_call_whose_rtp_stopped_is_ended_with_bye_to_both_phones(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        started = asyncio.get_running_loop().time()
        await call.hung_up()
        await answered.hung_up()
        waited = asyncio.get_running_loop().time() - started
        assert 30 <= waited <= 30 + 5 + 1
        [record] = await lab.records()
        assert (record.result, record.end_reason) == ("answered", "media_timeout")
        assert not lab.pbx.calls.calls

    play(tmp_path, story, _timeout(30))


def test_the_default_timeout_is_a_minute(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        await asyncio.sleep(55)
        assert lab.pbx.calls.calls
        await call.hung_up()
        await answered.hung_up()

    play(tmp_path, story)


def test_a_held_call_stays_up_and_is_watched_again_after_the_resume(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        assert (await answered.hold()).status == 200
        await asyncio.sleep(300)
        assert lab.pbx.calls.calls, "a held call was ended"
        assert (await answered.resume()).status == 200
        resumed = asyncio.get_running_loop().time()
        await call.hung_up()
        assert asyncio.get_running_loop().time() - resumed >= 30
        [record] = await lab.records()
        assert record.end_reason == "media_timeout"

    play(tmp_path, story, _timeout(30))


def test_a_timeout_of_zero_leaves_silent_calls_up(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        await asyncio.sleep(600)
        assert (await call.hang_up()).status == 200
        await answered.hung_up()
        [record] = await lab.records()
        assert record.end_reason is None

    play(tmp_path, story, _timeout(0))
