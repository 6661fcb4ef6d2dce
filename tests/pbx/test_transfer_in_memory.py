"""Call transfer, in memory (tests/support/testbed.py): a party to a call (the
transferor) hands the other one (the transferee) over to a third (the target) with REFER
(RFC 3515): blind, to the Refer-To number, or attended, replacing the consultation call
the transferor made to the target (Replaces, RFC 3891). The PBX accepts the REFER (202),
carries the transfer out itself and reports its progress to the transferor in NOTIFYs
whose message/sipfrag bodies are status lines (RFC 3515 §2.4.5); on success it hangs up
on the transferor. The real-socket version, with audio: test_transfer.py."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from tests.support.testbed import Testbed, play
from tests.support.user_agents import Call, connected

PBX_HOST = "10.0.0.1"


async def _progress(transferor: Call) -> list[tuple[bytes, str]]:
    """The NOTIFYs of the REFER's implicit subscription up to the final one: the sipfrag
    status line and the Subscription-State of each."""
    reports = []
    while True:
        notify = await transferor.received("NOTIFY")
        assert notify.headers.get("Event") == "refer"
        assert notify.content_type == "message/sipfrag"
        state = notify.headers.get("Subscription-State") or ""
        reports.append((notify.body, state.split(";")[0]))
        if state.startswith("terminated"):
            return reports


def test_blind_transfer_connects_the_transferee_with_the_target(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call, at_bob = await connected(alice, bob)
        assert (await call.refer(f"<sip:1002@{PBX_HOST}>")).status == 202
        at_carol = await carol.rings()
        assert at_carol.caller == "1001"  # the target sees the transferee calling
        at_carol.answer()
        assert await _progress(call) == [
            (b"SIP/2.0 100 Trying\r\n", "active"),
            (b"SIP/2.0 200 OK\r\n", "terminated"),
        ]
        await call.hung_up()
        # Bob and Carol talk now; Bob's BYE reaches Carol.
        assert (await at_bob.hang_up()).status == 200
        await at_carol.hung_up()
        [record] = await lab.records()
        assert record.path == "extension:1001,transfer:1002"

    play(tmp_path, story)


def test_the_called_party_can_transfer_the_caller(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call, at_bob = await connected(alice, bob)
        assert (await at_bob.refer(f"<sip:1002@{PBX_HOST}>")).status == 202
        at_carol = await carol.rings()
        assert at_carol.caller == "1000"
        at_carol.answer()
        assert (await _progress(at_bob))[-1] == (b"SIP/2.0 200 OK\r\n", "terminated")
        await at_bob.hung_up()
        assert (await call.hang_up()).status == 200
        await at_carol.hung_up()

    play(tmp_path, story)


def test_a_blind_transfer_the_target_refuses_leaves_the_call_as_it_was(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call, at_bob = await connected(alice, bob)
        await call.refer(f"<sip:1002@{PBX_HOST}>")
        (await carol.rings()).refuse(486)
        status_line, state = (await _progress(call))[-1]
        assert status_line.endswith(b" Transfer Failed\r\n") and state == "terminated"
        # Alice and Bob are still connected: her BYE reaches him.
        assert (await call.hang_up()).status == 200
        await at_bob.hung_up()

    play(tmp_path, story)


def test_the_targets_refusal_is_reported_at_once_with_its_status(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        call, _ = await connected(alice, bob)
        await call.refer(f"<sip:1002@{PBX_HOST}>")
        (await carol.rings()).refuse(486)
        refused_at = lab.pbx.endpoint.loop.time()
        final = (await _progress(call))[-1]
        assert final == (b"SIP/2.0 486 Transfer Failed\r\n", "terminated")
        assert lab.pbx.endpoint.loop.time() - refused_at < 1

    play(tmp_path, story)


def test_a_blind_transfer_to_no_extension_is_reported_404(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, _ = await connected(alice, bob)
        assert (await call.refer(f"<sip:5555@{PBX_HOST}>")).status == 202
        assert (await _progress(call))[-1] == (b"SIP/2.0 404 Not Found\r\n", "terminated")

    play(tmp_path, story)


def test_attended_transfer_replaces_the_consultation_call(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob, carol = [await lab.registered(n) for n in ("1000", "1001", "1002")]
        first, at_bob = await connected(alice, bob)
        consultation, at_carol = await connected(alice, carol)
        refer_to = f"<sip:1002@{PBX_HOST}?Replaces={quote(consultation.replaces(), safe='')}>"
        assert (await first.refer(refer_to)).status == 202
        assert await _progress(first) == [
            (b"SIP/2.0 100 Trying\r\n", "active"),
            (b"SIP/2.0 200 OK\r\n", "terminated"),
        ]
        # Alice is taken out of both calls; Bob and Carol talk, neither rung again.
        await first.hung_up()
        await consultation.hung_up()
        assert (await at_bob.hang_up()).status == 200
        await at_carol.hung_up()
        paths = sorted(record.path for record in await lab.records())
        assert paths == ["extension:1001,transfer:1002", "extension:1002,transfer"]

    play(tmp_path, story)


def test_an_attended_transfer_naming_no_call_is_reported_481(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call, at_bob = await connected(alice, bob)
        gone = quote("no-such-call;to-tag=a;from-tag=b", safe="")
        await call.refer(f"<sip:1002@{PBX_HOST}?Replaces={gone}>")
        assert (await _progress(call))[-1] == (
            b"SIP/2.0 481 Call Does Not Exist\r\n", "terminated",
        )  # fmt: skip
        assert (await call.hang_up()).status == 200
        await at_bob.hung_up()

    play(tmp_path, story)
