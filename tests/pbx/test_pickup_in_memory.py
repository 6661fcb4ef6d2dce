"""Call pickup, in memory (tests/support/testbed.py): a phone dials *8 (pbx/features.py)
to answer the call that has been ringing longest on another extension; the ringing
phone is cancelled and the caller talks to whoever picked up. The real-socket version,
with audio: test_feature_codes.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.testbed import Testbed, play

PICKUP = "*8"


def test_pickup_answers_the_call_ringing_elsewhere(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call = alice.call("1002")
        at_carol = await carol.rings()
        at_carol.ring()
        await call.provisional(180)
        pickup = bob.call(PICKUP)
        assert (await pickup.final()).status == 200
        assert (await call.final()).status == 200
        await at_carol.was_cancelled()
        assert (await call.hang_up()).status == 200
        [record] = await lab.records()
        assert (record.callee, record.result) == ("1002", "answered")
        assert record.path == "extension:1002,pickup:1001"

    play(tmp_path, story)


def test_after_a_pickup_the_callers_bye_reaches_the_phone_that_picked_up(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call = alice.call("1002")
        (await carol.rings()).ring()
        await call.provisional(180)
        pickup = bob.call(PICKUP)
        assert (await pickup.final()).status == 200
        assert (await call.final()).status == 200
        assert (await call.hang_up()).status == 200
        await pickup.hung_up()

    play(tmp_path, story)


def test_pickup_takes_the_call_that_has_rung_longest(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol, dave = [
            await lab.registered(n) for n in ("1000", "1001", "1002", "1003")
        ]
        first = alice.call("1002")
        (await carol.rings()).ring()
        await asyncio.sleep(5)
        second = dave.call("1002")
        at_carol = await carol.rings()
        at_carol.ring()
        await second.provisional(180)
        pickup = bob.call(PICKUP)
        assert (await pickup.final()).status == 200
        assert (await first.final()).status == 200
        # Dave's call still rings Carol's phone.
        with_dave = second.responses.none_within(1.0, lambda r: r.status >= 200)
        assert await with_dave
        assert not at_carol.cancelled.is_set()

    play(tmp_path, story)


def test_pickup_with_nothing_ringing_says_so_and_hangs_up(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        bob = await lab.registered("1001")
        pickup = bob.call(PICKUP)
        assert (await pickup.final()).status == 200
        await pickup.hung_up()

    play(tmp_path, story)


def test_directed_pickup_takes_the_call_ringing_that_extension(tmp_path: Path) -> None:
    """**EXT: Bob's BLF key shows Carol's phone ringing with Alice's call, while Dave's
    call rings longer at Alice's; **1002 takes Alice's call, not Dave's."""

    async def story(lab: Testbed) -> None:
        alice, bob, carol, dave = [
            await lab.registered(n) for n in ("1000", "1001", "1002", "1003")
        ]
        to_dave = dave.call("1000")
        (await alice.rings()).ring()
        await to_dave.provisional(180)
        watch, _ = await bob.subscribe("1002", "dialog")
        await watch.received("NOTIFY")
        # Nothing rings 1002 yet: said so, and hung up; Dave's call is not taken.
        nothing = bob.call("**1002")
        assert (await nothing.final()).status == 200
        await nothing.hung_up()
        call = alice.call("1002")
        at_carol = await carol.rings()
        at_carol.ring()
        early = (await watch.received("NOTIFY")).body.decode()
        assert "<state>early</state>" in early and "sip:1000@" in early
        pickup = bob.call("**1002")
        assert (await pickup.final()).status == 200
        assert (await call.final()).status == 200
        await at_carol.was_cancelled()
        assert "<state>terminated</state>" in (await watch.received("NOTIFY")).body.decode()
        assert await to_dave.responses.none_within(1.0, lambda r: r.status >= 200)
        assert (await call.hang_up()).status == 200
        records = await lab.records()
        picked = next(r for r in records if r.callee == "1002")
        assert (picked.result, picked.path) == ("answered", "extension:1002,pickup:1001")

    play(tmp_path, story)


def in_pickup_groups(config: dict[str, Any]) -> None:
    groups = {"1001": ["sales"], "1002": ["sales", "front-desk"], "1003": ["support"]}
    for extension in config["extensions"]:
        extension["pickup_groups"] = groups.get(extension["number"], [])


def test_group_pickup_takes_only_calls_of_its_pickup_groups(tmp_path: Path) -> None:
    """1001 and 1002 share the sales group, 1003 is in support: Bob's *8 leaves the
    call ringing support longer and takes the one ringing Carol."""

    async def story(lab: Testbed) -> None:
        alice, bob, carol, dave = [
            await lab.registered(n) for n in ("1000", "1001", "1002", "1003")
        ]
        to_support = alice.call("1003")
        (await dave.rings()).ring()
        await to_support.provisional(180)
        nothing = bob.call(PICKUP)
        assert (await nothing.final()).status == 200
        await nothing.hung_up()
        to_sales = alice.call("1002")
        at_carol = await carol.rings()
        at_carol.ring()
        await to_sales.provisional(180)
        pickup = bob.call(PICKUP)
        assert (await pickup.final()).status == 200
        assert (await to_sales.final()).status == 200
        await at_carol.was_cancelled()
        assert await to_support.responses.none_within(1.0, lambda r: r.status >= 200)

    play(tmp_path, story, in_pickup_groups)
