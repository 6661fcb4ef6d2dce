"""An extension reached from a call flow (an IVR option, a number that points at it)
follows its own call handling as a direct call to it does, in memory (tests/support/
testbed.py): forwarded on busy and after its own no-answer time, forwarded always, and
busy on do-not-disturb. The caller is answered by the call flow first, so the phones get
the PBX's own offer and the caller hears them through the PBX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.softphone import write_tone
from tests.support.testbed import Testbed, play
from tests.support.user_agents import OutgoingCall, Phone

MENU = "500"


def _menu_to_1001(tmp_path: Path, **forward: Any) -> Callable[[dict[str, Any]], None]:
    """Number 500 is an IVR whose option 1 is extension 1001, forwarded as told."""
    greeting = write_tone(tmp_path / "greeting.wav", 440, 0.5)

    def edit(config: dict[str, Any]) -> None:
        config["ivrs"] = [
            {"name": "main", "greeting": f"file:{greeting}", "options": {"1": "extension:1001"}}
        ]
        config["numbers"] = [{"number": MENU, "destination": "ivr:main"}]
        config["extensions"][1]["forward"] = forward

    return edit


async def _press(call: OutgoingCall, digit: str) -> None:
    """A key pressed during the call, sent as SIP INFO (application/dtmf-relay)."""
    body = f"Signal={digit}\r\nDuration=160\r\n".encode()
    response = await call.request("INFO", body, "application/dtmf-relay")
    assert response.status == 200


async def _choose_1001(lab: Testbed, caller: Phone) -> OutgoingCall:
    call = caller.call(MENU)
    assert (await call.final()).status == 200  # the IVR answers
    await _press(call, "1")
    return call


def test_an_extension_chosen_in_an_ivr_follows_its_busy_forwarding(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call = await _choose_1001(lab, alice)
        rung = await bob.rings()
        assert rung.invite.body  # the PBX's own offer: the caller is answered already
        rung.refuse(486)
        forwarded = await carol.rings()
        assert forwarded.invite.uri.user == "1002"
        forwarded.answer()
        await forwarded.received("ACK")
        assert (await call.hang_up()).status == 200
        await forwarded.hung_up()
        [record] = await lab.records()
        assert record.path == "ivr:main,extension:1001,extension:1002"

    play(tmp_path, story, _menu_to_1001(tmp_path, busy="1002"))


def test_an_extension_chosen_in_an_ivr_rings_for_its_own_no_answer_time(
    tmp_path: Path,
) -> None:
    """Its no-answer time (12 s) and not the default a call flow rings for (30 s)."""

    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        await _choose_1001(lab, alice)
        ringing = await bob.rings()
        assert await ringing.rings_unanswered() == pytest.approx(12, abs=0.1)
        (await carol.rings()).answer()

    play(tmp_path, story, _menu_to_1001(tmp_path, no_answer="1002", no_answer_seconds=12))


def test_an_extension_forwarded_always_is_not_rung_from_an_ivr(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call = await _choose_1001(lab, alice)
        forwarded = await carol.rings()
        forwarded.answer()
        assert await bob.rings_not(2.0)
        assert (await forwarded.hang_up()).status == 200
        await call.hung_up()
        [record] = await lab.records()
        assert record.path == "ivr:main,extension:1001,extension:1002"

    play(tmp_path, story, _menu_to_1001(tmp_path, always="1002"))


@pytest.mark.parametrize("way", ["direct", "number"])
def test_an_extension_on_do_not_disturb_with_nowhere_to_go_is_busy(
    tmp_path: Path, way: str
) -> None:
    """Dialled directly, or through a number that points at it (a call flow that has
    not answered yet): either way the INVITE gets 486, and no phone rings."""

    def edit(config: dict[str, Any]) -> None:
        config["extensions"][1]["dnd"] = True
        config["numbers"] = [{"number": MENU, "destination": "extension:1001"}]

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        refused = await alice.call("1001" if way == "direct" else MENU).final()
        assert refused.status == 486
        if way == "direct":
            assert "do not disturb" in refused.reason
        assert await bob.rings_not(1.0)

    play(tmp_path, story, edit)
