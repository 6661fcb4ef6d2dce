"""The transaction layer counts every message on the wire, by method and by status,
retransmissions included and also counted on their own (for /metrics); made-up methods
share one OTHER row."""

from ipbx.sip.transaction import RequestReceived, TransactionLayer, make_response
from tests.support.transactions import UDP, fire_all, request


def test_a_refused_invite_counts_its_100_486_retransmissions_and_ack() -> None:
    layer = TransactionLayer()
    (received,) = layer.receive(request("INVITE"), UDP, now=0.0)
    assert isinstance(received, RequestReceived) and received.transaction is not None
    layer.reply(received.transaction, 486, now=0.1)
    layer.receive(request("INVITE"), UDP, now=0.2)  # the caller did not hear it yet
    times = fire_all(layer, until=1.2)  # timer G resends the 486 at 0.6 s
    layer.receive(request("ACK"), UDP, now=1.3)

    counts = layer.messages
    assert counts.requests_received == {"INVITE": 2, "ACK": 1}
    assert counts.responses_sent == {100: 1, 486: 2 + len(times)}
    assert counts.retransmissions == 1 + len(times) and times
    assert counts.requests_sent == {} and counts.responses_received == {}


def test_a_client_transaction_counts_requests_sent_and_responses_received() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    layer.send_request(options, UDP, now=0.0)
    fire_all(layer, until=0.6)  # timer E: once again at 0.5 s
    layer.receive(make_response(options, 200, None, "t1"), UDP, now=0.7)
    layer.receive(make_response(options, 200, None, "t1"), UDP, now=0.8)  # a repeat

    counts = layer.messages
    assert counts.requests_sent == {"OPTIONS": 2}
    assert counts.retransmissions == 1
    assert counts.responses_received == {200: 2}


def test_made_up_methods_share_one_row() -> None:
    layer = TransactionLayer()
    for n in range(50):
        layer.receive(request(f"FOO{n}", branch=f"z9hG4bK{n}"), UDP, now=0.0)
    assert layer.messages.requests_received == {"OTHER": 50}
