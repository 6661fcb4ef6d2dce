"""Ringing: every reachable contact at once (parallel forking), the first 2xx wins, the
others are cancelled; when none answers, the best failure (RFC 3261 §16.7).

Phones are rung two ways. For the caller's own INVITE (`ring`), the caller is not
answered: provisional responses and early media are relayed to it, and the callee's
answer becomes its answer; the outcome (`Call.outcome`) tells the router whether to
follow forwarding. For a call flow, a transfer or click-to-call (dial.py), ipbx offers
its own SDP and bridges whoever answers to the leg it keeps.
A browser is offered WebRTC, on an endpoint of its own (ring_media.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Sequence

from ipbx import sdp
from ipbx.media.srtp import CryptoAttribute
from ipbx.pbx.call.model import (
    ALLOW,
    Call,
    CallState,
    Incoming,
    Leg,
    best_failure,
    dialog_response,
    parse_sdp,
)
from ipbx.pbx.call.negotiate import (
    callee_offer,
    forward,
    join,
    new_keys,
    offer_for,
    refusal,
)
from ipbx.pbx.call.recording import record_if_asked
from ipbx.pbx.call.registry import CallRegistry
from ipbx.pbx.call.ring_media import endpoints_for, keep_answering_media, release
from ipbx.pbx.events import CALL_RINGING
from ipbx.pbx.location import Binding
from ipbx.pbx.nat import answer_target, dialog_target
from ipbx.sip.auth import CredentialSource
from ipbx.sip.dialog import Dialog
from ipbx.sip.errors import SipError
from ipbx.sip.invite import Answered, OutgoingInvite, Provisional, Resend, Send
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.transaction import Address, ClientTransaction
from ipbx.sip.uri import NameAddr, Uri, display_name

log = logging.getLogger("ipbx.calls")

# Told of the leg that answered a dial, in the turn its 200 OK is read (`dial_with`).
AnswerHook = Callable[[Leg], None]


def caller_target(
    reg: CallRegistry, call: Call, request: Request, source: Address
) -> tuple[Address, bool]:
    """Where requests inside the caller's dialog go, and whether it is behind NAT
    (pbx/nat.py), by its extension's `nat` setting; a trunk's calls follow the detection
    alone."""
    mode = reg.policy.nat.get(call.from_number, "auto") if call.inbound_slot is None else "auto"
    return dialog_target(request, source, mode, reg.endpoint.connected(source))


def outgoing_invite(
    reg: CallRegistry,
    call: Call,
    max_forwards: int | None,
    uri: Uri,
    from_: str,
    to: str,
    dest: Address,
    body: bytes,
    extra: Sequence[tuple[str, str]] = (),
    cseq: int = 1,
) -> Request:
    """The INVITE of the far side's dialog (one Call-ID and From tag per call)."""
    headers = Headers()
    headers.add("Max-Forwards", str((max_forwards or 70) - 1))
    headers.add("From", from_)
    headers.add("To", to)
    headers.add("Call-ID", call.b_call_id)
    headers.add("CSeq", f"{cseq} INVITE")
    headers.add("Contact", f"<{reg.endpoint.contact(dest)}>")
    headers.add("Allow", ALLOW)
    # Reliable provisional responses (RFC 3262) and session timers (RFC 4028).
    headers.add("Supported", "100rel, timer")
    for name, value in (*reg.sessions.request_fields(), *extra):
        headers.add(name, value)
    if body:
        headers.add("Content-Type", "application/sdp")
    return Request(headers, body, "INVITE", uri)


def identity(call: Call, leg: Leg | None) -> NameAddr:
    """Who a phone rung for `leg` sees calling: the caller, the party a transfer hands
    over (the called number, for a callee); for a call ipbx places, the other party."""
    if leg is None:
        return NameAddr(Uri("sip", call.to_number, None, "ipbx", None))
    if leg is call.caller and leg.server_tx is not None:
        return leg.invite.from_
    if leg is call.caller:
        return NameAddr(Uri("sip", call.from_number, None, "ipbx", None))
    return NameAddr(Uri("sip", call.to_number, None, leg.invite.uri.host, None))


def settle(call: Call, status: int) -> None:
    """Tell whoever awaits the caller's own ringing how it ended."""
    if call.outcome is not None and not call.outcome.done():
        call.outcome.set_result(status)


def callee_invite(
    reg: CallRegistry,
    call: Call,
    max_forwards: int | None,
    from_: NameAddr,
    target: str,
    contact: Uri,
    dest: Address,
    body: bytes,
) -> Request:
    """The INVITE to one contact of the extension `target`: From the caller, To the
    extension, both at our address as that phone reaches us."""
    local = reg.endpoint.local_address(dest)
    caller_uri = Uri("sip", from_.uri.user, None, local.host, local.port)
    from_value = str(NameAddr(caller_uri, from_.display, {"tag": call.b_tag}))
    to = str(NameAddr(Uri("sip", target, None, local.host, local.port)))
    return outgoing_invite(reg, call, max_forwards, contact, from_value, to, dest, body)


class Forking:
    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry
        # What a trunk's refusal leads to (failover: trunk.py, which sets it).
        self.on_trunk_failure: Callable[[Leg, Response], None] = lambda fork, response: None
        # A phone rung by ipbx's own offer answered, or all refused (dial.py sets them).
        self.on_dial_answer: Callable[[Leg, Response], None] = lambda fork, response: None
        self.on_dial_refused: Callable[[Call], None] = lambda call: None

    # --- the caller's own INVITE ---------------------------------------------------------------

    async def setup(self, call: Call, incoming: Incoming) -> bool:
        """The caller's leg and the media endpoint of the far side, with the offer for
        the far side in `call.far_body` (empty for a late offer); False when the call
        ended here."""
        reg = self.registry
        request, source, tx, offer = incoming
        caller_media = await reg.open_media(tx)
        if caller_media is None:
            reg.end(call)
            return False
        callee_media = await reg.open_media(tx)
        if callee_media is None:
            caller_media.close()
            reg.end(call)
            return False
        if tx.status >= 200:
            caller_media.close()
            callee_media.close()
            reg.end(call)
            return False  # cancelled while the ports were being opened
        target, nat = caller_target(reg, call, request, source)
        a = Leg(call, target, caller_media, request, server_tx=tx, offer=offer, behind_nat=nat)
        call.caller = a
        call.far_media = callee_media
        call.outcome = asyncio.get_running_loop().create_future()
        reg.calls[call.id] = call
        reg.publish_start(call)
        reg.by_invite[id(tx)] = call
        if offer is not None:
            try:
                call.far_body = callee_offer(
                    a, offer, callee_media, reg.sdp_address(a.peer), reg.policy.codecs
                )
            except SipError as exc:
                reg.endpoint.reply(tx, exc.status)
                reg.end(call)
                return False
        return True

    async def ring(
        self,
        call: Call,
        target: str,
        bindings: list[Binding],
        seconds: float | None,
    ) -> int:
        """Ring `target`'s contacts for the caller's INVITE (after `setup`): 200 when
        one answers, else the best failure (480 when `seconds` ran out first)."""
        reg = self.registry
        a = call.caller
        assert a is not None and call.far_media is not None and call.outcome is not None
        request, body, callee_media = a.invite, call.far_body, call.far_media
        endpoints = await endpoints_for(reg.ports, call, bindings, callee_media)
        from_ = request.from_
        if call.caller_name:
            from_ = NameAddr(from_.uri, display_name(call.caller_name), from_.params)
        log.debug("%s %s -> %s: ringing %d contact(s)", call.id, call.from_number, target,
                  len(bindings))  # fmt: skip
        call.state = CallState.RINGING
        keys: tuple[CryptoAttribute, ...] = ()
        caller_address = reg.sdp_address(a.peer)
        for binding, media in zip(bindings, endpoints, strict=True):
            if media is None:
                continue
            dest = binding.destination(reg.endpoint.connected)
            secure = bool(body) and (target in reg.policy.srtp_required or dest.transport == "TLS")
            address = reg.sdp_address(dest)
            offer = body
            if binding.browser and body:  # DTLS-SRTP, keyed by its own handshake
                offer = offer_for(body, media, address, browser=True)
            elif secure:
                # Every callee that gets SRTP is offered the same keys.
                keys = keys or new_keys()
                offer = offer_for(body, callee_media, address, keys)
            elif body and address != caller_address:
                offer = offer_for(body, callee_media, address)  # our address as it reaches us
            invite = callee_invite(
                reg, call, request.max_forwards, from_, target, binding.uri, dest, offer
            )
            fork = Leg(call, dest, media, invite, behind_nat=binding.behind_nat,
                       offered_keys=keys if secure and not binding.browser else ())  # fmt: skip
            self.send(fork)
        if not call.forks:
            return 503  # ended meanwhile, or browsers only and no RTP port left for them
        named = {"caller_name": call.caller_name} if call.caller_name else {}
        reg.publish(CALL_RINGING, call, extension=target, **named)
        if seconds is not None:
            call.ring_timer = reg.endpoint.loop.call_later(seconds, self._ring_timeout, call)
        return await call.outcome

    def _ring_timeout(self, call: Call) -> None:
        """Nobody answered in time: cancel the ringing phones; their 487s end the
        attempt as unanswered, and the no-answer forwarding takes over."""
        call.ring_timer = None
        if call.ended or call.callee is not None:
            return
        log.info("%s: no answer from %s", call.id, call.rang)
        call.timed_out = True
        for fork in call.forks:
            self.registry.cancel_fork(fork)

    def retarget(self, call: Call) -> None:
        """The phones rung for the caller's INVITE did not answer: their far side (media
        endpoint and offer) is kept for the next attempt (a forward out through a trunk),
        in a new dialog, with a new outcome to await."""
        self.registry.stop_ring_timer(call)
        call.forks = []
        call.rang = None
        call.timed_out = False
        call.new_far_dialog()
        call.outcome = asyncio.get_running_loop().create_future()

    # --- responses from the phones rung --------------------------------------------------------

    def send(self, fork: Leg, credentials: CredentialSource | None = None) -> None:
        """Send a fork's INVITE through its own INVITE usage and take part in the call."""
        fork.outgoing = OutgoingInvite(fork.invite, fork.peer, credentials)
        fork.call.forks.append(fork)
        self.registry.endpoint.send_request(fork.invite, fork.peer, _Responses(self, fork))

    def on_response(self, fork: Leg, response: Response) -> None:
        usage = fork.outgoing
        assert usage is not None
        for item in usage.receive(response):
            if isinstance(item, Send | Resend):
                # An ACK, a held CANCEL, or the INVITE again with credentials.
                self.registry.endpoint.transmit(item, _Responses(self, fork))
                fork.invite = usage.invite
            elif isinstance(item, Provisional):
                self._provisional(fork, item.response)
            elif isinstance(item, Answered):
                fork.dialog = usage.dialog
                fork.peer = answer_target(
                    fork.peer, item.response.contacts[0].uri, nat=fork.behind_nat,
                    routed=bool(item.response.headers.get("Record-Route")),
                    connected=self.registry.endpoint.connected(fork.peer),
                )  # fmt: skip
                self._answered(fork, item.response)
            elif fork.trunk is not None:
                self.on_trunk_failure(fork, item.response)
            else:
                self._refused(fork)

    def _provisional(self, fork: Leg, response: Response) -> None:
        call = fork.call
        if response.status > 100 and not call.ended and call.callee is None and not call.dialing:
            self._relay_provisional(fork, response)

    def _refused(self, fork: Leg) -> None:
        """A phone refused (or timed out): when every one rung has, the best failure."""
        call = fork.call
        release(fork)
        if call.ended or not all(f.final is not None for f in call.forks):
            return
        finals = [f.final.status for f in call.forks if f.final is not None]
        if call.dialing is not None:
            # A transfer's target refuses while the call still has both its parties.
            self.on_dial_refused(call)
        elif call.callee is None:
            settle(call, 480 if call.timed_out else best_failure(finals))

    def _relay_provisional(self, fork: Leg, response: Response) -> None:
        reg = self.registry
        a = fork.call.caller
        if a is None or a.server_tx is None:
            return
        out = dialog_response(a.invite, response.status, response.reason, a.server_tx.to_tag)
        description = parse_sdp(response)
        if description is not None and description.audio is not None:
            # Early media (183 with SDP): the callee's media flows to the caller now.
            try:
                out.body = join(a, fork, description, reg.sdp_address(a.peer), reg.policy.codecs)
                out.headers.add("Content-Type", "application/sdp")
            except SipError as exc:
                log.info("%s: no early media from %s: %s", fork.call.id, fork.peer, exc.reason)
        out.headers.add("Contact", f"<{reg.endpoint.contact(a.peer)}>")
        reg.provisionals.send(a, out)

    def _answered(self, fork: Leg, response: Response) -> None:
        reg = self.registry
        call = fork.call
        # Only a phone of the attempt in progress may take the call: not one rung by a
        # dial that is over (it timed out, or the next has begun), whose 200 OK crossed
        # our CANCEL (RFC 3261 §9.1).
        current = fork in call.forks and not call.ended
        if current and call.dialing is not None and not call.dialing.done():
            # Rung by a call flow or a transfer, while the call already has its parties.
            self.on_dial_answer(fork, response)
            return
        description = parse_sdp(response)
        assert fork.outgoing is not None
        late_offer = fork.outgoing.late_offer
        ringing = call.outcome is not None and not call.outcome.done()
        if not (current and ringing) or call.callee is not None:
            # A phone answered too late: ACK (with an answer to its offer, if it made
            # one) and hang it up at once.
            if late_offer:
                port = fork.media.local_address[1]
                reg.ack(fork, refusal(description, reg.sdp_address(fork.peer), port))
            reg.bye(fork)
            return
        a = call.caller
        assert a is not None and a.server_tx is not None
        call.callee = fork
        reg.stop_ring_timer(call)
        for other in call.forks:
            if other is not fork:
                reg.cancel_fork(other)
        keep_answering_media(call)
        reg.by_invite.pop(id(a.server_tx), None)
        try:
            body = join(a, fork, description, reg.sdp_address(a.peer), reg.policy.codecs)
        except SipError as exc:
            log.info("%s: the 2xx of %s cannot be used: %s", call.id, fork.peer, exc.reason)
            self._refuse_answer(fork, a)
            return
        if late_offer:
            a.awaiting_answer = lambda answer: self._relay_answer(a, fork, answer)
        a.dialog = Dialog.as_uas(a.invite, a.server_tx.to_tag)
        a.other, fork.other = fork, a
        reg.register(call, a)
        reg.register(call, fork)
        reg.answer(a, 200, body)
        call.answered = time.time()
        call.state = CallState.ANSWERED
        reg.publish_answer(call, fork)
        log.info("%s answered by %s", call.id, fork.peer)
        record_if_asked(reg, call, fork.invite.to.uri.user or "")
        settle(call, 200)

    def _refuse_answer(self, fork: Leg, a: Leg) -> None:
        """The callee's answer cannot be used: hang it up, 488 to the caller."""
        reg = self.registry
        assert a.server_tx is not None
        reg.ack(fork, b"")  # a late offer's 2xx still wants its ACK
        reg.bye(fork)
        reg.endpoint.reply(a.server_tx, 488)
        reg.end(fork.call)

    def _relay_answer(self, a: Leg, b: Leg, answer: sdp.SessionDescription) -> None:
        self.registry.ack(b, forward(a, answer, b, self.registry.sdp_address(b.peer)))


class _Responses:
    """The response handler of a fork's INVITE. Its transaction keeps it while it lingers
    (32 s after a 2xx, RFC 6026 Timer M), so it holds the fork weakly: a call that is
    over is freed at once, with its legs and media. What the INVITE still needs then is
    kept in `_Remains`: the ACK to send again for a repeated 2xx, or, for a phone that
    had not answered, its INVITE usage, to hang up on a 2xx that comes too late."""

    __slots__ = ("_fork", "_forking", "_remains")

    def __init__(self, forking: Forking, fork: Leg) -> None:
        assert fork.outgoing is not None
        self._forking = forking
        self._remains = _Remains(fork.outgoing)
        # The callback holds the remains, never this handler: no reference cycle.
        self._fork = weakref.ref(fork, self._remains.shrink)

    def __call__(self, response: Response, _tx: ClientTransaction) -> None:
        fork = self._fork()
        if fork is not None:
            self._forking.on_response(fork, response)
            return
        endpoint = self._forking.registry.endpoint
        remains = self._remains
        if remains.usage is None:
            if remains.ack and 200 <= response.status < 300:
                endpoint.send_raw(remains.ack, remains.dest)
            return
        usage = remains.usage
        for item in usage.receive(response):
            if isinstance(item, Send | Resend):
                endpoint.transmit(item)
            elif isinstance(item, Answered) and usage.dialog is not None:
                for ack in usage.ack():
                    endpoint.transmit(ack)
                endpoint.send_request(usage.dialog.create_request("BYE"), usage.dest)


class _Remains:
    __slots__ = ("ack", "dest", "usage")

    def __init__(self, usage: OutgoingInvite) -> None:
        self.usage: OutgoingInvite | None = usage
        self.dest = usage.dest
        self.ack = b""

    def shrink(self, _fork: object) -> None:
        """The fork is gone: keep of its INVITE usage only what a late response needs."""
        usage = self.usage
        if usage is None or usage.final is None:
            return  # no final response yet: a 2xx may still come, to ACK and hang up
        self.ack = usage.sent_ack
        self.usage = None
