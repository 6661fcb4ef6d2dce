"""Random interleavings of requests, retransmissions, responses, ACKs, CANCELs and time
against the transaction layer, checking invariants RFC 3261 §17 implies:

- the TU sees at most one final response per client transaction, except 2xx to INVITE
  (RFC 6026: each retransmitted 2xx goes to the TU, so that it re-sends its ACK);
- a server transaction never sends two different final responses (CANCEL aside: a
  CANCEL arriving after its INVITE transaction ended is a new transaction, rightly 481);
- every transaction ends: once the TU has answered what it must, 64*T1 plus the
  lingering timers later nothing is left and no timer is pending. (RFC 3261 sets no
  timer on a request the TU never answers; answering is the TU's duty.)
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ipbx.sip.message import Request, Response, parse_datagram
from ipbx.sip.transaction import (
    Address,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionLayer,
    make_cancel,
    make_response,
)

PEER = Address("UDP", "192.0.2.1", 5060)
METHODS = st.sampled_from(["INVITE", "OPTIONS", "REGISTER", "BYE"])
STATUSES = st.sampled_from([100, 180, 200, 302, 404, 486, 503])


def _request(method: str, branch: str, cseq: int) -> Request:
    msg = parse_datagram(
        (
            f"{method} sip:x@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{branch}\r\n"
            f"From: <sip:a@pbx>;tag=f{branch}\r\nTo: <sip:x@pbx>\r\nCall-ID: {branch}@h\r\n"
            f"CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


class Transactions(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.layer = TransactionLayer()
        self.now = 0.0
        self.n = 0
        self.clients: list[ClientTransaction] = []
        self.servers: list[ServerTransaction] = []
        self.finals: dict[int, list[int]] = {}
        self.server_finals: dict[int, set[bytes]] = {}

    def _record(self, events: list[object]) -> None:
        for event in events:
            if isinstance(event, ResponseReceived) and event.response.status >= 200:
                self.finals.setdefault(id(event.transaction), []).append(event.response.status)
            if isinstance(event, RequestReceived) and event.transaction is not None:
                self.servers.append(event.transaction)
        for data, _ in self.layer.outgoing():
            if data.startswith(b"SIP/2.0 ") and not data.startswith(b"SIP/2.0 1"):
                msg = parse_datagram(data)
                assert isinstance(msg, Response)
                if msg.cseq.method == "CANCEL":
                    continue
                key = hash((msg.via.branch, msg.cseq.method))
                self.server_finals.setdefault(key, set()).add(data.split(b"\r\n")[0])

    @rule(method=METHODS)
    def client_sends(self, method: str) -> None:
        self.n += 1
        self.clients.append(
            self.layer.send_request(_request(method, f"c{self.n}", 1), PEER, self.now)
        )
        self._record([])

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), status=STATUSES, repeat=st.integers(1, 3))
    def peer_answers(self, data: st.DataObject, status: int, repeat: int) -> None:
        tx = data.draw(st.sampled_from(self.clients))
        response = make_response(tx.request, status, to_tag="remote")
        for _ in range(repeat):
            self._record(self.layer.receive(parse_datagram(response.serialize()), PEER, self.now))

    @rule(method=METHODS, repeat=st.integers(1, 3))
    def peer_sends(self, method: str, repeat: int) -> None:
        self.n += 1
        for _ in range(repeat):
            self._record(self.layer.receive(_request(method, f"s{self.n}", 1), PEER, self.now))

    @precondition(lambda self: self.servers)
    @rule(data=st.data(), status=STATUSES)
    def we_answer(self, data: st.DataObject, status: int) -> None:
        self.layer.reply(data.draw(st.sampled_from(self.servers)), status, self.now)
        self._record([])

    @precondition(lambda self: self.servers)
    @rule(data=st.data())
    def peer_acks_or_cancels(self, data: st.DataObject) -> None:
        tx = data.draw(st.sampled_from(self.servers))
        req = tx.request
        if data.draw(st.booleans()):
            ack = _request("ACK", (req.via.branch or "")[7:], req.cseq.number)
            self._record(self.layer.receive(ack, PEER, self.now))
        else:
            self._record(self.layer.receive(make_cancel(req), PEER, self.now))

    @rule(dt=st.sampled_from([0.1, 0.5, 2.0, 5.0, 40.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self._record(self.layer.expire(self.now))

    @invariant()
    def one_final_per_client_transaction(self) -> None:
        for tx in self.clients:
            statuses = self.finals.get(id(tx), [])
            if not (tx.is_invite and statuses and all(200 <= s < 300 for s in statuses)):
                assert len(statuses) <= 1, statuses

    @invariant()
    def one_final_per_server_transaction(self) -> None:
        for lines in self.server_finals.values():
            assert len(lines) <= 1, lines

    def teardown(self) -> None:
        for tx in self.servers:
            self.layer.reply(tx, 500, self.now)
        self.now += 200.0
        self._record(self.layer.expire(self.now))
        assert self.layer.next_deadline() is None
        assert self.layer.counts == (0, 0)


Transactions.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestTransactions = Transactions.TestCase
