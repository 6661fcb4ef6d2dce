"""A call flow ends with its call, in memory (tests/support/testbed.py): a key the
caller presses as it hangs up, read in the same turn of the loop as its BYE or a
little apart, does not take the menu on to ring a phone for a call that is over."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.softphone import write_tone
from tests.support.testbed import Testbed, play
from tests.support.user_agents import OutgoingCall


async def _press(call: OutgoingCall, digit: str) -> None:
    """A key pressed during the call, sent as SIP INFO (application/dtmf-relay)."""
    body = f"Signal={digit}\r\nDuration=160\r\n".encode()
    await call.request("INFO", body, "application/dtmf-relay")


def test_a_key_pressed_as_the_caller_hangs_up_ends_the_menu_with_the_call(
    tmp_path: Path,
) -> None:
    greeting = write_tone(tmp_path / "greeting.wav", 440, 0.5)

    def edit(config: dict[str, Any]) -> None:
        config["ivrs"] = [
            {"name": "main", "greeting": f"file:{greeting}", "options": {"1": "extension:1001"}}
        ]
        config["numbers"] = [{"number": "500", "destination": "ivr:main"}]

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        for turns in range(4):
            call = alice.call("500")
            assert (await call.final()).status == 200
            await asyncio.sleep(2)  # the greeting is over: the menu waits for a key
            pressed = asyncio.ensure_future(_press(call, "1"))
            for _ in range(turns):
                await asyncio.sleep(0)
            assert (await call.hang_up()).status == 200
            await pressed
            assert await bob.rings_not(2.0)
            assert not lab.pbx.calls.calls
            running = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]
            assert "CallFlows.begin" not in running

    play(tmp_path, story, edit)
