"""Dialing: ipbx rings phones (and, through trunk.py, outside numbers) with its own
offer, for a party it holds: a call flow's caller (Session.dial, ring groups, queues), a
transferee, a click-to-call agent. Whoever answers first is bridged to that party; the
others are cancelled (the forks themselves are fork.py's). A browser is offered WebRTC,
on an endpoint of its own (ring_media.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ipbx import sdp
from ipbx.media.bridge import connect
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPoolExhausted
from ipbx.pbx.call.fork import AnswerHook, Forking, callee_invite, identity
from ipbx.pbx.call.model import Call, CallState, Leg, best_failure, parse_sdp
from ipbx.pbx.call.negotiate import answered, offer_for
from ipbx.pbx.call.recording import record_if_asked
from ipbx.pbx.call.ring_media import endpoints_for, keep_answering_media, release
from ipbx.pbx.events import CALL_RINGING
from ipbx.pbx.location import Binding
from ipbx.sip.errors import SipError
from ipbx.sip.message import Response

log = logging.getLogger("ipbx.calls")


class Dialing:
    def __init__(self, forking: Forking) -> None:
        self.forking = forking
        self.registry = forking.registry
        forking.on_dial_answer = self._answered
        forking.on_dial_refused = self.over

    async def dial(
        self,
        call: Call,
        extensions: list[str],
        timeout: float,
        keep: Leg | None = None,
        on_answer: AnswerHook | None = None,
    ) -> int:
        """Ring every reachable contact of `extensions` with our own offer; on answer,
        bridge the phone to `keep` (the caller, whom we answered, unless told otherwise).
        The final status (200 answered); `on_answer` as `dial_with` says."""
        bindings = self.reachable(extensions)
        if not bindings:
            return 480

        async def ring() -> None:
            await self.ring_phones(call, bindings)

        return await self.dial_with(call, ring, timeout, keep, on_answer)

    def reachable(self, extensions: list[str]) -> list[tuple[str, Binding]]:
        """The reachable contacts of `extensions`, with the extension of each."""
        now = time.time()
        location = self.registry.location
        return [(n, b) for n in extensions for b in location.reachable(n, now)]

    async def ring_phones(self, call: Call, bindings: list[tuple[str, Binding]]) -> None:
        """Send our offer to these contacts, inside `dial_with`: each with our address as
        that phone reaches us, a browser's as WebRTC on an endpoint of its own."""
        reg, a = self.registry, call.keep
        assert call.far_media is not None
        endpoints = await endpoints_for(reg.ports, call, [b for _, b in bindings], call.far_media)
        if call.ended:
            return
        for number in dict.fromkeys(n for n, _ in bindings):
            reg.publish(CALL_RINGING, call, extension=number)
        for (number, binding), media in zip(bindings, endpoints, strict=True):
            if media is None:
                continue
            max_forwards = a.invite.max_forwards if a is not None else None
            dest = binding.destination(reg.endpoint.connected)
            address = reg.sdp_address(dest)
            body = bytes(sdp.make_offer(address, media.local_address[1], reg.policy.codecs))
            if binding.browser:
                body = offer_for(body, media, address, browser=True)
            invite = callee_invite(
                reg, call, max_forwards, identity(call, a), number, binding.uri, dest, body
            )
            self.forking.send(Leg(call, dest, media, invite, behind_nat=binding.behind_nat))

    async def dial_with(
        self,
        call: Call,
        ring: Callable[[], Awaitable[None]],
        timeout: float,
        keep: Leg | None = None,
        on_answer: AnswerHook | None = None,
    ) -> int:
        """Offer our own SDP (on `call.far_media`, each phone and trunk its own: with our
        address as it reaches us) to whoever `ring` sends INVITEs to (phones, or a
        route's trunks); the one that answers is bridged to `keep` (the caller unless
        told otherwise), or becomes the call's caller when it has none yet. The final
        status (200 answered, 480 when `timeout` ran out first).

        The first of the answer and the time-out ends the dial: a phone that answers
        after it is hung up, as one that answers after another did. `on_answer` is given
        the answering leg in the very turn its 200 OK is read, before the caller's BYE
        read in the next can end the call (and cancel the coroutine awaiting this)."""
        reg = self.registry
        call.keep = keep or call.caller
        try:
            media = await MediaEndpoint.open(reg.ports)
        except PortPoolExhausted:
            call.keep = None
            return 503
        call.far_media = media
        call.forks = []
        loop = asyncio.get_running_loop()
        dialing: asyncio.Future[int] = loop.create_future()
        call.dialing = dialing
        call.on_answer = on_answer
        timer: asyncio.TimerHandle | None = None
        try:
            await ring()
            # Not asyncio.wait_for: on 3.11 it returns a result that came in the same
            # turn as the cancellation of its task (the call ended), and the call flow
            # goes on after its call; and its own time-out may lose an answer read in
            # the turn the time-out fell in. Shielded: the call's end cancels the flow,
            # and the dial still rings as the call record reads it (outcome.py).
            timer = loop.call_later(timeout, self._timeout, call, dialing)
            return await asyncio.shield(dialing)
        finally:
            if timer is not None:
                timer.cancel()
            call.dialing = None
            call.keep = None
            call.on_answer = None
            call.outside = []  # a late failure tries no further trunk
            if call.far_media is media:
                media.close()
                call.far_media = None
                # A new dial gets a new dialog: another Call-ID and From tag.
                call.new_far_dialog()
            for fork in call.forks:
                release(fork)

    def _timeout(self, call: Call, dialing: asyncio.Future[int]) -> None:
        """Nobody answered in time: the dial is over (480) and the phones still ringing
        are cancelled; one whose 200 OK crosses the CANCEL is hung up (`Forking._answered`)."""
        if dialing.done():
            return
        dialing.set_result(480)
        for fork in call.forks:
            self.registry.cancel_fork(fork)

    def over(self, call: Call) -> None:
        """Whoever `dial_with` rang may all have refused: when every phone has and no
        outside number is still being tried, the dial ends with the best failure."""
        assert call.dialing is not None
        phones = [f.final for f in call.forks if f.trunk is None]
        if call.dialing.done() or any(final is None for final in phones):
            return
        statuses = [o.status for o in call.outside]
        if any(status is None for status in statuses):
            return
        finals = [final.status for final in phones if final is not None]
        call.dialing.set_result(best_failure(finals + [s for s in statuses if s is not None]))

    def _answered(self, fork: Leg, response: Response) -> None:
        """A phone `dial` rang answered: bridge it to the leg it was rung for (or, for
        a call ipbx originates, it becomes the call's first party)."""
        reg = self.registry
        call, a = fork.call, fork.call.keep or fork.call.caller
        assert fork.dialog is not None and call.dialing is not None
        if not self._take_answer(fork, parse_sdp(response), a):
            reg.bye(fork)
            call.dialing.set_result(488)
            return
        for other in call.forks:
            if other is not fork:
                reg.cancel_fork(other)
        if a is None:
            call.caller = fork
            keep_answering_media(call)
            call.forks = []
            reg.register(call, fork)
            log.info("%s: %s answered; calling %s", call.id, fork.peer, call.to_number)
            call.dialing.set_result(200)
            return
        call.caller, call.callee = a, fork
        a.other, fork.other = fork, a
        reg.register(call, fork)
        connect(a.media, fork.media)
        keep_answering_media(call)
        call.state = CallState.ANSWERED
        if call.answered is None:
            call.answered = time.time()  # a call ipbx placed: both parties answered now
        reg.publish_answer(call, fork)
        log.info("%s answered by %s (from a call flow)", call.id, fork.peer)
        record_if_asked(reg, call, fork.invite.to.uri.user or "")
        if call.on_answer is not None:
            call.on_answer(fork)
        call.dialing.set_result(200)

    def _take_answer(
        self, fork: Leg, description: sdp.SessionDescription | None, a: Leg | None
    ) -> bool:
        """The answer of a phone `dial` rang to our offer, applied to its leg; False when
        there is none we can use (or nothing to bridge it to: `a` has no codec)."""
        if description is None or (a is not None and a.media.codec is None):
            return False
        try:
            answered(fork, description, self.registry.policy.codecs)
        except (sdp.SdpError, SipError) as exc:
            log.info("%s: unusable answer from %s: %s", fork.call.id, fork.peer, exc)
            return False
        return True
