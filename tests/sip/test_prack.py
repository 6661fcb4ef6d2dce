"""Reliable provisional responses (RFC 3262) without I/O, on a fake clock: the answering
side sends them with RSeq, again until the PRACK, one at a time, holds a 2xx behind an
unacknowledged one with SDP and gives up after 64*T1 (§3); the calling side PRACKs each
one once, in order, in its early dialog, which the 2xx confirms (§4)."""

from __future__ import annotations

from ipbx.sip.invite import OutgoingInvite, Provisional, Respond, Send
from ipbx.sip.message import Request, Response
from ipbx.sip.prack import NoPrack, ReliableProvisionals, parse_rack, wants_reliable
from ipbx.sip.transaction import ServerTransaction, Timers, make_response
from tests.support.invites import OFFER, UDP, invite, response, server_transaction, stamp


def caller_requiring_100rel() -> ServerTransaction:
    request = invite()
    request.headers.add("Require", "100rel")
    assert wants_reliable(request)
    return server_transaction(request)


def ringing(tx: ServerTransaction, status: int = 180, body: bytes = b"") -> Response:
    out = make_response(tx.request, status, None, tx.to_tag)
    out.body = body
    return out


def prack_for(provisional: Response, tx: ServerTransaction) -> Request:
    prack = invite(b"", 2, to_tag=tx.to_tag)
    prack.method = "PRACK"
    prack.headers.set("CSeq", "2 PRACK")
    prack.headers.set("RAck", f"{provisional.headers.get('RSeq')} 1 INVITE")
    return prack


def test_a_reliable_provisional_is_sent_again_until_its_prack() -> None:
    tx = caller_requiring_100rel()
    reliable = ReliableProvisionals(tx, Timers(t1=0.5))
    [sent] = reliable.send(ringing(tx), now=0.0)
    assert isinstance(sent, Respond)
    first = sent.response
    assert first.headers.get("Require") == "100rel"
    rseq = int(first.headers.get("RSeq") or "0")
    assert 1 <= rseq < 2**31
    assert reliable.next_deadline() == 0.5
    assert reliable.expire(0.5) == [Respond(tx, first)]
    assert reliable.next_deadline() == 1.5  # T1, then doubling (no T2 cap)
    assert reliable.expire(1.5) == [Respond(tx, first)]
    assert reliable.next_deadline() == 3.5
    acknowledged, more = reliable.receive_prack(prack_for(first, tx), now=2.0)
    assert (acknowledged, more) == (True, [])
    assert reliable.next_deadline() is None
    # The same PRACK again acknowledges nothing (its answer is 481).
    assert reliable.receive_prack(prack_for(first, tx), now=2.1) == (False, [])


def test_a_prack_overtaken_by_a_2xx_without_sdp_is_still_acknowledged() -> None:
    """The 2xx may go before the PRACK of a provisional without SDP (§3); the PRACK,
    still on its way, matches that provisional and gets 200, not 481."""
    tx = caller_requiring_100rel()
    reliable = ReliableProvisionals(tx)
    [sent] = reliable.send(ringing(tx), now=0.0)
    assert isinstance(sent, Respond)
    assert reliable.final_may_go()
    reliable.stop()  # the 2xx goes
    assert reliable.next_deadline() is None
    assert reliable.receive_prack(prack_for(sent.response, tx), now=0.1) == (True, [])
    stray = prack_for(sent.response, tx)
    stray.headers.set("RAck", f"{int(sent.response.headers.get('RSeq') or 0) + 1} 1 INVITE")
    assert reliable.receive_prack(stray, now=0.2) == (False, [])


def test_one_at_a_time_and_a_2xx_waits_behind_one_with_sdp() -> None:
    tx = caller_requiring_100rel()
    reliable = ReliableProvisionals(tx)
    [first] = reliable.send(ringing(tx, 183, OFFER), now=0.0)
    assert reliable.send(ringing(tx, 180), now=0.1) == []  # waits its turn
    assert not reliable.final_may_go()
    acknowledged, [second] = reliable.receive_prack(prack_for(first.response, tx), now=0.2)
    assert acknowledged
    assert second.response.status == 180
    assert (
        int(second.response.headers.get("RSeq") or 0)
        == int(first.response.headers.get("RSeq") or 0) + 1
    )
    assert reliable.final_may_go()  # the 180 has no SDP


def test_no_prack_in_64_t1_refuses_the_invite() -> None:
    tx = caller_requiring_100rel()
    reliable = ReliableProvisionals(tx, Timers(t1=0.5))
    reliable.send(ringing(tx), now=0.0)
    items: list[object] = []
    now = 0.0
    while not any(isinstance(item, NoPrack) for item in items):
        deadline = reliable.next_deadline()
        assert deadline is not None
        now = deadline
        items = list(reliable.expire(now))
    assert now == 32.0
    assert reliable.next_deadline() is None


def reliable_180(to: Request, rseq: int, tag: str = "t2") -> Response:
    out = response(to, 180, tag=tag)
    out.headers.add("Contact", "<sip:1001@192.0.2.20:5060>")
    out.headers.add("Require", "100rel")
    out.headers.add("RSeq", str(rseq))
    return out


def test_each_reliable_provisional_is_pracked_once_in_order_in_its_early_dialog() -> None:
    original = invite()
    call = OutgoingInvite(original, UDP)
    ring = reliable_180(original, 7)
    prack, reported = call.receive(ring)
    assert isinstance(prack, Send) and reported == Provisional(ring)
    assert prack.request.method == "PRACK"
    assert prack.request.headers.get("RAck") == "7 1 INVITE"
    assert parse_rack(prack.request).rseq == 7
    assert prack.request.cseq.number == 2
    assert prack.request.to.tag == "t2"
    assert str(prack.request.uri) == "sip:1001@192.0.2.20:5060"
    stamp(prack.request)
    assert call.receive(reliable_180(original, 7)) == []  # sent again: dropped
    assert call.receive(reliable_180(original, 9)) == []  # out of order: dropped
    [next_prack, _] = call.receive(reliable_180(original, 8))
    assert isinstance(next_prack, Send)
    assert next_prack.request.cseq.number == 3
    # The 2xx confirms the early dialog: the BYE counts on from the PRACKs' CSeq.
    call.receive(response(original, 200))
    assert call.dialog is not None
    assert call.dialog.create_request("BYE").cseq.number == 4


def test_an_ordinary_provisional_gets_no_prack() -> None:
    original = invite()
    call = OutgoingInvite(original, UDP)
    ring = response(original, 180)
    assert call.receive(ring) == [Provisional(ring)]
