"""The calls and dialogs in progress, the signalling every part of a call shares
(answering with 2xx reliability, ACK, CANCEL, BYE), and the one way a call ends.

`end(call)` is where every call finishes, whoever ends it: it stops what rings or
plays, lets the subscribers of `on_end` read the call while its legs are still whole
(the call record, the recording), publishes call.ended, and frees the legs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine

from ipbx.media.channel import ChannelPair
from ipbx.media.endpoint import MediaEndpoint, close_pool
from ipbx.media.ports import PortPool, PortPoolExhausted
from ipbx.pbx.call.model import (
    ALLOW,
    Call,
    CallPolicy,
    CallState,
    Leg,
    dialog_response,
)
from ipbx.pbx.call.outcome import missed, result
from ipbx.pbx.call.provisional import Provisionals
from ipbx.pbx.call.session_refresh import SessionRefresh
from ipbx.pbx.events import CALL_ANSWERED, CALL_ENDED, CALL_MISSED, CALL_STARTED, EventBus
from ipbx.pbx.location import Location
from ipbx.sip.invite import IncomingInvite, NoAck
from ipbx.sip.message import Response
from ipbx.sip.transaction import Address, ServerTransaction, make_response
from ipbx.sip.transport.alarm import Alarm
from ipbx.sip.transport.endpoint import SipEndpoint

log = logging.getLogger("ipbx.calls")


def direction(call: Call) -> str:
    if call.inbound_slot is not None:
        return "inbound"
    return "outbound" if call.route is not None else "internal"


class CallRegistry:
    def __init__(
        self,
        endpoint: SipEndpoint,
        location: Location,
        ports: PortPool[ChannelPair],
        media_address: str | None,
        policy: CallPolicy,
    ) -> None:
        self.endpoint = endpoint
        self.location = location
        self.ports = ports
        # The address our SDP carries; None: each phone's own view of us (sdp_address).
        self.media_address = media_address
        self.policy = policy
        # Where call.* events go (pbx/events.py documents their data).
        self.events = EventBus()
        # Called with a call that ends, before its legs are freed (records, recording).
        self.on_end: list[Callable[[Call], object]] = []
        self.calls: dict[str, Call] = {}
        self.dialogs: dict[tuple[str, str, str], Leg] = {}
        self.by_invite: dict[int, Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sessions = SessionRefresh(endpoint, lambda: self.policy, self.end_from_here)
        self.provisionals = Provisionals(endpoint, self._no_prack)

    def sdp_address(self, peer: Address) -> str:
        """The address the SDP sent to `peer` carries: the configured one, else ours as
        that peer reaches us (the SIP listener its messages arrive on, or the interface
        the route to it leaves by)."""
        if self.media_address is not None:
            return self.media_address
        return self.endpoint.local_address(peer).host

    def register(self, call: Call, leg: Leg) -> None:
        assert leg.dialog is not None
        self.calls[call.id] = call
        self.dialogs[leg.dialog.key] = leg
        if leg.final is not None:
            self.sessions.answered(leg, leg.final)  # a leg ipbx called: the timer of its 2xx

    # --- events ------------------------------------------------------------------------------

    def publish(self, kind: str, call: Call, **data: object) -> None:
        self.events.publish(
            kind,
            {
                "call_id": call.uid,
                "caller": call.from_number,
                "callee": call.to_number,
                "direction": direction(call),
                **data,
            },
        )

    def publish_start(self, call: Call) -> None:
        """call.started, with the caller's name when the INVITE's From showed one and
        the trunk a call from outside came in on."""
        data: dict[str, object] = {}
        if call.caller_name:
            data["caller_name"] = call.caller_name
        if call.inbound_slot is not None:
            data["trunk"] = call.inbound_slot.trunk.name
        self.publish(CALL_STARTED, call, **data)

    def publish_answer(self, call: Call, leg: Leg, joined: Call | None = None) -> None:
        """A phone took the call: a person answered it, if none had (a transfer's
        target answers a call answered already). `joined` is the phone's own call when
        it called in to take this one (a pickup, a parked call), absorbed into it: the
        extension is its caller, not the number it dialled."""
        if call.person_answered is None:
            call.person_answered = time.time()
        wait = call.person_answered - call.started
        if joined is not None:
            extension = joined.from_number
        else:
            extension = leg.invite.to.uri.user or call.to_number
        data: dict[str, object] = {"extension": extension, "wait": round(wait, 3)}
        if joined is not None:
            data["joined"] = joined.uid
        if leg.trunk is not None:
            data["trunk"] = leg.trunk.name  # the trunk that took a call out
        self.publish(CALL_ANSWERED, call, **data)

    # --- tasks -------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[object, object, None], tx: ServerTransaction) -> None:
        """Run a task that sets up the call of `tx`: if it fails, the caller still gets
        an answer (500), or it would ring until its own time-out."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(done, tx))

    def spawn_task(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _task_done(self, task: asyncio.Task[None], tx: ServerTransaction) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        log.error("call set-up failed", exc_info=task.exception())
        call = self.by_invite.get(id(tx))
        if tx.status < 200:
            self.endpoint.reply(tx, 500)
        if call is not None:
            self.hangup(call)

    # --- signalling every part shares ---------------------------------------------------------

    def answer(self, leg: Leg, status: int, body: bytes) -> None:
        """Answer the leg's INVITE (ipbx is its UAS)."""
        assert leg.server_tx is not None
        out = dialog_response(leg.invite, status, None, leg.server_tx.to_tag)
        out.headers.add("Contact", f"<{self.endpoint.contact(leg.peer)}>")
        out.headers.add("Allow", ALLOW)
        if body:
            out.body = body
            out.headers.add("Content-Type", "application/sdp")
        self.send_2xx(leg, leg.server_tx, out)

    def send_2xx(self, leg: Leg, tx: ServerTransaction, response: Response) -> None:
        """Send a 2xx to an INVITE on `leg` and, over UDP, again until the ACK comes
        (RFC 3261 §13.3.1.4; the INVITE usage keeps the schedule); no ACK: hang up."""
        if self.provisionals.hold_final(leg, lambda: self.send_2xx(leg, tx, response)):
            return  # a reliable provisional with SDP waits for its PRACK (RFC 3262 §3)
        self.provisionals.stop(leg)
        self.stop_2xx(leg)
        self.sessions.answering(leg, tx.request, response)
        if response.body:
            leg.local_sdp = response.body
        loop = self.endpoint.loop
        usage = leg.incoming = IncomingInvite(tx, self.endpoint.layer.timers)
        for item in usage.accept(response, loop.time()):
            self.endpoint.transmit(item)
        if leg.alarm is None:
            leg.alarm = Alarm(loop, lambda now: self._resend_2xx(leg, now))
        leg.alarm.set(usage.next_deadline())

    def _resend_2xx(self, leg: Leg, now: float) -> None:
        usage = leg.incoming
        if usage is None or leg.alarm is None:
            return
        for item in usage.expire(now):
            if isinstance(item, NoAck):
                log.info("%s: no ACK for 2xx from %s", leg.call.id, leg.peer)
                self.hangup(leg.call)
                return
            self.endpoint.transmit(item)
        leg.alarm.set(usage.next_deadline())

    def stop_2xx(self, leg: Leg) -> None:
        """The 2xx on `leg` needs sending no more (ACKed, or the leg is done)."""
        if leg.alarm is not None:
            leg.alarm.cancel()

    def accept_reoffer(self, leg: Leg, tx: ServerTransaction, body: bytes) -> None:
        """200 to a re-INVITE or UPDATE on `leg`, with our answer to its offer, if any."""
        out = make_response(tx.request, 200, None, tx.to_tag)
        out.body = body
        if body:
            out.headers.add("Content-Type", "application/sdp")
        out.headers.add("Contact", f"<{self.endpoint.contact(leg.peer)}>")
        if tx.is_invite:
            self.send_2xx(leg, tx, out)
        else:
            self.sessions.answering(leg, tx.request, out)
            if body:
                leg.local_sdp = body
            self.endpoint.respond(tx, out)

    def ack(self, leg: Leg, body: bytes) -> None:
        """ACK the 2xx to a late offer ipbx sent on `leg`, with the answer (a 2xx to an
        offer was ACKed as it came)."""
        assert leg.outgoing is not None
        for item in leg.outgoing.ack(body):
            self.endpoint.transmit(item)

    def bye(self, leg: Leg) -> None:
        assert leg.dialog is not None
        self.endpoint.send_request(leg.dialog.create_request("BYE"), leg.peer)

    def cancel_fork(self, fork: Leg) -> None:
        """Stop a phone ringing: CANCEL, once it has sent a provisional response (§9.1)."""
        if fork.outgoing is not None:
            for item in fork.outgoing.cancel():
                self.endpoint.transmit(item)

    def stop_ring_timer(self, call: Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    # --- ending ------------------------------------------------------------------------------

    def refuse(self, call: Call, status: int) -> None:
        """Nobody took the call: the caller's INVITE gets `status` and the call ends."""
        a = call.caller
        assert a is not None and a.server_tx is not None
        log.info("%s failed: %d", call.id, status)
        call.status = status
        self.endpoint.reply(a.server_tx, status)
        self.end(call)

    def _no_prack(self, leg: Leg, status: int) -> None:
        """The caller never acknowledged our reliable provisional: `status` to its
        INVITE, and a BYE to a callee that answered meanwhile (its 2xx was waiting)."""
        callee = leg.call.callee
        if callee is not None and callee.dialog is not None:
            self.bye(callee)
        self.refuse(leg.call, status)

    async def open_media(self, tx: ServerTransaction) -> MediaEndpoint | None:
        """A media endpoint for the call `tx` sets up; None when the RTP port range is
        exhausted, and then the caller has its 503."""
        try:
            return await MediaEndpoint.open(self.ports)
        except PortPoolExhausted:
            log.warning("RTP port range exhausted: call refused")
            self.endpoint.reply(tx, 503, headers=[("Retry-After", "5")])
            return None

    def retire(self, leg: Leg) -> None:
        """Take a leg out of its call: BYE its phone and free its media (and the trunk
        channel it held)."""
        if leg.dialog is not None:
            self.bye(leg)
            self.dialogs.pop(leg.dialog.key, None)
        self.stop_2xx(leg)
        self.sessions.stop(leg)
        leg.alarm = None
        leg.other = None
        leg.media.close()
        if leg.trunk_slot is not None:
            leg.trunk_slot.release()

    def end_from_here(self, leg: Leg, reason: str) -> None:
        """ipbx ends `leg`'s answered call itself, for `reason` (the call record's
        end_reason): a BYE to both phones."""
        leg.call.end_reason = reason
        self.hangup(leg.call)

    def hangup(self, call: Call) -> None:
        """End an established call from our side: BYE to every leg with a dialog."""
        for leg in (call.caller, call.callee):
            if leg is not None and leg.dialog is not None:
                self.bye(leg)
        self.end(call)

    def end(self, call: Call) -> None:
        if call.ended:
            return
        call.state = CallState.ENDED
        self.stop_ring_timer(call)
        if call.music is not None:
            call.music.cancel()
            call.music = None
        for leg in (call.caller, call.callee):
            if leg is not None:
                # The bridge stops (from a media worker too: the record reads its counts).
                leg.media.detach()
        if call.app_task is not None and call.app_task is not asyncio.current_task():
            call.app_task.cancel()
        for fork in call.forks:
            if fork is not call.callee:
                self.cancel_fork(fork)
        self.calls.pop(call.id, None)
        if call.caller is not None or call.placed:
            for subscriber in self.on_end:
                subscriber(call)
            ended = result(call)
            talked = time.time() - call.answered if call.answered is not None else 0.0
            self.publish(CALL_ENDED, call, result=ended, duration=round(talked, 3))
            if missed(ended) and not call.placed:
                self.publish(CALL_MISSED, call, extension=call.to_number, result=ended)
        if call.outcome is not None and not call.outcome.done():
            call.outcome.cancel()
        closed: set[int] = set()
        for leg in (call.caller, call.callee, *call.forks):
            if leg is None:
                continue
            self.stop_2xx(leg)
            self.sessions.stop(leg)
            self.provisionals.stop(leg)
            if leg.dialog is not None:
                self.dialogs.pop(leg.dialog.key, None)
            if leg.server_tx is not None:
                self.by_invite.pop(id(leg.server_tx), None)
            if id(leg.media) not in closed:
                closed.add(id(leg.media))
                leg.media.close()
            if leg.trunk_slot is not None:
                leg.trunk_slot.release()
            leg.other = None
            leg.awaiting_answer = None
            leg.incoming = None
            leg.alarm = None  # its callback refers to the leg: no cycle left behind
        if call.far_media is not None:
            call.far_media.close()  # opened for a trunk attempt that never came
        if call.inbound_slot is not None:
            call.inbound_slot.release()
        # Legs point at their call: drop the references back so that the call is freed
        # by reference counting, not left for the cyclic collector.
        call.caller = call.callee = None
        call.forks = []
        call.far_media = None

    def close(self) -> None:
        """End every call from our side and close the media sockets (at shutdown)."""
        for call in list(self.calls.values()):
            self.hangup(call)
        close_pool(self.ports)
