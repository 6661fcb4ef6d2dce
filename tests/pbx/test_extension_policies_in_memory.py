"""An extension's own policies apply to every call that reaches it, however it got
there, in memory (tests/support/testbed.py): `record: always` records a call that came
in on a DID, through a ring group, an IVR option, a forward, a transfer or a pickup;
the extension's blacklist entry turns away a caller from the phone network on a DID,
and through a menu. call.started names the trunk and the caller's display name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ipbx.pbx.events import Event
from tests.support.softphone import write_tone
from tests.support.testbed import Testbed, play
from tests.support.user_agents import OutgoingCall, Phone, connected

DID = "+15550100"
OUTSIDE_CALLER = "+12125550199"
PROVIDER = "10.0.0.101"
MENU = "500"
RECORDED = "1001"


def provider(lab: Testbed) -> Phone:
    """The provider's gateway, calling as OUTSIDE_CALLER."""
    return lab.gateway(PROVIDER, OUTSIDE_CALLER)


def setup(tmp_path: Path, **extra: Any) -> Callable[[dict[str, Any]], None]:
    """1001 records every call; a DID, menu 500 (option 1: 1001), group `sales` (1001)
    and 1002 forwarded always to 1001, as `extra` picks."""
    greeting = write_tone(tmp_path / "greeting.wav", 440, 0.3)

    def edit(config: dict[str, Any]) -> None:
        config["country"] = "US"
        config["extensions"][1]["record"] = "always"
        config["trunks"] = [
            {"name": "provider", "host": f"{PROVIDER}:5060",
             "allow_from": [f"{PROVIDER}:5060"], "options_interval": 0}
        ]  # fmt: skip
        config["ivrs"] = [{"name": "main", "greeting": f"file:{greeting}",
                           "options": {"1": "extension:1001"}}]  # fmt: skip
        config["groups"] = [{"name": "sales", "members": extra.get("members", ["1001"])}]
        if "dnd" in extra:
            config["extensions"][3]["dnd"] = True
        config["numbers"] = [
            {"number": DID, "destination": extra.get("did", "extension:1001")},
            {"number": MENU, "destination": extra.get("menu", "ivr:main")},
        ]
        if "forward" in extra:
            config["extensions"][2]["forward"] = {"always": "1001"}
        config["blacklist"] = extra.get("blacklist", [])

    return edit


async def _press(call: OutgoingCall, digit: str) -> None:
    body = f"Signal={digit}\r\nDuration=160\r\n".encode()
    assert (await call.request("INFO", body, "application/dtmf-relay")).status == 200


async def _recorded(lab: Testbed, call: OutgoingCall) -> None:
    """The call, once 1001 answered, is hung up; its record names a recording."""
    assert (await call.hang_up()).status == 200
    [record] = await lab.records()
    assert record.result == "answered"
    assert record.recording is not None, record.path


async def via_did(lab: Testbed, bob: Phone) -> OutgoingCall:
    call = provider(lab).call(DID)
    (await bob.rings()).answer()
    assert (await call.final()).status == 200
    return call


async def via_group(lab: Testbed, bob: Phone) -> OutgoingCall:
    call = (await lab.registered("1000")).call(MENU)
    (await bob.rings()).answer()
    assert (await call.final()).status == 200
    return call


async def via_ivr(lab: Testbed, bob: Phone) -> OutgoingCall:
    call = (await lab.registered("1000")).call(MENU)
    assert (await call.final()).status == 200
    await _press(call, "1")
    (await bob.rings()).answer()
    return call


async def via_forward(lab: Testbed, bob: Phone) -> OutgoingCall:
    call = (await lab.registered("1000")).call("1002")
    (await bob.rings()).answer()
    assert (await call.final()).status == 200
    return call


async def via_transfer(lab: Testbed, bob: Phone) -> OutgoingCall:
    alice, carol = await lab.registered("1000"), await lab.registered("1002")
    call, answered = await connected(alice, carol)
    assert (await answered.refer("<sip:1001@10.0.0.1>")).status == 202
    (await bob.rings()).answer()
    await answered.hung_up()
    return call


async def via_pickup(lab: Testbed, bob: Phone) -> OutgoingCall:
    alice, carol = await lab.registered("1000"), await lab.registered("1002")
    call = alice.call("1002")
    await carol.rings()
    picking = bob.call("*8")
    assert (await picking.final()).status == 200
    assert (await call.final()).status == 200
    return call


PATHS: dict[str, tuple[Callable[[Testbed, Phone], Awaitable[OutgoingCall]], dict[str, Any]]] = {
    "did": (via_did, {}),
    "group": (via_group, {"menu": "group:sales"}),
    "ivr": (via_ivr, {}),
    "forward": (via_forward, {"forward": True}),
    "transfer": (via_transfer, {}),
    "pickup": (via_pickup, {}),
}


@pytest.mark.parametrize("way", list(PATHS))
def test_record_always_records_a_call_however_it_reached_the_extension(
    tmp_path: Path, way: str
) -> None:
    reach, extra = PATHS[way]

    async def story(lab: Testbed) -> None:
        bob = await lab.registered(RECORDED)
        call = await reach(lab, bob)
        await _recorded(lab, call)

    play(tmp_path, story, setup(tmp_path, **extra))


@pytest.mark.parametrize("destination", ["extension:1001", "ivr:main"])
def test_an_extensions_blacklist_turns_away_a_caller_from_the_phone_network(
    tmp_path: Path, destination: str
) -> None:
    """On a DID that rings 1001, or through a menu option to it: 1001's phone never
    rings for a caller its own blacklist entry names."""
    entry = {"pattern": OUTSIDE_CALLER, "extension": "1001"}

    async def story(lab: Testbed) -> None:
        bob = await lab.registered("1001")
        call = provider(lab).call(DID)
        if destination == "ivr:main":
            assert (await call.final()).status == 200
            await _press(call, "1")
            await call.hung_up()
        else:
            assert (await call.final()).status == 603
        assert await bob.rings_not(1.0)
        [record] = await lab.records()
        assert record.path.endswith("extension:1001,blacklist")

    play(tmp_path, story, setup(tmp_path, did=destination, blacklist=[entry]))


def test_a_group_skips_the_members_whose_blacklist_refuses_the_caller_or_on_dnd(
    tmp_path: Path,
) -> None:
    """Group `sales` rings 1001, 1002 and 1003 at once for a caller from the phone
    network: 1001's own blacklist names the caller and 1003 is on do-not-disturb, so only
    1002's phone rings, and answers."""
    entry = {"pattern": OUTSIDE_CALLER, "extension": "1001"}
    members = ["1001", "1002", "1003"]

    async def story(lab: Testbed) -> None:
        screened, carol, dnd = [await lab.registered(n) for n in members]
        call = provider(lab).call(DID)
        (await carol.rings()).answer()
        assert (await call.final()).status == 200
        assert await screened.rings_not(0.5)
        assert await dnd.rings_not(0.5)
        assert (await call.hang_up()).status == 200

    edit = setup(tmp_path, did="group:sales", members=members, blacklist=[entry], dnd=True)
    play(tmp_path, story, edit)


def test_call_started_names_the_trunk_and_the_callers_display_name(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        events: list[Event] = []
        lab.pbx.calls.events.subscribe(events.append)
        bob = await lab.registered("1001")
        gateway = provider(lab)
        gateway.display = "Jane Roe"
        call = gateway.call(DID)
        (await bob.rings()).answer()
        assert (await call.final()).status == 200
        [started] = [e for e in events if e.type == "call.started"]
        assert started.data["trunk"] == "provider"
        assert started.data["direction"] == "inbound"
        assert started.data["caller_name"] == "Jane Roe"
        assert (await call.hang_up()).status == 200

    play(tmp_path, story, setup(tmp_path))
