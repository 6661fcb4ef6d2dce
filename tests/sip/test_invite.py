"""The INVITE usage of RFC 3261 §13 (2xx and ACK, CANCEL timing, late offer, the digest
retry), driven with a fake clock and no sockets; at the end the two sides talk to each
other through two transaction layers over a lossy in-memory link."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from ipbx.sip.dialog import Dialog
from ipbx.sip.invite import (
    Acked,
    Answered,
    AnswerMissing,
    IncomingInvite,
    NoAck,
    OutgoingInvite,
    Provisional,
    Rejected,
    Resend,
    Respond,
    Send,
)
from ipbx.sip.message import Request, Response, parse_datagram
from ipbx.sip.transaction import (
    Address,
    RequestReceived,
    ResponseReceived,
    State,
    Timers,
    TransactionLayer,
    make_response,
)
from tests.support.invites import (
    ANSWER,
    OFFER,
    TCP,
    UDP,
    ack_for,
    credentials,
    invite,
    response,
    server_transaction,
    stale,
    stamp,
)


def sent_request(items: Sequence[object]) -> Request:
    (item,) = items
    assert isinstance(item, Send)
    return item.request


# --- the calling side: CANCEL (RFC 3261 §9.1) -----------------------------------------------


def test_cancel_before_any_provisional_waits_for_the_first_one() -> None:
    call = OutgoingInvite(invite(), UDP)
    assert call.cancel() == []
    assert call.cancel_wanted and not call.cancelled
    cancel = sent_request(call.receive(response(call.invite, 100)))
    assert cancel.method == "CANCEL"
    assert cancel.via.branch == call.invite.via.branch  # it must match the INVITE
    assert cancel.cseq.number == 1
    assert call.cancelled


def test_cancel_after_a_provisional_goes_at_once_and_only_once() -> None:
    call = OutgoingInvite(invite(), UDP)
    (ringing,) = call.receive(response(call.invite, 180))
    assert isinstance(ringing, Provisional) and ringing.response.status == 180
    assert sent_request(call.cancel()).method == "CANCEL"
    assert call.cancel() == []
    # Ringing goes on until the 487; the owner hears no more of it, and no second CANCEL.
    assert call.receive(response(call.invite, 183)) == []
    (ended,) = call.receive(response(call.invite, 487))
    assert isinstance(ended, Rejected) and ended.response.status == 487


def test_nothing_to_cancel_once_a_final_response_came() -> None:
    call = OutgoingInvite(invite(), UDP)
    call.receive(response(call.invite, 180))
    call.receive(response(call.invite, 486))
    assert call.cancel() == []


def test_a_2xx_crossing_the_wanted_cancel_is_still_acked() -> None:
    """The callee answered before any 1xx: no CANCEL, an ACK, and the owner's BYE ends it."""
    call = OutgoingInvite(invite(), UDP)
    assert call.cancel() == []
    ack, answered = call.receive(response(call.invite, 200, ANSWER))
    assert isinstance(ack, Send) and ack.request.method == "ACK"
    assert isinstance(answered, Answered)
    assert call.cancel() == []
    assert not call.cancelled


def test_a_provisional_after_the_final_response_changes_nothing() -> None:
    call = OutgoingInvite(invite(), UDP)
    call.cancel()
    call.receive(response(call.invite, 486))
    assert call.receive(response(call.invite, 180)) == []


# --- the calling side: the ACK of a 2xx (RFC 3261 §13.2.2.4) ----------------------------------


def test_the_2xx_is_acked_and_the_dialog_made_from_it() -> None:
    call = OutgoingInvite(invite(), UDP)
    ok = response(call.invite, 200, ANSWER)
    ack_item, answered = call.receive(ok)
    assert answered == Answered(ok)
    assert isinstance(ack_item, Send) and ack_item.dest == UDP
    ack = ack_item.request
    assert (ack.method, ack.cseq.number, ack.cseq.method) == ("ACK", 1, "ACK")
    assert ack.to.tag == "t2" and ack.body == b""
    assert ack.headers.get("Route") == "<sip:proxy.example;lr>"
    assert call.dialog is not None and call.dialog.remote_tag == "t2"
    assert str(call.dialog.remote_target) == "sip:1001@192.0.2.20:5060"


def test_every_retransmitted_2xx_gets_the_same_ack_as_it_went_out() -> None:
    call = OutgoingInvite(invite(), UDP)
    ok = response(call.invite, 200, ANSWER)
    ack = stamp(sent_request(call.receive(ok)[:1]))
    first = call.receive(ok)
    assert first == [Resend(ack.serialize(), UDP)]
    assert call.receive(ok) == first


def test_late_offer_the_ack_waits_for_our_answer_and_carries_it() -> None:
    """RFC 3264 §2: an INVITE without SDP; the 2xx brings the offer, the ACK the answer."""
    call = OutgoingInvite(invite(body=b""), UDP)
    assert call.late_offer
    ok = response(call.invite, 200, OFFER)
    assert call.receive(ok) == [Answered(ok)]
    assert call.ack_pending
    assert call.receive(ok) == []  # no ACK to repeat before we have one
    ack = stamp(sent_request(call.ack(ANSWER)))
    assert ack.body == ANSWER and ack.content_type == "application/sdp"
    assert not call.ack_pending
    assert call.ack(ANSWER) == []
    assert call.receive(ok) == [Resend(ack.serialize(), UDP)]


def test_an_ack_needs_a_2xx() -> None:
    call = OutgoingInvite(invite(body=b""), UDP)
    assert call.ack(ANSWER) == []
    call.receive(response(call.invite, 603))
    assert call.ack(ANSWER) == []


def test_a_reinvite_is_acked_in_its_dialog_and_refreshes_the_target() -> None:
    first = OutgoingInvite(invite(), UDP)
    first.receive(response(first.invite, 200, ANSWER))
    dialog = first.dialog
    assert dialog is not None
    reinvite = stamp(dialog.create_request("INVITE", OFFER, "application/sdp"))
    hold = OutgoingInvite(reinvite, UDP, dialog=dialog)
    ok = response(reinvite, 200, ANSWER)
    ok.headers.set("Contact", "<sip:1001@192.0.2.99:5070>")
    ack = sent_request(hold.receive(ok)[:1])
    assert ack.cseq.number == 2 and ack.to.tag == "t2"
    assert hold.dialog is dialog
    assert str(dialog.remote_target) == "sip:1001@192.0.2.99:5070"


# --- the calling side: the digest retry (RFC 3261 §22.2, RFC 7616 §3.3) ------------------------


@pytest.mark.parametrize(
    ("status", "header"), [(401, "Authorization"), (407, "Proxy-Authorization")]
)
def test_a_challenge_is_answered_in_a_new_transaction_with_the_next_cseq(
    status: int, header: str
) -> None:
    original = invite()
    call = OutgoingInvite(original, UDP, credentials)
    retry = sent_request(call.receive(response(original, status)))
    assert call.invite is retry
    assert retry.cseq.number == 2 and retry.cseq.method == "INVITE"
    assert "Via" not in retry.headers  # the shell gives it a new branch
    assert retry.call_id == original.call_id and retry.from_.tag == original.from_.tag
    assert retry.body == original.body
    value = retry.headers.get(header)
    assert value is not None and 'username="1000"' in value and 'uri="sip:1001@192.0.2.20"' in value


def test_a_second_challenge_is_the_answer() -> None:
    call = OutgoingInvite(invite(), UDP, credentials)
    stamp(sent_request(call.receive(response(call.invite, 401))))
    refused = response(call.invite, 401)
    assert call.receive(refused) == [Rejected(refused)]


def test_a_stale_nonce_is_answered_once_more() -> None:
    call = OutgoingInvite(invite(), UDP, credentials)
    stamp(sent_request(call.receive(response(call.invite, 407))))
    retry = stamp(sent_request(call.receive(stale(response(call.invite, 407)))))
    assert retry.cseq.number == 3
    assert 'nonce="n2"' in (retry.headers.get("Proxy-Authorization") or "")
    again = stale(response(call.invite, 407))
    assert call.receive(again) == [Rejected(again)]


def test_a_422_is_answered_with_the_session_interval_it_asks_for() -> None:
    """RFC 4028 §7.1: the INVITE again, in a new transaction, asking for the Min-SE of
    the 422; a 422 that asks for no more than was asked is the answer."""
    original = invite()
    original.headers.add("Session-Expires", "1800;refresher=uas")
    call = OutgoingInvite(original, UDP)
    too_small = response(original, 422)
    too_small.headers.add("Min-SE", "3600")
    retry = stamp(sent_request(call.receive(too_small)))
    assert retry.cseq.number == 2 and retry.call_id == original.call_id
    assert retry.headers.get("Session-Expires") == "3600;refresher=uas"
    assert retry.headers.get("Min-SE") == "3600"
    again = response(retry, 422)
    again.headers.add("Min-SE", "3600")
    assert call.receive(again) == [Rejected(again)]


def test_a_challenge_without_credentials_is_the_answer() -> None:
    no_source = OutgoingInvite(invite(), UDP)
    challenge = response(no_source.invite, 401)
    assert no_source.receive(challenge) == [Rejected(challenge)]
    none_for_it = OutgoingInvite(invite(), UDP, lambda response, method, uri: None)
    challenge = response(none_for_it.invite, 407)
    assert none_for_it.receive(challenge) == [Rejected(challenge)]


def test_no_retry_once_the_owner_gave_up() -> None:
    call = OutgoingInvite(invite(), UDP, credentials)
    call.cancel()
    challenge = response(call.invite, 401)
    assert call.receive(challenge) == [Rejected(challenge)]


def test_after_the_retry_a_cancel_waits_for_the_new_transactions_provisional() -> None:
    call = OutgoingInvite(invite(), UDP, credentials)
    first = call.invite
    call.receive(response(first, 100))
    retry = stamp(sent_request(call.receive(response(first, 407))))
    assert call.cancel() == []
    assert call.receive(response(first, 180)) == []  # the old transaction's, late
    cancel = sent_request(call.receive(response(retry, 180)))
    assert cancel.via.branch == retry.via.branch and cancel.cseq.number == 2


def test_the_dialog_of_a_retried_invite_continues_from_its_cseq() -> None:
    call = OutgoingInvite(invite(), UDP, credentials)
    retry = stamp(sent_request(call.receive(response(call.invite, 401))))
    ack = sent_request(call.receive(response(retry, 200, ANSWER))[:1])
    assert ack.cseq.number == 2
    assert call.dialog is not None and call.dialog.local_seq == 2
    assert call.dialog.create_request("BYE").cseq.number == 3


def test_a_retried_reinvite_moves_the_dialogs_cseq_on() -> None:
    dialog = Dialog.as_uac(invite(), response(invite(), 200))
    reinvite = stamp(dialog.create_request("INVITE", OFFER, "application/sdp"))
    call = OutgoingInvite(reinvite, UDP, credentials, dialog=dialog)
    retry = sent_request(call.receive(response(reinvite, 401)))
    assert retry.cseq.number == dialog.local_seq == 3


# --- the answering side: our 2xx until the ACK (RFC 3261 §13.3.1.4) -----------------------------


def answering(
    body: bytes = OFFER, peer: Address = UDP, timers: Timers | None = None
) -> tuple[IncomingInvite, Response]:
    tx = server_transaction(invite(body), peer)
    usage = IncomingInvite(tx, timers)
    ok = make_response(tx.request, 200, to_tag=tx.to_tag)
    ok.body = ANSWER if body else OFFER
    ok.headers.add("Content-Type", "application/sdp")
    assert usage.accept(ok, now=10.0) == [Respond(tx, ok)]
    return usage, ok


def run_clock(usage: IncomingInvite, until: float) -> list[tuple[float, object]]:
    """Fire the usage's timer at each deadline up to `until`, as the owner's timer would."""
    fired: list[tuple[float, object]] = []
    while (deadline := usage.next_deadline()) is not None and deadline <= until:
        fired += [(deadline, item) for item in usage.expire(deadline)]
    return fired


def test_the_2xx_is_resent_t1_doubling_to_t2_and_given_up_after_64_t1() -> None:
    usage, _ = answering()
    fired = run_clock(usage, 100.0)
    resends = [at - 10.0 for at, item in fired if isinstance(item, Resend)]
    assert resends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1] == (42.0, NoAck())  # 64*T1 after the 2xx
    assert len(fired) == len(resends) + 1
    assert usage.next_deadline() is None
    assert usage.receive_ack(ack_for(usage)) == []  # too late to matter


def test_the_resent_2xx_is_the_one_that_went_out() -> None:
    usage, ok = answering()
    ok.headers.add("Server", "ipbx")  # stamped by the shell as it sent it
    ((_, item),) = run_clock(usage, 10.5)
    assert item == Resend(ok.serialize(), UDP)


def test_the_ack_stops_the_2xx() -> None:
    usage, _ = answering()
    run_clock(usage, 12.0)
    ack = ack_for(usage)
    assert usage.receive_ack(ack) == [Acked(ack)]
    assert usage.acked and usage.next_deadline() is None
    assert usage.expire(100.0) == []
    assert usage.receive_ack(ack) == []  # a retransmitted ACK


def test_an_ack_of_another_invite_does_not_stop_it() -> None:
    """The ACK of the initial INVITE, sent again, while a re-INVITE's 2xx waits."""
    tx = server_transaction(invite(cseq=2))
    usage = IncomingInvite(tx)
    usage.accept(make_response(tx.request, 200, to_tag=tx.to_tag), now=0.0)
    assert usage.receive_ack(ack_for(usage, cseq=1)) == []
    assert usage.next_deadline() == 0.5


def test_an_ack_before_our_2xx_is_not_ours() -> None:
    usage = IncomingInvite(server_transaction(invite()))
    assert usage.receive_ack(ack_for(usage)) == []
    assert usage.next_deadline() is None


def test_over_a_reliable_transport_the_2xx_is_sent_once() -> None:
    usage, _ = answering(peer=TCP)
    assert usage.next_deadline() is None
    assert usage.expire(1000.0) == []


def test_timers_are_the_owners() -> None:
    usage, _ = answering(timers=Timers(t1=0.1, t2=0.3))
    times = [round(at - 10.0, 3) for at, _ in run_clock(usage, 100.0)]
    assert times[:5] == [0.1, 0.3, 0.6, 0.9, 1.2]
    assert times[-1] == 6.4


def test_expire_before_the_deadline_does_nothing() -> None:
    usage, _ = answering()
    assert usage.expire(10.4) == []
    assert usage.next_deadline() == 10.5


def test_an_owner_late_to_its_timer_sends_one_2xx_and_goes_on_from_now() -> None:
    usage, _ = answering()
    assert len(usage.expire(13.0)) == 1
    assert usage.next_deadline() == 14.0


# --- the answering side: late offer (RFC 3264 §2) -----------------------------------------------


def test_late_offer_the_ack_brings_the_answer() -> None:
    usage, _ = answering(body=b"")
    assert usage.late_offer
    ack = ack_for(usage, ANSWER)
    assert usage.receive_ack(ack) == [Acked(ack)]


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_late_offer_an_ack_without_the_answer_ends_the_session(content_type: str | None) -> None:
    usage, _ = answering(body=b"")
    ack = ack_for(usage, ANSWER if content_type else b"")
    if content_type:
        ack.headers.set("Content-Type", content_type)
    assert usage.receive_ack(ack) == [AnswerMissing(ack)]
    assert usage.next_deadline() is None


def test_with_an_offer_in_the_invite_the_ack_needs_no_body() -> None:
    usage, _ = answering()
    assert not usage.late_offer
    assert isinstance(usage.receive_ack(ack_for(usage))[0], Acked)


# --- both sides through transaction layers over a lossy link -----------------------------------


class Link:
    """Two transaction layers joined by a UDP link that loses the messages it is told to,
    each with the part of the shell that stamps Via; the clock is the test's."""

    def __init__(self) -> None:
        self.caller = TransactionLayer()
        self.callee = TransactionLayer()
        self.caller_address = Address("UDP", "192.0.2.10", 5060)
        self.callee_address = UDP
        self.drop: set[bytes] = set()  # start lines to lose, once each
        self.now = 0.0
        self.resent: dict[int, list[bytes]] = {id(self.caller): [], id(self.callee): []}

    def send(self, layer: TransactionLayer, item: Send | Respond | Resend) -> None:
        dest = self.callee_address if layer is self.caller else self.caller_address
        if isinstance(item, Resend):
            self.resent[id(layer)].append(item.data)
        elif isinstance(item, Respond):
            layer.respond(item.transaction, item.response, self.now)
        elif item.request.method == "ACK":
            layer.send_ack(item.request, dest)
        else:
            layer.send_request(item.request, dest, self.now)

    def deliver(self) -> list[ResponseReceived | RequestReceived]:
        events: list[ResponseReceived | RequestReceived] = []
        moved = True
        while moved:
            moved = False
            for layer, peer, source in (
                (self.caller, self.callee, self.caller_address),
                (self.callee, self.caller, self.callee_address),
            ):
                wire = [data for data, _ in layer.outgoing()] + self.resent[id(layer)]
                self.resent[id(layer)] = []
                for data in wire:
                    moved = True
                    line = data.split(b"\r\n", 1)[0]
                    if line in self.drop:
                        self.drop.discard(line)
                        continue
                    for event in peer.receive(parse_datagram(data), source, self.now):
                        assert isinstance(event, ResponseReceived | RequestReceived)
                        events.append(event)
        return events


def test_a_lost_ack_is_sent_again_for_the_retransmitted_2xx() -> None:
    """§13.2.2.4 and §13.3.1.4 together: the callee's 2xx comes again until our ACK
    gets through, and every copy of it is answered by the same ACK."""
    link = Link()
    call = OutgoingInvite(stamp(invite()), link.callee_address)
    link.caller.send_request(call.invite, link.callee_address, link.now)
    (arrived,) = [e for e in link.deliver() if isinstance(e, RequestReceived)]
    assert isinstance(arrived, RequestReceived) and arrived.transaction is not None
    answer = IncomingInvite(arrived.transaction)
    ok = make_response(arrived.request, 200, to_tag=arrived.transaction.to_tag)
    ok.headers.add("Contact", "<sip:1001@192.0.2.20:5060>")
    link.drop.add(b"ACK sip:1001@192.0.2.20:5060 SIP/2.0")
    for item in answer.accept(ok, link.now):
        link.send(link.callee, item)
    acks: list[bytes] = []
    outcome: list[object] = []
    for step in itertools.count():
        assert step < 10, "the ACK never got through"
        events = link.deliver()
        if not events:  # nothing in flight: time passes until the callee's timer
            link.now = answer.next_deadline() or link.now
            for resent in answer.expire(link.now):
                assert isinstance(resent, Resend)
                link.send(link.callee, resent)
        for event in events:
            if isinstance(event, ResponseReceived):
                for out in call.receive(event.response):
                    if isinstance(out, Send | Resend):
                        if isinstance(out, Send):
                            stamp(out.request)
                        acks.append(out.data if isinstance(out, Resend) else b"")
                        link.send(link.caller, out)
            elif event.transaction is None:
                outcome += answer.receive_ack(event.request)
        if outcome:
            break
    assert [type(item) for item in outcome] == [Acked]
    assert link.now == 0.5  # the first resent 2xx brought the ACK again
    assert len(acks) == 2  # the lost one, and one again for the resent 2xx
    assert call.dialog is not None and call.dialog.remote_tag == arrived.transaction.to_tag
    assert arrived.transaction.state is State.ACCEPTED
