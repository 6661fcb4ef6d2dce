"""An outside number (`number:+…`, or digits a phone dials) works from every place a
destination or a transfer target can stand, in memory (tests/support/testbed.py):
forwarding (always, busy, no answer, `*72`), an IVR option, a schedule, a group's
fallback, a transfer by REFER or by the API, and click-to-call. Each goes out through
the outbound routes to the provider's gateway; forwarding with the forwarded
extension's permission, transfers and click-to-call with the transferring party's or
the agent's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipbx.pbx.call.model import Call
from tests.support.softphone import write_tone
from tests.support.testbed import Testbed, play
from tests.support.user_agents import IncomingCall, OutgoingCall, Phone, connected

MOBILE = "+12125551234"  # an outside number, as a destination holds it
DIALLED = "92125551234"  # the same number as a phone dials it (9 for a line out)
ABROAD = "+442071234567"  # a number only `international` permission may call
PROVIDER = "10.0.0.101"
MENU = "500"


def outside(edit: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """One IP trunk; E.164 numbers and 9 + ten digits go out through it, numbers
    abroad only for `international` permission (extensions have `national`)."""

    def configure(config: dict[str, Any]) -> None:
        config["country"] = "US"
        config["trunks"] = [
            {"name": "provider", "host": f"{PROVIDER}:5060",
             "allow_from": [f"{PROVIDER}:5060"], "options_interval": 0}
        ]  # fmt: skip
        config["outbound_routes"] = [
            {"name": "e164", "pattern": "_+1NXXNXXXXXX", "trunks": ["provider"]},
            {"name": "national", "pattern": "_9NXXNXXXXXX", "strip": 1, "prepend": "+1",
             "trunks": ["provider"]},
            {"name": "abroad", "pattern": "_+44.", "trunks": ["provider"],
             "permission": "international"},
        ]  # fmt: skip
        if edit is not None:
            edit(config)

    return configure


async def _talk_then_hang_up(call: OutgoingCall, out: IncomingCall) -> None:
    out.answer()
    await _talk_then_hang_up_answered(call, out)


async def _talk_then_hang_up_answered(call: OutgoingCall, out: IncomingCall) -> None:
    await out.received("ACK")
    assert (await call.hang_up()).status == 200
    await out.hung_up()


# --- dialled ------------------------------------------------------------------------------


def test_the_callers_display_name_goes_out_quoted_once(tmp_path: Path) -> None:
    """A From's display name is read as text and written as one quoted-string (RFC 3261
    §25.1) in the From the provider gets: not the phone's quotes quoted again."""

    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice = await lab.registered("1000")
        alice.display = '"Alice \\"Al\\" Smith"'
        call = alice.call(MOBILE)
        out = await gateway.rings()
        assert out.invite.from_.display == '"Alice \\"Al\\" Smith"'
        assert out.invite.from_.name == 'Alice "Al" Smith'
        await _talk_then_hang_up(call, out)

    play(tmp_path, story, outside())


# --- forwarding ---------------------------------------------------------------------------


@pytest.mark.parametrize("condition", ["always", "busy", "no_answer"])
def test_an_extension_forwarded_to_an_outside_number_rings_it_through_the_trunk(
    tmp_path: Path, condition: str
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["extensions"][1]["forward"] = {condition: MOBILE, "no_answer_seconds": 5}

    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        if condition == "busy":
            (await bob.rings()).refuse(486)
        elif condition == "no_answer":
            await (await bob.rings()).rings_unanswered()
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        out.ring()
        await call.provisional(180)  # the caller is not answered before the mobile
        out.answer()
        assert (await call.final()).status == 200
        assert (await call.hang_up()).status == 200
        await out.hung_up()
        [record] = await lab.records()
        assert record.path == f"extension:1001,number:{MOBILE}"
        assert record.result == "answered"

    play(tmp_path, story, outside(edit))


async def _feature_code(phone: Phone, code: str) -> None:
    """`phone` dials a feature code and hears its confirmation to the end."""
    call = phone.call(code)
    assert (await call.final()).status == 200
    await call.hung_up()


def test_star_72_to_a_mobile_forwards_calls_there_until_star_73(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        await _feature_code(bob, f"*72{DIALLED}")
        call = alice.call("1001")
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        out.answer()
        assert (await call.final()).status == 200
        assert (await call.hang_up()).status == 200
        await _feature_code(bob, "*73")
        again = alice.call("1001")
        (await bob.rings()).answer()
        assert (await again.final()).status == 200

    play(tmp_path, story, outside())


def test_star_72_refuses_a_number_the_extension_may_not_call(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        await _feature_code(bob, f"*72{ABROAD[1:]}")
        call = alice.call("1001")
        (await bob.rings()).answer()  # not forwarded
        assert (await call.final()).status == 200
        assert await gateway.rings_not(1.0)

    def edit(config: dict[str, Any]) -> None:
        config["outbound_routes"].append(
            {"name": "intl", "pattern": "_44.", "prepend": "+", "trunks": ["provider"],
             "permission": "international"}
        )  # fmt: skip

    play(tmp_path, story, outside(edit))


def test_a_forward_abroad_goes_out_with_the_forwarded_extensions_permission(
    tmp_path: Path,
) -> None:
    """1001 (`national`) forwards always abroad: the forward is refused (403), as 1001
    could not call there itself; with `international` it goes out."""

    def edit(permission: str) -> Callable[[dict[str, Any]], None]:
        def change(config: dict[str, Any]) -> None:
            config["extensions"][1]["forward"] = {"always": ABROAD}
            config["extensions"][1]["permission"] = permission

        return change

    async def refused(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice = await lab.registered("1000")
        assert (await alice.call("1001").final()).status == 403
        assert await gateway.rings_not(1.0)

    async def allowed(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice = await lab.registered("1000")
        call = alice.call("1001")
        out = await gateway.rings()
        assert out.invite.uri.user == ABROAD
        out.answer()
        assert (await call.final()).status == 200

    play(tmp_path / "national", refused, outside(edit("national")))
    play(tmp_path / "international", allowed, outside(edit("international")))


# --- call flows ---------------------------------------------------------------------------


async def _press(call: OutgoingCall, digit: str) -> None:
    body = f"Signal={digit}\r\nDuration=160\r\n".encode()
    response = await call.request("INFO", body, "application/dtmf-relay")
    assert response.status == 200


def test_an_ivr_option_to_an_outside_number_calls_it(tmp_path: Path) -> None:
    greeting = write_tone(tmp_path / "greeting.wav", 440, 0.5)

    def edit(config: dict[str, Any]) -> None:
        config["ivrs"] = [{"name": "main", "greeting": f"file:{greeting}",
                           "options": {"1": f"number:{MOBILE}"}}]  # fmt: skip
        config["numbers"] = [{"number": MENU, "destination": "ivr:main"}]

    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice = await lab.registered("1000")
        call = alice.call(MENU)
        assert (await call.final()).status == 200
        await _press(call, "1")
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        assert out.invite.body  # ipbx's own offer: the menu answered the caller
        await _talk_then_hang_up(call, out)
        [record] = await lab.records()
        assert record.path == f"ivr:main,number:{MOBILE}"

    play(tmp_path, story, outside(edit))


def test_a_schedule_to_an_outside_number_calls_it(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["schedules"] = [
            {"name": "office", "timezone": "UTC", "hours": {"mon-sun": "0:00-24:00"},
             "open": f"number:{MOBILE}", "closed": f"number:{MOBILE}"}
        ]  # fmt: skip
        config["numbers"] = [{"number": MENU, "destination": "schedule:office"}]

    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice = await lab.registered("1000")
        call = alice.call(MENU)
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        assert (await call.final()).status == 200
        await _talk_then_hang_up(call, out)

    play(tmp_path, story, outside(edit))


def _group_of(strategy: str) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["groups"] = [{"name": "sales", "strategy": strategy, "ring_seconds": 5,
                             "members": ["1002", MOBILE]}]  # fmt: skip
        config["numbers"] = [{"number": MENU, "destination": "group:sales"}]

    return edit


@pytest.mark.parametrize("first", ["mobile", "desk"])
def test_a_ringall_group_rings_a_mobile_member_with_the_desk_phone(
    tmp_path: Path, first: str
) -> None:
    """Both ring at once; whoever answers first takes the call, the other is cancelled."""

    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, carol = await lab.registered("1000"), await lab.registered("1002")
        call = alice.call(MENU)
        desk = await carol.rings()
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        answering, other = (out, desk) if first == "mobile" else (desk, out)
        other.ring()
        answering.answer()
        await other.was_cancelled()
        assert (await call.final()).status == 200
        await _talk_then_hang_up_answered(call, answering)

    play(tmp_path, story, outside(_group_of("ringall")))


@pytest.mark.parametrize("where", ["member", "fallback"])
def test_a_group_calls_a_mobile_after_the_desk_phone(tmp_path: Path, where: str) -> None:
    """As its next member (sequential), or as its fallback when nobody answered."""

    def fallback(config: dict[str, Any]) -> None:
        _group_of("sequential")(config)
        config["groups"][0].update(members=["1002"], fallback=f"number:{MOBILE}")

    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, carol = await lab.registered("1000"), await lab.registered("1002")
        call = alice.call(MENU)
        await (await carol.rings()).rings_unanswered()
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        assert (await call.final()).status == 200
        await _talk_then_hang_up(call, out)
        [record] = await lab.records()
        assert record.path.startswith("group:sales")

    play(tmp_path, story, outside(fallback if where == "fallback" else _group_of("sequential")))


# --- transfers and click-to-call ----------------------------------------------------------


def test_a_phone_transfers_its_caller_to_an_outside_number_by_refer(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        assert (await answered.refer(f"<sip:{DIALLED}@10.0.0.1>")).status == 202
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        assert out.invite.from_.uri.user == "1000"  # the transferred party is shown
        out.answer()
        await out.received("ACK")
        notify = await answered.received("NOTIFY")
        while b"200 OK" not in notify.body:
            notify = await answered.received("NOTIFY")
        await answered.hung_up()
        assert (await call.hang_up()).status == 200
        await out.hung_up()
        [record] = await lab.records()
        assert record.path == f"extension:1001,transfer:{DIALLED}"

    play(tmp_path, story, outside())


def test_a_transfer_abroad_is_refused_for_a_national_extension(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        _, answered = await connected(alice, bob)
        assert (await answered.refer(f"<sip:{ABROAD}@10.0.0.1>")).status == 202
        notify = await answered.received("NOTIFY")
        while b"Forbidden" not in notify.body:
            notify = await answered.received("NOTIFY")
        assert notify.body.startswith(b"SIP/2.0 403")
        assert await gateway.rings_not(1.0)

    play(tmp_path, story, outside())


def test_a_party_on_a_trunk_transfers_to_extensions_only(tmp_path: Path) -> None:
    """A caller from outside cannot make ipbx call out for it by REFER (toll fraud)."""

    def edit(config: dict[str, Any]) -> None:
        config["numbers"] = [{"number": "+15550100", "destination": "extension:1001"}]

    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER, "+12125550199")
        bob = await lab.registered("1001")
        call, _ = await connected(gateway, bob, "+15550100")
        assert (await call.refer(f"<sip:{DIALLED}@10.0.0.1>")).status == 202
        notify = await call.received("NOTIFY")
        while b"Forbidden" not in notify.body:
            notify = await call.received("NOTIFY")
        assert await gateway.rings_not(1.0)

    play(tmp_path, story, outside(edit))


def _only_call(lab: Testbed) -> Call:
    [call] = lab.pbx.active_calls()
    return call


def test_the_api_transfers_a_party_to_an_outside_number(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, answered = await connected(alice, bob)
        lab.pbx.control.transfer(_only_call(lab).uid, "caller", MOBILE)
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        out.answer()
        await answered.hung_up()  # the other party (1001) steps out
        assert (await call.hang_up()).status == 200
        await out.hung_up()

    play(tmp_path, story, outside())


def test_the_api_refuses_a_transfer_the_other_party_may_not_call(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        await connected(alice, bob)
        with pytest.raises(PermissionError, match="international"):
            lab.pbx.control.transfer(_only_call(lab).uid, "caller", ABROAD)

    play(tmp_path, story, outside())


def test_click_to_call_rings_the_agent_then_the_outside_number(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER)
        alice = await lab.registered("1000")
        placed = lab.pbx.originate("1000", MOBILE, 30)
        agent = await alice.rings()
        agent.answer()
        out = await gateway.rings()
        assert out.invite.uri.user == MOBILE
        assert out.invite.from_.uri.user == "1000"
        out.answer()
        await out.received("ACK")
        assert (await agent.hang_up()).status == 200
        await out.hung_up()
        [record] = await lab.records()
        assert (record.call_id, record.callee, record.result) == (placed.uid, MOBILE, "answered")
        assert record.direction == "outbound"

    play(tmp_path, story, outside())


def test_a_click_to_call_the_agent_does_not_take_ends_with_its_record_and_event(
    tmp_path: Path,
) -> None:
    """Its call.started is followed by call.ended (result busy), and its record is
    written, with no leg: nobody answered. Nobody missed a call (no call.missed)."""

    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        seen: list[str] = []
        lab.pbx.events.subscribe(lambda event: seen.append(event.type))
        placed = lab.pbx.originate("1000", MOBILE, 30)
        (await alice.rings()).refuse(486)
        [record] = await lab.records()
        assert (record.call_id, record.result, record.legs) == (placed.uid, "busy", ())
        assert [t for t in seen if t.startswith("call.")] == [
            "call.started",
            "call.ringing",
            "call.ended",
        ]

    play(tmp_path, story, outside())


def test_click_to_call_to_a_number_the_agent_may_not_call_is_refused(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        with pytest.raises(PermissionError, match="international"):
            lab.pbx.originate("1000", ABROAD, 30)
        with pytest.raises(LookupError):
            lab.pbx.originate("1000", "+0", 30)
        assert await alice.rings_not(1.0)

    play(tmp_path, story, outside())
