"""RFC 3261 §17 transaction state machines, driven with a fake clock and no sockets."""

import gc
import itertools
import weakref

from ipbx.sip.message import Request, Response, parse_datagram
from ipbx.sip.transaction import (
    Address,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    ServerTransactionFailed,
    State,
    TransactionLayer,
    make_cancel,
    make_response,
)
from tests.support.transactions import UDP, fire_all, request

TCP = Address("TCP", "192.0.2.10", 40000)


def sent(layer: TransactionLayer) -> list[Request | Response]:
    return [parse_datagram(data) for data, _ in layer.outgoing()]


def test_invite_client_retransmits_on_timer_a_and_times_out_with_408_on_b() -> None:
    layer = TransactionLayer()
    tx = layer.send_request(request(), UDP, now=0.0)
    assert len(layer.outgoing()) == 1
    times = []
    events = []
    while (deadline := layer.next_deadline()) is not None:
        events += layer.expire(deadline)
        if layer.outgoing():
            times.append(deadline)
    # Timer A doubles from T1 without cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (§17.1.1.2)
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert len(events) == 1
    assert isinstance(events[0], ResponseReceived)
    assert events[0].response.status == 408
    assert tx.state is State.TERMINATED


def test_a_ringing_invite_has_no_timer_b_and_is_cancelled_after_timer_c() -> None:
    """§17.1.1.2: Timer B runs in Calling only, so a phone may ring longer than 64*T1;
    a phone that never answers is cancelled after Timer C (120 s), and the INVITE's
    transaction ends 64*T1 after that CANCEL if no final response comes (§9.1)."""
    layer = TransactionLayer()
    invite = request()
    tx = layer.send_request(invite, UDP, now=0.0)
    layer.outgoing()
    layer.receive(make_response(invite, 180, to_tag="t1"), UDP, now=0.1)
    assert layer.expire(100.0) == [] and layer.outgoing() == []
    assert tx.state is State.PROCEEDING
    assert layer.expire(120.1) == []
    (cancel,) = sent(layer)
    assert isinstance(cancel, Request)
    assert (cancel.method, cancel.via.branch) == ("CANCEL", "z9hG4bKabc")
    events: list[object] = []
    while (deadline := layer.next_deadline()) is not None:
        events += layer.expire(deadline)
    assert [e.response.status for e in events if isinstance(e, ResponseReceived)] == [408, 408]
    assert tx.state is State.TERMINATED


def test_a_cancelled_invite_without_a_final_response_ends_after_64_t1() -> None:
    layer = TransactionLayer()
    invite = request()
    tx = layer.send_request(invite, UDP, now=0.0)
    layer.receive(make_response(invite, 180, to_tag="t1"), UDP, now=0.1)
    layer.send_request(make_cancel(invite), UDP, now=50.0)
    layer.receive(make_response(make_cancel(invite), 200, to_tag="t1"), UDP, now=50.1)
    assert layer.expire(81.9) == []
    (ended,) = layer.expire(82.0)
    assert isinstance(ended, ResponseReceived) and ended.response.status == 408
    assert tx.state is State.TERMINATED


def test_non_invite_client_caps_timer_e_at_t2() -> None:
    layer = TransactionLayer()
    layer.send_request(request("OPTIONS"), UDP, now=0.0)
    layer.outgoing()
    times = fire_all(layer, 32.0)
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(b - a == 4.0 for a, b in itertools.pairwise(times[4:]))


def test_no_retransmission_over_a_reliable_transport() -> None:
    layer = TransactionLayer()
    layer.send_request(request("OPTIONS"), TCP, now=0.0)
    layer.outgoing()
    assert fire_all(layer, 40.0) == []


def test_invite_client_acks_a_failure_and_absorbs_its_retransmission() -> None:
    layer = TransactionLayer()
    invite = request()
    tx = layer.send_request(invite, UDP, now=0.0)
    layer.outgoing()
    busy = make_response(invite, 486, to_tag="t9")
    events = layer.receive(parse_datagram(busy.serialize()), UDP, now=0.2)
    assert [type(e) for e in events] == [ResponseReceived]
    (ack,) = sent(layer)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.via.branch == "z9hG4bKabc"
    assert ack.to.tag == "t9"
    assert ack.cseq.number == 1
    assert layer.receive(parse_datagram(busy.serialize()), UDP, now=0.3) == []
    assert len(layer.outgoing()) == 1
    assert tx.state is State.COMPLETED
    layer.expire(33.0)
    assert tx.state is State.TERMINATED


def test_invite_client_passes_2xx_retransmissions_to_the_tu() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, UDP, now=0.0)
    ok = make_response(invite, 200, to_tag="t1")
    assert len(layer.receive(ok, UDP, now=0.1)) == 1
    assert len(layer.receive(ok, UDP, now=0.6)) == 1
    assert layer.outgoing()[1:] == []  # the TU, not the transaction, ACKs a 2xx


def test_invite_server_sends_100_then_retransmits_final_on_timer_g() -> None:
    layer = TransactionLayer()
    (event,) = layer.receive(request(), UDP, now=0.0)
    assert isinstance(event, RequestReceived)
    tx = event.transaction
    assert tx is not None
    assert [m.status for m in sent(layer)] == [100]  # type: ignore[union-attr]
    layer.reply(tx, 486, now=0.1)
    assert len(layer.outgoing()) == 1
    times = fire_all(layer, 10.0)
    assert times == [0.6, 1.6, 3.6, 7.6]
    layer.receive(request("ACK", to_tag=tx.to_tag), UDP, now=10.0)
    assert tx.state is State.CONFIRMED
    assert fire_all(layer, 20.0) == []
    assert tx.state is State.TERMINATED


def test_invite_server_timer_h_reports_a_missing_ack() -> None:
    layer = TransactionLayer()
    (event,) = layer.receive(request(), UDP, now=0.0)
    assert event.transaction is not None  # type: ignore[union-attr]
    layer.reply(event.transaction, 480, now=0.0)  # type: ignore[union-attr]
    events = []
    while (deadline := layer.next_deadline()) is not None:
        events += layer.expire(deadline)
    assert [type(e) for e in events] == [ServerTransactionFailed]


def test_retransmitted_request_gets_the_last_response_again() -> None:
    layer = TransactionLayer()
    (event,) = layer.receive(request("REGISTER"), UDP, now=0.0)
    assert isinstance(event, RequestReceived) and event.transaction
    layer.reply(event.transaction, 200, now=0.0)
    first = layer.outgoing()
    assert layer.receive(request("REGISTER"), UDP, now=0.5) == []
    assert layer.outgoing() == first


def test_invite_retransmission_after_2xx_is_absorbed() -> None:
    layer = TransactionLayer()
    (event,) = layer.receive(request(), UDP, now=0.0)
    assert isinstance(event, RequestReceived) and event.transaction
    layer.reply(event.transaction, 200, now=0.1)
    layer.outgoing()
    assert layer.receive(request(), UDP, now=0.5) == []
    assert layer.outgoing() == []
    assert event.transaction.state is State.ACCEPTED


def test_ack_for_2xx_goes_to_the_tu_without_a_transaction() -> None:
    layer = TransactionLayer()
    (event,) = layer.receive(request("ACK", branch="z9hG4bKnew", to_tag="t"), UDP, now=0.0)
    assert isinstance(event, RequestReceived)
    assert event.transaction is None


def test_cancel_matches_the_invite_and_is_answered_200() -> None:
    layer = TransactionLayer()
    invite = request()
    (event,) = layer.receive(invite, UDP, now=0.0)
    layer.outgoing()
    events = layer.receive(make_cancel(request()), UDP, now=1.0)
    assert [type(e) for e in events] == [CancelReceived]
    assert events[0].transaction is event.transaction  # type: ignore[union-attr]
    (ok,) = sent(layer)
    assert isinstance(ok, Response)
    assert (ok.status, ok.cseq.method) == (200, "CANCEL")


def test_cancel_without_invite_is_481() -> None:
    layer = TransactionLayer()
    assert layer.receive(make_cancel(request()), UDP, now=0.0) == []
    (answer,) = sent(layer)
    assert answer.status == 481  # type: ignore[union-attr]


def test_merged_request_is_482() -> None:
    layer = TransactionLayer()
    layer.receive(request(branch="z9hG4bKone"), UDP, now=0.0)
    layer.outgoing()
    assert layer.receive(request(branch="z9hG4bKtwo"), UDP, now=0.1) == []
    answers = [m.status for m in sent(layer)]  # type: ignore[union-attr]
    assert 482 in answers


def test_via_gets_received_and_rport_for_nat() -> None:
    layer = TransactionLayer()
    nat = Address("UDP", "203.0.113.7", 61000)
    (event,) = layer.receive(request("OPTIONS"), nat, now=0.0)
    assert isinstance(event, RequestReceived)
    via = event.request.via
    assert via.params["received"] == "203.0.113.7"
    assert via.params["rport"] == "61000"
    assert event.transaction is not None
    layer.reply(event.transaction, 200, now=0.0)
    ((_, dest),) = layer.outgoing()
    assert dest == nat


def test_rfc2543_request_without_magic_cookie_still_matches() -> None:
    layer = TransactionLayer()
    old = request("OPTIONS", branch="oldstyle")
    (event,) = layer.receive(old, UDP, now=0.0)
    assert isinstance(event, RequestReceived) and event.transaction
    layer.reply(event.transaction, 200, now=0.0)
    layer.outgoing()
    assert layer.receive(request("OPTIONS", branch="oldstyle"), UDP, now=0.1) == []
    assert len(layer.outgoing()) == 1


def test_a_lingering_transaction_keeps_only_what_a_response_copies() -> None:
    """Once final, a transaction lingers (64*T1) only to absorb retransmissions: of its
    request it keeps the request line and the fields a response copies (§8.2.6.2), of
    its final response the status; a retransmitted request still gets the whole
    response again."""
    layer = TransactionLayer()
    invite = request()
    invite.headers.add("Contact", "<sip:1000@192.0.2.10:5062>")
    invite.body = b"v=0\r\n"
    (event,) = layer.receive(invite, UDP, now=0.0)
    assert isinstance(event, RequestReceived) and event.transaction
    tx = event.transaction
    layer.outgoing()
    busy = make_response(invite, 486, to_tag=tx.to_tag)
    layer.respond(tx, busy, now=0.1)
    first = layer.outgoing()
    assert [name for name, _ in tx.request.headers] == ["Via", "From", "To", "Call-ID", "CSeq"]
    assert (tx.request.method, tx.request.uri, tx.request.body) == ("INVITE", invite.uri, b"")
    assert tx.status == 486
    assert invite.headers.get("Contact") and invite.body  # the TU's request is untouched
    assert layer.receive(request(), UDP, now=0.2) == []
    assert layer.outgoing() == first


def test_an_accepted_invite_client_transaction_keeps_only_what_a_response_copies() -> None:
    layer = TransactionLayer()
    invite = request()
    tx = layer.send_request(invite, UDP, now=0.0)
    layer.receive(make_response(invite, 200, to_tag="t1"), UDP, now=0.1)
    assert tx.state is State.ACCEPTED
    assert [name for name, _ in tx.request.headers] == ["Via", "From", "To", "Call-ID", "CSeq"]
    assert invite.headers.get("Max-Forwards") == "70"


def test_a_transaction_over_is_freed_though_an_earlier_timer_is_still_set() -> None:
    """A BYE's transaction ends on Timer K (T4) while its Timer F (64*T1) is still set:
    it is freed then, with the handler it holds (and the call behind that), not when
    Timer F would have fired, and without waiting for the cyclic collector."""
    layer = TransactionLayer()
    bye = request("BYE", to_tag="t1")
    answers: list[int] = []
    tx = layer.send_request(bye, UDP, now=0.0, on_response=lambda r, _: answers.append(r.status))
    freed = weakref.ref(tx)
    del tx
    gc.disable()
    try:
        assert len(layer.receive(make_response(bye, 200), UDP, now=0.1)) == 1
        layer.expire(0.1 + 5.0)  # Timer K
        assert freed() is None
        assert layer.next_deadline() is None
    finally:
        gc.enable()


def test_stray_response_is_dropped() -> None:
    layer = TransactionLayer()
    assert layer.receive(make_response(request(), 200, to_tag="x"), UDP, now=0.0) == []


def test_tags_and_branches_are_unique_and_of_the_right_shape() -> None:
    from ipbx.sip.transaction import new_branch, new_tag

    tags = {new_tag() for _ in range(5000)}
    branches = {new_branch() for _ in range(5000)}
    assert len(tags) == len(branches) == 5000
    assert all(len(t) == 12 for t in tags)
    assert all(b.startswith("z9hG4bK") and len(b) == 23 for b in branches)


def test_timers_a_transaction_no_longer_runs_do_not_pile_up_under_load() -> None:
    """An answered INVITE leaves Timer B (32 s) and Timer C (120 s) queued but dead. At a
    steady call rate they are purged once they outnumber the live timers; the live ones
    still fire on time."""
    layer = TransactionLayer()
    answered = []
    for n in range(5000):
        now = n * 0.004  # 250 calls/s
        invite = request(branch=f"z9hG4bKcall{n}")
        tx = layer.send_request(invite, UDP, now=now)
        layer.receive(make_response(invite, 180, to_tag="t1"), UDP, now=now)
        layer.receive(make_response(invite, 200, to_tag="t1"), UDP, now=now)
        answered.append(tx)
        layer.outgoing()
    # 5,000 live Timers M, one per answered INVITE; without the purge, 15,000 timers.
    assert len(layer._heap) < 2 * len(answered)
    assert layer.next_deadline() == 32.0  # the first call's Timer M (64*T1)
    layer.expire(32.0 + 5000 * 0.004)
    assert all(tx.state is State.TERMINATED for tx in answered)
    assert layer.counts == (0, 0)
