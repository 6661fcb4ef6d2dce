"""Reliable provisional responses (RFC 3262), sans-I/O: the answering side's half.

A caller that sends `Require: 100rel` wants every provisional response but 100 sent
reliably: with `Require: 100rel` and an `RSeq` one higher each time, sent again (T1,
doubling) until a PRACK whose `RAck` names it arrives, and only one unacknowledged at a
time (§3): a later one waits its turn. A 2xx must not overtake an unacknowledged one
that carried SDP (§3), so the owner asks `final_may_go()` and, when it may not, sends its
2xx once `receive_prack` says the last one was acknowledged. After 64*T1 without a PRACK
the INVITE is refused with a 5xx (§3): `expire` returns `NoPrack`.

The calling side's half (PRACK the callee's reliable provisionals, in order, once each)
is in sip/invite.py's `OutgoingInvite`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from ipbx.sip.errors import SipError
from ipbx.sip.invite import Respond
from ipbx.sip.message import Request, Response
from ipbx.sip.session_timer import option_tags
from ipbx.sip.transaction import ServerTransaction, Timers

RELIABLE = "100rel"


def wants_reliable(request: Request) -> bool:
    """The caller requires reliable provisional responses (§4: only then do we send
    them; a caller that merely supports them gets ordinary ones)."""
    return RELIABLE in option_tags(request, "Require")


@dataclass(frozen=True, slots=True)
class RAck:
    rseq: int
    cseq: int
    method: str


def parse_rack(prack: Request) -> RAck:
    """The RAck of a PRACK (§7.2): response number, CSeq number, method."""
    parts = (prack.headers.get("RAck") or "").split()
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise SipError(400, "bad or missing RAck")
    return RAck(int(parts[0]), int(parts[1]), parts[2])


@dataclass(frozen=True, slots=True)
class NoPrack:
    """64*T1 without the PRACK of a reliable provisional: refuse the INVITE (5xx)."""


class ReliableProvisionals:
    """The reliable provisional responses to one INVITE (its server transaction)."""

    def __init__(self, transaction: ServerTransaction, timers: Timers | None = None) -> None:
        self.transaction = transaction
        self.timers = timers or Timers()
        self._cseq = transaction.request.cseq.number
        # §3: the first RSeq is random, between 1 and 2**31 - 1, leaving room to count up.
        self._rseq = random.randint(1, 2**30)
        self._unacked: Response | None = None
        # The provisional still unacknowledged when the final response went.
        self._late: RAck | None = None
        self._waiting: deque[Response] = deque()
        self._interval = 0.0
        self._resend_at: float | None = None
        self._give_up_at: float | None = None

    def send(self, response: Response, now: float) -> list[Respond]:
        """Send a 101-199 reliably: at once when nothing waits for its PRACK, else once
        the one before is acknowledged."""
        response.headers.set("Require", RELIABLE)
        if self._unacked is not None:
            self._waiting.append(response)
            return []
        return [self._send(response, now)]

    def _send(self, response: Response, now: float) -> Respond:
        self._rseq += 1
        response.headers.set("RSeq", str(self._rseq))
        self._unacked = response
        self._interval = self.timers.t1
        self._resend_at = now + self._interval
        self._give_up_at = now + 64 * self.timers.t1
        return Respond(self.transaction, response)

    def final_may_go(self) -> bool:
        """Whether a 2xx may be sent now: no provisional with SDP is unacknowledged."""
        return not any(r.body for r in (self._unacked, *self._waiting) if r is not None)

    def receive_prack(self, prack: Request, now: float) -> tuple[bool, list[Respond]]:
        """A PRACK: whether it acknowledges the provisional waiting for one (else the
        PRACK gets 481), and the next provisional to send, if one waits."""
        rack = parse_rack(prack)
        unacked = self._unacked
        if unacked is None or rack != RAck(self._rseq, self._cseq, "INVITE"):
            return rack is not None and rack == self._late, []
        self._unacked = None
        self._resend_at = self._give_up_at = None
        if self._waiting and self.transaction.status < 200:
            return True, [self._send(self._waiting.popleft(), now)]
        self._waiting.clear()
        return True, []

    def stop(self) -> None:
        """A final response went: no more provisional responses to send or resend. A
        PRACK still on its way for the provisional sent last is acknowledged all the same
        (a 2xx without SDP may overtake it, §3)."""
        if self._unacked is not None:
            self._late = RAck(self._rseq, self._cseq, "INVITE")
        self._unacked = None
        self._waiting.clear()
        self._resend_at = self._give_up_at = None

    def next_deadline(self) -> float | None:
        return self._resend_at

    def expire(self, now: float) -> list[Respond | NoPrack]:
        if self._resend_at is None or now < self._resend_at or self._unacked is None:
            return []
        assert self._give_up_at is not None
        if now >= self._give_up_at:
            self.stop()
            return [NoPrack()]
        # §3: the interval doubles each time (no T2 cap for reliable provisionals).
        self._interval *= 2
        self._resend_at = min(now + self._interval, self._give_up_at)
        return [Respond(self.transaction, self._unacked)]
