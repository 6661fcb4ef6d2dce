"""Reliable provisional responses (RFC 3262) through the PBX, in memory: a caller that
requires 100rel gets its ringing reliably (RSeq, sent again until its PRACK, which the
PBX answers 200), or 500 when it never PRACKs; a callee's reliable ringing is PRACKed
by the PBX, and the dialog its 2xx confirms counts its CSeq on from the PRACK."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ipbx.sip.dialog import Dialog
from ipbx.sip.message import Request, Response, parse_datagram
from tests.support.testbed import Testbed, play
from tests.support.user_agents import OutgoingCall, Phone

REQUIRE_100REL = [("Require", "100rel")]


def prack(phone: Phone, call: OutgoingCall, provisional: Response) -> Dialog:
    """The PRACK of `provisional` in its early dialog, sent; the dialog."""
    early = Dialog.as_uac(call.invite, provisional)
    rack = f"{provisional.headers.get('RSeq')} {call.invite.cseq.number} INVITE"
    request = early.create_request("PRACK", extra=[("RAck", rack)])
    phone.endpoint.send_request(
        request, phone.server, lambda response, _tx: call.responses.put(response)
    )
    return early


def test_a_caller_that_requires_100rel_gets_its_ringing_reliably(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", headers=REQUIRE_100REL)
        ringing = await bob.rings()
        ringing.ring()
        first = await call.provisional(180)
        assert first.headers.get("Require") == "100rel"
        again = await call.provisional(180)  # sent again: no PRACK yet
        assert again.headers.get("RSeq") == first.headers.get("RSeq")
        prack(alice, call, first)
        acknowledged = await call.responses.take(
            lambda r: r.cseq.method == "PRACK", "200 to the PRACK"
        )
        assert acknowledged.status == 200
        ringing.answer()
        assert (await call.final()).status == 200
        assert (await call.hang_up()).status == 200
        await ringing.hung_up()

    play(tmp_path, story)


def test_a_caller_that_never_pracks_gets_500(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001", headers=REQUIRE_100REL)
        ringing = await bob.rings()
        ringing.ring()
        refused = await call.final()
        assert refused.status == 500
        await ringing.was_cancelled()

    play(tmp_path, story)


def test_the_pbx_pracks_a_callees_reliable_ringing(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        assert "100rel" in (ringing.invite.headers.get("Supported") or "")
        ringing.ring(180, [*REQUIRE_100REL, ("RSeq", "41")])
        await asyncio.sleep(1)
        [pracked] = [
            parse_datagram(d.data)
            for d in lab.network.sent
            if d.dest == bob.address and d.first_line.startswith("PRACK")
        ]
        assert isinstance(pracked, Request)
        assert pracked.headers.get("RAck") == f"41 {ringing.invite.cseq.number} INVITE"
        assert (await call.provisional(180)).status == 180
        ringing.answer()
        assert (await call.final()).status == 200
        assert (await call.hang_up()).status == 200
        bye = await ringing.hung_up()
        assert bye.cseq.number > pracked.cseq.number

    play(tmp_path, story)
