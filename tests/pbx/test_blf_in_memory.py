"""Busy lamp field and presence, in memory (tests/support/testbed.py): a phone's BLF key
subscribes to the dialog event package (RFC 4235) of another extension and sees its
calls ring (with the caller), connect and end, in full-state documents whose version
counts up; presence (RFC 3856, PIDF) follows registration and calls; subscriptions are
negotiated, refreshed, limited and ended as RFC 6665 says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ipbx.sip.message import Request
from tests.support.testbed import Testbed, play
from tests.support.user_agents import Call

STATES = re.compile(r"<state>(\w+)</state>")


async def notified(watch: Call) -> Request:
    return await watch.received("NOTIFY")


def version_of(notify: Request) -> int:
    found = re.search(r'version="(\d+)"', notify.body.decode())
    assert found is not None, notify.body
    return int(found.group(1))


def test_a_blf_key_sees_a_call_ring_connect_and_end(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        watch, ok = await carol.subscribe("1001", "dialog")
        assert ok.status == 200 and ok.headers.get("Expires") == "600"
        idle = await notified(watch)
        assert idle.content_type == "application/dialog-info+xml"
        assert (idle.headers.get("Subscription-State") or "").startswith("active;expires=")
        assert STATES.findall(idle.body.decode()) == [] and version_of(idle) == 0

        alice.display = "Alice"
        call = alice.call("1001")
        ringing = await bob.rings()
        ringing.ring()
        early = await notified(watch)
        body = early.body.decode()
        assert STATES.findall(body) == ["early"] and 'direction="recipient"' in body
        assert '<identity display="Alice">sip:1000@' in body  # who calls, for **1001
        assert version_of(early) == 1

        ringing.answer()
        assert (await call.final()).status == 200
        assert STATES.findall((await notified(watch)).body.decode()) == ["confirmed"]
        assert (await call.hang_up()).status == 200
        ended = await notified(watch)
        assert STATES.findall(ended.body.decode()) == ["terminated"]
        assert version_of(ended) == 3

        # Un-subscribe: 200 Expires 0, and a last NOTIFY, terminated, with no dialogs.
        response = await watch.request("SUBSCRIBE", extra=[("Event", "dialog"), ("Expires", "0")])
        assert (response.status, response.headers.get("Expires")) == (200, "0")
        last = await notified(watch)
        assert last.headers.get("Subscription-State") == "terminated"
        assert STATES.findall(last.body.decode()) == []
        assert lab.pbx.subscriptions.live() == []

    play(tmp_path, story)


def test_presence_follows_registration_calls_and_do_not_disturb(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, carol = await lab.registered("1000"), await lab.registered("1002")
        bob = lab.phone("1001")
        watch, ok = await carol.subscribe("1001", "presence")
        assert ok.status == 200
        first = await notified(watch)
        assert first.content_type == "application/pidf+xml"
        assert "<basic>closed</basic>" in first.body.decode()
        await bob.register()
        assert "<basic>open</basic>" in (await notified(watch)).body.decode()
        call = alice.call("1001")
        (await bob.rings()).ring()
        await call.provisional(180)
        busy = (await notified(watch)).body.decode()
        assert "<rpid:on-the-phone/>" in busy and "<note>On the phone</note>" in busy
        call.cancel()
        free = (await notified(watch)).body.decode()
        assert "<basic>open</basic>" in free and "on-the-phone" not in free
        # *78: do-not-disturb is open, busy (once the feature code's own call is over).
        dnd = bob.call("*78")
        assert (await dnd.final()).status == 200
        await dnd.hung_up()
        states = [(await notified(watch)).body.decode() for _ in range(2)]
        assert "<rpid:on-the-phone/>" in states[0]
        assert "<rpid:busy/>" in states[1] and "<note>Do not disturb</note>" in states[1]

    play(tmp_path, story)


def with_two_subscriptions_at_most(config: dict[str, Any]) -> None:
    config["sip"]["max_subscriptions"] = 2


def test_subscriptions_are_negotiated_and_limited(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        carol = await lab.registered("1002")
        _, unknown = await carol.subscribe("1001", "conference")
        assert unknown.status == 489
        assert unknown.headers.get("Allow-Events") == "message-summary, dialog, presence"
        _, brief = await carol.subscribe("1001", "dialog", expires=5)
        assert (brief.status, brief.headers.get("Min-Expires")) == (423, "60")
        _, nobody = await carol.subscribe("4711", "dialog")
        assert nobody.status == 404
        for number in ("1000", "1001"):
            assert (await carol.subscribe(number, "dialog"))[1].status == 200
        _, third = await carol.subscribe("1003", "dialog")
        assert third.status == 403
        # A subscription not refreshed ends with a NOTIFY, reason=timeout.
        watch, ok = await (await lab.registered("1003")).subscribe("1000", "dialog", 60)
        assert ok.status == 200
        await notified(watch)
        expired = await watch.received("NOTIFY", timeout=70)
        assert expired.headers.get("Subscription-State") == "terminated;reason=timeout"

    play(tmp_path, story, with_two_subscriptions_at_most)
