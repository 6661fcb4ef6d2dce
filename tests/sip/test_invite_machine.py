"""Random interleavings of responses, retransmissions, the owner's verbs and time against
both sides of an INVITE usage, checking what RFC 3261 asks of a UA core:

The calling side (`OutgoingInvite`):
- no CANCEL before a provisional response to the INVITE it cancels, and at most one
  (§9.1); once asked for, it goes out with the first such response;
- every 2xx is answered by an ACK with the INVITE's CSeq, the same bytes every time
  (§13.2.2.4), and with our answer in it for a late offer (RFC 3264 §2);
- a challenge is answered in a new transaction with the next CSeq (§8.1.3.5, §22.2),
  at most twice, the second time only for a stale nonce (RFC 7616 §3.3), never once
  the owner gave up;
- the owner learns one outcome, answered or rejected.

The answering side (`IncomingInvite`):
- its 2xx goes again at T1, 2*T1, 4*T1 ... capped at T2 over UDP, never over TCP, never
  once the ACK with the INVITE's CSeq came (§13.3.1.4);
- without that ACK the owner hears "no ACK" exactly once, 64*T1 after the 2xx;
- a late offer's ACK without SDP is reported as such.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

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
    Send,
)
from ipbx.sip.message import Request, Response
from ipbx.sip.transaction import Address, Timers, make_response
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

PROVISIONAL = st.sampled_from([100, 180, 183])
FINAL = st.sampled_from([200, 486, 487, 503])


class Caller(RuleBasedStateMachine):
    """The owner of an `OutgoingInvite`, and a far end answering its INVITEs."""

    @initialize(late_offer=st.booleans())
    def start(self, late_offer: bool) -> None:
        self.call = OutgoingInvite(invite(b"" if late_offer else OFFER), UDP, credentials)
        self.sent: list[Request] = [self.call.invite]  # every INVITE, the retries stamped
        self.provisional_on: set[int] = set()  # CSeqs of INVITEs that got a 1xx
        self.final_on: dict[int, Response] = {}
        self.cancel_asked = False
        self.cancels: list[Request] = []
        self.outcomes: list[Answered | Rejected] = []
        self.acks: list[bytes] = []
        self.answered_2xx = 0  # 2xx fed after the ACK could be built
        self.stale_challenges: set[int] = set()

    def _handle(self, items: Sequence[object], fed: Response | None = None) -> None:
        for item in items:
            if isinstance(item, Send) and item.request.method == "CANCEL":
                cancel = item.request
                assert cancel.cseq.number in self.provisional_on, "CANCEL before a 1xx"
                assert cancel.via.branch == self.call.invite.via.branch
                self.cancels.append(cancel)
            elif isinstance(item, Send) and item.request.method == "ACK":
                ack = stamp(item.request)
                assert ack.cseq.number == self.call.invite.cseq.number
                assert bool(ack.body) == self.call.late_offer
                self.acks.append(ack.serialize())
            elif isinstance(item, Send):
                self._retried(item.request, fed)
            elif isinstance(item, Resend):
                self.acks.append(item.data)
            elif isinstance(item, Provisional):
                assert not self.cancel_asked
            else:
                assert isinstance(item, Answered | Rejected)
                self.outcomes.append(item)

    def _retried(self, retry: Request, challenge: Response | None) -> None:
        assert challenge is not None and challenge.status in (401, 407)
        assert not self.cancel_asked
        previous = self.sent[-1]
        assert retry.method == "INVITE" and "Via" not in retry.headers
        assert retry.cseq.number == previous.cseq.number + 1
        assert len(self.sent) == 1 or previous.cseq.number in self.stale_challenges
        self.sent.append(stamp(retry))

    @property
    def current(self) -> Request:
        return self.sent[-1]

    @precondition(lambda self: self.current.cseq.number not in self.final_on)
    @rule(status=PROVISIONAL)
    def far_end_provisional(self, status: int) -> None:
        self.provisional_on.add(self.current.cseq.number)
        self._handle(self.call.receive(response(self.current, status)))

    @precondition(lambda self: self.current.cseq.number not in self.final_on)
    @rule(status=FINAL)
    def far_end_final(self, status: int) -> None:
        body = OFFER if self.call.late_offer else ANSWER
        final = response(self.current, status, body if status == 200 else b"")
        self.final_on[self.current.cseq.number] = final
        if status == 200 and not self.call.late_offer:
            self.answered_2xx += 1
        self._handle(self.call.receive(final))

    @precondition(lambda self: self.current.cseq.number not in self.final_on)
    @rule(status=st.sampled_from([401, 407]), is_stale=st.booleans())
    def far_end_challenges(self, status: int, is_stale: bool) -> None:
        challenge = response(self.current, status)
        if is_stale:
            stale(challenge)
            self.stale_challenges.add(self.current.cseq.number)
        self.final_on[self.current.cseq.number] = challenge
        self._handle(self.call.receive(challenge), fed=challenge)

    @precondition(lambda self: self.current.cseq.number in self.final_on)
    @rule()
    def far_end_resends_its_2xx(self) -> None:
        final = self.final_on[self.current.cseq.number]
        if final.status == 200 and not self.call.ack_pending:
            self.answered_2xx += 1
        self._handle(self.call.receive(final))

    @precondition(lambda self: len(self.sent) > 1)
    @rule(status=st.sampled_from([180, 200, 486]))
    def the_replaced_transaction_answers_late(self, status: int) -> None:
        assert self.call.receive(response(self.sent[0], status)) == []

    @rule()
    def owner_cancels(self) -> None:
        self.cancel_asked = True
        self._handle(self.call.cancel())

    @rule()
    def owner_sends_its_answer(self) -> None:
        if self.call.ack_pending:
            self.answered_2xx += 1
        self._handle(self.call.ack(ANSWER))

    @invariant()
    def at_most_one_cancel(self) -> None:
        assert len(self.cancels) <= 1

    @invariant()
    def a_wanted_cancel_goes_with_the_first_provisional(self) -> None:
        cseq = self.current.cseq.number
        if self.cancel_asked and cseq in self.provisional_on and cseq not in self.final_on:
            assert len(self.cancels) == 1

    @invariant()
    def one_ack_per_2xx_all_alike(self) -> None:
        assert len(self.acks) == self.answered_2xx
        assert len(set(self.acks)) <= 1

    @invariant()
    def one_outcome(self) -> None:
        assert len(self.outcomes) <= 1
        if self.outcomes:
            assert self.outcomes[0].response is self.final_on[self.current.cseq.number]

    @invariant()
    def at_most_two_retries(self) -> None:
        assert len(self.sent) <= 3


class Callee(RuleBasedStateMachine):
    """The owner of an `IncomingInvite`, with a faithful timer, and a far end that ACKs
    (or not)."""

    @initialize(
        peer=st.sampled_from([UDP, TCP]),
        late_offer=st.booleans(),
        timers=st.sampled_from([Timers(), Timers(t1=0.1, t2=0.3), Timers(t1=1.0, t2=1.0)]),
    )
    def start(self, peer: Address, late_offer: bool, timers: Timers) -> None:
        self.usage = IncomingInvite(
            server_transaction(invite(b"" if late_offer else OFFER), peer), timers
        )
        self.timers = timers
        self.now = 0.0
        self.accepted_at: float | None = None
        self.ok: Response | None = None
        self.resent_at: list[float] = []
        self.no_ack_at: list[float] = []
        self.acks: list[Acked | AnswerMissing] = []

    @precondition(lambda self: self.accepted_at is None)
    @rule()
    def owner_accepts(self) -> None:
        tx = self.usage.transaction
        self.ok = make_response(tx.request, 200, to_tag=tx.to_tag)
        self.ok.body = OFFER if self.usage.late_offer else ANSWER
        self.ok.headers.add("Content-Type", "application/sdp")
        self.accepted_at = self.now
        self.usage.accept(self.ok, self.now)

    @rule(dt=st.sampled_from([0.05, 0.4, 1.0, 3.0, 10.0, 40.0]))
    def time_passes(self, dt: float) -> None:
        until = self.now + dt
        while (deadline := self.usage.next_deadline()) is not None and deadline <= until:
            assert deadline >= self.now
            self.now = deadline
            for item in self.usage.expire(deadline):
                if isinstance(item, Resend):
                    assert self.ok is not None and item.data == self.ok.serialize()
                    assert item.dest == self.usage.peer
                    self.resent_at.append(deadline)
                else:
                    assert isinstance(item, NoAck)
                    self.no_ack_at.append(deadline)
        self.now = until

    @rule(right_cseq=st.booleans(), with_sdp=st.booleans())
    def far_end_acks(self, right_cseq: bool, with_sdp: bool) -> None:
        cseq = self.usage.transaction.request.cseq.number
        ack = ack_for(self.usage, ANSWER if with_sdp else b"", cseq if right_cseq else cseq + 7)
        items = self.usage.receive_ack(ack)
        waiting = self.accepted_at is not None and not self.acks and not self.no_ack_at
        if not (waiting and right_cseq):
            assert items == []
            return
        expected = AnswerMissing if self.usage.late_offer and not with_sdp else Acked
        assert [type(item) for item in items] == [expected]
        self.acks += items

    @invariant()
    def resent_on_schedule_until_acked(self) -> None:
        if self.accepted_at is None or self.usage.peer.reliable:
            assert self.resent_at == [] and self.no_ack_at == []
            return
        at, interval, schedule = self.accepted_at, self.timers.t1, []
        for _ in self.resent_at:
            at += interval
            schedule.append(at)
            interval = min(interval * 2, self.timers.t2)
        assert self.resent_at == schedule
        give_up = self.accepted_at + 64 * self.timers.t1
        assert all(t < give_up for t in self.resent_at)
        assert self.no_ack_at in ([], [give_up])

    @invariant()
    def silent_once_acked_or_given_up(self) -> None:
        if self.acks or self.no_ack_at or self.usage.peer.reliable:
            assert self.usage.next_deadline() is None
        assert len(self.acks) + len(self.no_ack_at) <= 1

    def teardown(self) -> None:
        if not hasattr(self, "usage"):
            return
        self.time_passes(1000.0)
        assert self.usage.next_deadline() is None
        if self.accepted_at is not None and not self.acks and not self.usage.peer.reliable:
            assert len(self.no_ack_at) == 1


Caller.TestCase.settings = settings(max_examples=400, stateful_step_count=12, deadline=None)
Callee.TestCase.settings = settings(max_examples=200, stateful_step_count=25, deadline=None)
TestCaller = Caller.TestCase
TestCallee = Callee.TestCase
