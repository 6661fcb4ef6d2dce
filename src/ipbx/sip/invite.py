"""The INVITE usage (RFC 3261 §13), sans-I/O: what a user agent owes an INVITE beyond its
transaction.

The INVITE transactions (transaction.py) stop at the 2xx; what follows is the UA core's:

- `IncomingInvite`, the side that answers: over an unreliable transport our 2xx is sent
  again, T1 doubling up to T2, until the ACK with the INVITE's CSeq comes, and after 64*T1
  without one the session is over (§13.3.1.4). For a late offer (an INVITE without SDP)
  our 2xx carries the offer and the ACK must carry the answer (RFC 3264 §2).
- `OutgoingInvite`, the side that calls: a CANCEL only once a provisional response has
  arrived, held until then (§9.1); the ACK of the 2xx, and the same ACK again for each
  retransmission of it (§13.2.2.4), with our answer in it when the 2xx carried the offer;
  a 401/407 answered with credentials in a new transaction with the next CSeq (§22.2),
  once, and once more when only the nonce was stale (RFC 7616 §3.3); a 422 answered
  with the session interval it asks for (RFC 4028 §7.1), the same way; a PRACK for each
  reliable provisional response, once and in RSeq order, in its early dialog, which the
  2xx then confirms (RFC 3262 §4; the answering side's half is sip/prack.py).

How an owner (a PBX leg, a trunk attempt, the phone) drives one:

1. It tells the usage what arrives and what it decides: `OutgoingInvite.receive` for every
   response to the INVITE (and to its retry), `IncomingInvite.receive_ack` for the ACK of
   the dialog, the verbs `OutgoingInvite.cancel`, `OutgoingInvite.ack` (late offer) and
   `IncomingInvite.accept` (send the 2xx).
2. Each returns a list to handle in order: messages to send (`Send`, `Respond`, `Resend`;
   `SipEndpoint.transmit` sends any of them) and events (`Provisional`, `Answered`,
   `Rejected`; `Acked`, `AnswerMissing`, `NoAck`). Send the very objects returned: the
   shell stamps Via on a request and Server on a response as it sends them, and a later
   `Resend` repeats the message as it went out.
3. After each call it arms one timer at `next_deadline()` (None: no timer; an asyncio
   owner keeps a `sip.transport.alarm.Alarm` there), and when the timer fires calls
   `expire(now)` and handles that list the same way. Only the answering side has timers;
   nothing here reads the clock, `now` is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipbx.sip.auth import CredentialSource, retry_with_credentials
from ipbx.sip.dialog import Dialog
from ipbx.sip.errors import SipError
from ipbx.sip.message import Request, Response
from ipbx.sip.session_timer import option_tags, retry_with_interval
from ipbx.sip.transaction import Address, ServerTransaction, Timers, make_cancel

# --- what to send -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """A request to send for the first time: an INVITE again with credentials or a CANCEL
    (each in a new client transaction), or an ACK (outside any transaction)."""

    request: Request
    dest: Address


@dataclass(frozen=True, slots=True)
class Respond:
    """Our 2xx, through the INVITE's server transaction."""

    transaction: ServerTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class Resend:
    """A message to send again exactly as it went out, outside any transaction: our 2xx
    that no ACK has confirmed, or the ACK for a retransmitted 2xx."""

    data: bytes
    dest: Address


# --- events for the owner -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provisional:
    """A 1xx to the INVITE (none are reported once a CANCEL was asked for)."""

    response: Response


@dataclass(frozen=True, slots=True)
class Answered:
    """The first 2xx: the dialog exists (`OutgoingInvite.dialog`). For a late offer this
    2xx carries the offer, and the owner must call `ack(answer)`; otherwise the ACK has
    gone already."""

    response: Response


@dataclass(frozen=True, slots=True)
class Rejected:
    """The final non-2xx that ends the INVITE: a refusal, a challenge not answered, a 487
    after our CANCEL, or the 408/503 the transaction layer makes of a time-out or a
    transport failure."""

    response: Response


@dataclass(frozen=True, slots=True)
class Acked:
    """The ACK for our 2xx; for a late offer it carries the answer (an SDP body), which the
    owner still has to find usable, else hang up."""

    ack: Request


@dataclass(frozen=True, slots=True)
class AnswerMissing:
    """The ACK for our 2xx with a late offer came without the answer (RFC 3264 §2): the
    session cannot start, the owner hangs up."""

    ack: Request


@dataclass(frozen=True, slots=True)
class NoAck:
    """64*T1 passed without the ACK for our 2xx: the owner hangs up (RFC 3261 §13.3.1.4)."""


# What `OutgoingInvite.receive` returns.
OutgoingItem = Send | Resend | Provisional | Answered | Rejected


def _has_sdp(msg: Request | Response) -> bool:
    return bool(msg.body) and msg.content_type == "application/sdp"


class OutgoingInvite:
    """The calling side of one INVITE (an initial one, or a re-INVITE when given the
    dialog). The owner sends `invite` itself, with its response handler, and feeds every
    response to `receive`; a retry with credentials comes back as a `Send` of the new
    `invite`, to send with the same handler."""

    def __init__(
        self,
        invite: Request,
        dest: Address,
        credentials: CredentialSource | None = None,
        dialog: Dialog | None = None,
    ) -> None:
        self.invite = invite
        self.dest = dest
        self.credentials = credentials
        # With no SDP in the INVITE, the 2xx brings the offer and the ACK our answer.
        self.late_offer = not _has_sdp(invite)
        self.dialog = dialog
        self.final: Response | None = None
        self.cancel_wanted = False
        self.cancelled = False
        self._provisional = False
        self._challenges = 0
        self._ack: Request | None = None
        self._ack_data = b""
        # Early dialogs by To tag, and the last RSeq acknowledged in each (RFC 3262).
        self._early: dict[str, Dialog] = {}
        self._rseq: dict[str, int] = {}

    @property
    def early(self) -> bool:
        """A provisional response has come (a CANCEL may go now)."""
        return self._provisional

    @property
    def ack_pending(self) -> bool:
        """A late offer answered: the ACK waits for the owner's answer (`ack`)."""
        return self.final is not None and self.final.status < 300 and self._ack is None

    def receive(self, response: Response) -> list[OutgoingItem]:
        """A response to the INVITE. Responses to an INVITE this usage has since replaced
        (by the retry with credentials) are ignored."""
        if response.cseq.number != self.invite.cseq.number:
            return []
        status = response.status
        if status < 200:
            return self._provisional_response(response)
        if status < 300:
            return self._success(response)
        if self.final is not None:
            return []
        if not self.cancel_wanted:
            retry = self._retry(response)
            if retry is not None:
                return [retry]
        self.final = response
        return [Rejected(response)]

    def cancel(self) -> list[Send]:
        """Stop the INVITE: a CANCEL now if a provisional response has come, else as soon
        as one does (RFC 3261 §9.1). Nothing once a final response has come; after a 2xx
        the owner ends the call with a BYE instead."""
        if self.final is not None or self.cancel_wanted:
            return []
        self.cancel_wanted = True
        return [self._send_cancel()] if self._provisional else []

    def ack(self, body: bytes = b"") -> list[Send]:
        """The ACK for the 2xx of a late offer, carrying our answer (RFC 3264 §2)."""
        return [self._send_ack(body)] if self.ack_pending else []

    def _provisional_response(self, response: Response) -> list[OutgoingItem]:
        if self.final is not None:
            return []
        self._provisional = True
        if not self.cancel_wanted:
            if "100rel" not in option_tags(response, "Require") or response.status == 100:
                return [Provisional(response)]
            prack = self._prack(response)
            return [] if prack is None else [prack, Provisional(response)]
        return [] if self.cancelled else [self._send_cancel()]

    def _prack(self, response: Response) -> Send | None:
        """The PRACK of a reliable provisional response (RFC 3262 §4); None for one sent
        again or out of order, which is dropped, not reported."""
        tag, rseq = response.to.tag or "", (response.headers.get("RSeq") or "").strip()
        last = self._rseq.get(tag)
        if not rseq.isdigit() or (last is not None and int(rseq) != last + 1):
            return None
        dialog = self._early.get(tag)
        if dialog is None:
            try:
                dialog = self._early[tag] = Dialog.as_uac(self.invite, response)
            except SipError:
                return None  # no Contact to send the PRACK to
        self._rseq[tag] = int(rseq)
        rack = f"{rseq} {self.invite.cseq.number} INVITE"
        return Send(dialog.create_request("PRACK", extra=[("RAck", rack)]), self.dest)

    @property
    def sent_ack(self) -> bytes:
        """The ACK of our 2xx as it went out (empty before it has), the one thing a 2xx
        sent again still needs (§13.2.2.4)."""
        if self._ack is not None and not self._ack_data:
            self._ack_data = self._ack.serialize()
        return self._ack_data

    def _success(self, response: Response) -> list[OutgoingItem]:
        if self.final is not None:
            if self.final.status >= 300 or self._ack is None:
                return []
            # Our ACK was lost: every retransmission of the 2xx gets it again (§13.2.2.4).
            return [Resend(self.sent_ack, self.dest)]
        early = self._early.get(response.to.tag or "")
        if self.dialog is None and early is not None:
            # The early dialog a PRACK was sent in: its CSeq counts on (RFC 3262 §4).
            self.dialog = early
        if self.dialog is None:
            self.dialog = Dialog.as_uac(self.invite, response)
        else:
            self.dialog.receive_response(response)
        self.final = response
        if self.late_offer:
            return [Answered(response)]
        return [self._send_ack(b""), Answered(response)]

    def _send_ack(self, body: bytes) -> Send:
        assert self.dialog is not None
        self._ack = self.dialog.create_ack(self.invite.cseq.number, body, "application/sdp")
        return Send(self._ack, self.dest)

    def _send_cancel(self) -> Send:
        self.cancelled = True
        return Send(make_cancel(self.invite), self.dest)

    def _retry(self, response: Response) -> Send | None:
        retry = retry_with_interval(self.invite, response)
        if retry is None:
            if self.credentials is None:
                return None
            retry = retry_with_credentials(
                self.invite, response, self._challenges, self.credentials
            )
            if retry is None:
                return None
            self._challenges += 1
        self.invite = retry
        self._early.clear()
        self._rseq.clear()
        if self.dialog is not None:
            self.dialog.local_seq = retry.cseq.number
        # A new transaction: its own provisional response must come before a CANCEL.
        self._provisional = False
        return Send(retry, self.dest)


class IncomingInvite:
    """The answering side of one INVITE (an initial one or a re-INVITE), from the moment
    it arrives; `accept` sends our 2xx."""

    def __init__(self, transaction: ServerTransaction, timers: Timers | None = None) -> None:
        self.transaction = transaction
        self.timers = timers or Timers()
        # With no SDP in the INVITE, our 2xx carries the offer and the ACK the answer.
        self.late_offer = not _has_sdp(transaction.request)
        # Read once: the transaction keeps little of its request after the 2xx.
        self._cseq = transaction.request.cseq.number
        self.response: Response | None = None
        self.acked = False
        self._waiting = False  # for the ACK of our 2xx
        self._data = b""
        self._interval = 0.0
        self._resend_at: float | None = None
        self._give_up_at: float | None = None

    @property
    def peer(self) -> Address:
        return self.transaction.peer

    def accept(self, response: Response, now: float) -> list[Respond]:
        """Send `response`, our 2xx, and over an unreliable transport keep sending it until
        the ACK comes: T1 doubling up to T2, for 64*T1 (§13.3.1.4). Over a reliable
        transport it is sent once, and no time limit is kept."""
        assert self.response is None, "an INVITE gets one 2xx"
        self.response = response
        self._waiting = True
        if not self.peer.reliable:
            self._interval = self.timers.t1
            self._resend_at = now + self._interval
            self._give_up_at = now + 64 * self.timers.t1
        return [Respond(self.transaction, response)]

    def receive_ack(self, ack: Request) -> list[Acked | AnswerMissing]:
        """An ACK in this dialog. Ignored unless our 2xx waits for it: one whose CSeq is
        not the INVITE's (the ACK of an earlier INVITE sent again), one that comes again,
        one that comes after we gave up."""
        if not self._waiting or ack.cseq.number != self._cseq:
            return []
        self._waiting = False
        self.acked = True
        self._resend_at = self._give_up_at = None
        if self.late_offer and not _has_sdp(ack):
            return [AnswerMissing(ack)]
        return [Acked(ack)]

    def next_deadline(self) -> float | None:
        return self._resend_at

    def expire(self, now: float) -> list[Resend | NoAck]:
        if self._resend_at is None or now < self._resend_at:
            return []
        assert self.response is not None and self._give_up_at is not None
        if now >= self._give_up_at:
            self._waiting = False
            self._resend_at = self._give_up_at = None
            return [NoAck()]
        if not self._data:
            self._data = self.response.serialize()
        self._interval = min(self._interval * 2, self.timers.t2)
        self._resend_at = min(now + self._interval, self._give_up_at)
        return [Resend(self._data, self.peer)]
