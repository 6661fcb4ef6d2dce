"""Call parking, in memory (tests/support/testbed.py): with ``parking: {slots:
"701-720"}``, a phone transfers its call blind to 700 (REFER, RFC 3515) and the other
party waits in slot 701; any phone that dials 701 takes it; a call left there past
`timeout_seconds` rings its parker again, then follows the parker's no-answer
forwarding. A BLF key on 701 (the dialog package, RFC 4235) lights while a call waits. The API's
blind transfer to 700 parks as the REFER does. The real-socket versions, with audio:
tests/interop/test_parking.py, tests/api/test_call_control.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ipbx.pbx.control import CallStateError
from ipbx.pbx.events import Event
from tests.support.testbed import Testbed, play
from tests.support.user_agents import Call, connected

PBX_HOST = "10.0.0.1"
PARK = f"<sip:700@{PBX_HOST}>"
STATES = re.compile(r"<state>(\w+)</state>")


def with_parking(config: dict[str, Any]) -> None:
    config["parking"] = {"slots": "701-720", "timeout_seconds": 60}


async def sipfrags(transferor: Call) -> list[bytes]:
    """The sipfrag status lines of the REFER's NOTIFYs, up to the final one."""
    frags = []
    while True:
        notify = await transferor.received("NOTIFY")
        frags.append(notify.body)
        if (notify.headers.get("Subscription-State") or "").startswith("terminated"):
            return frags


async def lamp(watch: Call) -> list[str]:
    return STATES.findall((await watch.received("NOTIFY")).body.decode())


def test_a_call_parked_on_700_waits_in_701_until_a_phone_dials_701(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol, dave = [
            await lab.registered(n) for n in ("1000", "1001", "1002", "1003")
        ]
        watch, ok = await carol.subscribe("701", "dialog")
        assert ok.status == 200 and await lamp(watch) == []
        carols, _ = await dave.subscribe("1002", "dialog")
        assert await lamp(carols) == []
        call, at_bob = await connected(alice, bob)
        assert (await at_bob.refer(PARK)).status == 202
        # The slot is spoken to Bob before the transfer's outcome and his BYE.
        assert await sipfrags(at_bob) == [b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 200 OK\r\n"]
        await at_bob.hung_up()
        assert await lamp(watch) == ["confirmed"]
        assert [s for s, _ in lab.pbx.calls.parked.slots.items()] == ["701"]

        retrieval = carol.call("701")
        assert (await retrieval.final()).status == 200
        assert await lamp(watch) == ["terminated"]
        # Carol's own call to 701 became the parked one: her lamp follows that.
        assert await lamp(carols) == ["trying"]
        assert await lamp(carols) == ["terminated", "confirmed"]
        assert (await call.hang_up()).status == 200  # Alice's BYE reaches Carol
        await retrieval.hung_up()
        assert await lamp(carols) == ["terminated"]
        [record] = await lab.records()
        assert (record.callee, record.result) == ("1001", "answered")
        assert record.path == "extension:1001,park:701,retrieve:1002"

    play(tmp_path, story, with_parking)


def test_a_parked_call_rings_its_parker_then_follows_the_no_answer_forward(
    tmp_path: Path,
) -> None:
    def edit(config: dict[str, Any]) -> None:
        with_parking(config)
        config["media"]["timeout_seconds"] = 0  # these phones send no RTP
        config["extensions"][1]["forward"] = {"no_answer": "1003", "no_answer_seconds": 10}

    async def story(lab: Testbed) -> None:
        alice, bob, dave = [await lab.registered(n) for n in ("1000", "1001", "1003")]
        call, at_bob = await connected(alice, bob)
        parked_at = lab.pbx.endpoint.loop.time()
        await at_bob.refer(PARK)
        await at_bob.hung_up()
        again = await bob.rings(timeout=70)
        assert 60 <= lab.pbx.endpoint.loop.time() - parked_at < 61
        assert lab.pbx.calls.parked.slots == {}  # the slot is free again
        assert await again.rings_unanswered() >= 9.9
        at_dave = await dave.rings()
        at_dave.answer()
        assert (await call.hang_up()).status == 200
        await at_dave.hung_up()
        [record] = await lab.records()
        assert record.path == "extension:1001,park:701,extension:1003"

    play(tmp_path, story, edit)


def test_an_empty_slot_says_so_and_without_parking_700_is_no_number(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        empty = alice.call("702")
        assert (await empty.final()).status == 200
        await empty.hung_up()
        records = await lab.records()
        assert (records[-1].callee, records[-1].result) == ("702", "service")

    async def unconfigured(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        _, at_bob = await connected(alice, bob)
        await at_bob.refer(PARK)
        assert (await sipfrags(at_bob))[-1] == b"SIP/2.0 404 Not Found\r\n"
        [call] = lab.pbx.active_calls()
        with pytest.raises(LookupError, match="700"):
            lab.pbx.control.transfer(call.uid, "caller", "700")

    play(tmp_path, story, with_parking)
    play(tmp_path / "unconfigured", unconfigured)


def test_the_first_free_slot_a_park_keys_own_slot_and_a_full_lot_503(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["parking"] = {"slots": "701-702"}

    async def park(caller: Any, bob: Any) -> list[bytes]:
        _, at_bob = await connected(caller, bob)
        await at_bob.refer(PARK)
        return await sipfrags(at_bob)

    async def story(lab: Testbed) -> None:
        alice, bob, carol, dave = [
            await lab.registered(n) for n in ("1000", "1001", "1002", "1003")
        ]
        slots = lab.pbx.calls.parked.slots
        assert (await park(alice, bob))[-1] == b"SIP/2.0 200 OK\r\n"
        assert (await park(carol, bob))[-1] == b"SIP/2.0 200 OK\r\n"
        assert {slot: p.call.from_number for slot, p in slots.items()} == {
            "701": "1000", "702": "1002",
        }  # fmt: skip
        call, at_bob = await connected(dave, bob)
        await at_bob.refer(PARK)
        assert (await sipfrags(at_bob))[-1] == b"SIP/2.0 503 Service Unavailable\r\n"
        assert (await call.hang_up()).status == 200  # Dave and Bob were still connected
        await at_bob.hung_up()
        assert (await dave.call("701").final()).status == 200
        assert (await park(dave, bob))[-1] == b"SIP/2.0 200 OK\r\n"
        assert sorted(slots) == ["701", "702"] and slots["701"].call.from_number == "1003"
        # A park key: a blind transfer to the slot itself, refused while it is taken.
        assert (await alice.call("702").final()).status == 200  # Alice takes Carol's call
        _, at_bob = await connected(alice, bob)
        assert (await at_bob.refer(f"<sip:701@{PBX_HOST}>")).status == 202
        assert (await sipfrags(at_bob))[-1] == b"SIP/2.0 503 Service Unavailable\r\n"
        assert (await at_bob.refer(f"<sip:702@{PBX_HOST}>")).status == 202
        assert (await sipfrags(at_bob))[-1] == b"SIP/2.0 200 OK\r\n"
        assert slots["702"].call.from_number == "1000"

    play(tmp_path, story, edit)


def test_the_api_parks_on_700_as_a_refer_does_and_a_full_lot_changes_nothing(
    tmp_path: Path,
) -> None:
    """POST /calls/active/{id}/transfer to 700 (pbx/control.py): the party it names waits
    in the slot; the other one hears the slot and gets a BYE, and no NOTIFY (it sent no
    REFER). With every slot taken the transfer is refused and the two stay connected."""

    def edit(config: dict[str, Any]) -> None:
        config["parking"] = {"slots": "701-701"}

    async def story(lab: Testbed) -> None:
        alice, bob, carol, dave = [
            await lab.registered(n) for n in ("1000", "1001", "1002", "1003")
        ]
        published: list[Event] = []
        lab.pbx.events.subscribe(published.append)
        call, at_bob = await connected(alice, bob)
        [first] = lab.pbx.active_calls()
        parked_at = lab.pbx.endpoint.loop.time()
        lab.pbx.control.transfer(first.uid, "caller", "700")
        await at_bob.hung_up()
        assert lab.pbx.endpoint.loop.time() - parked_at > 1.0  # "Parked on 7 0 1" first
        assert "NOTIFY" not in [r.method for r in at_bob.requests.items]
        slots = lab.pbx.calls.parked.slots
        assert {slot: p.call.from_number for slot, p in slots.items()} == {"701": "1000"}

        other, at_dave = await connected(carol, dave)
        [second] = [c for c in lab.pbx.active_calls() if c.from_number == "1002"]
        with pytest.raises(CallStateError, match="parking slot 701 is taken"):
            lab.pbx.control.transfer(second.uid, "callee", "700")
        assert list(slots) == ["701"]
        assert (await other.hang_up()).status == 200  # Carol and Dave were still connected
        await at_dave.hung_up()

        retrieval = carol.call("701")
        assert (await retrieval.final()).status == 200
        assert (await call.hang_up()).status == 200  # Alice's BYE reaches Carol
        await retrieval.hung_up()
        parking = [e for e in published if e.type.endswith("parked")]
        assert [(e.type, e.data["slot"], e.data["extension"]) for e in parking] == [
            ("call.parked", "701", "1001"), ("call.unparked", "701", "1001"),
        ]  # fmt: skip
        assert parking[1].data["reason"] == "retrieved"
        records = await lab.records()
        assert records[0].path == "extension:1001,park:701,retrieve:1002"

    play(tmp_path, story, edit)
