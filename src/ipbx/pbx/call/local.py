"""Legs ipbx answers itself: call flows (IVR, voicemail, announcements ...; their verbs
are in pbx/session.py) and the echo test. Media on such a leg is terminated here, not
bridged: ipbx answers the phone's offer with its own, or offers in the 2xx when the
INVITE came without SDP (RFC 3264 late offer; the ACK brings the answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from ipbx import sdp
from ipbx.media.codecs import AUDIO_CODECS, Codec
from ipbx.media.dtmf import info_digit
from ipbx.pbx.call.model import Call, CallState, Incoming, Leg, new_call_id, parse_sdp
from ipbx.pbx.call.negotiate import answer, answered
from ipbx.pbx.call.registry import CallRegistry
from ipbx.sip.dialog import Dialog
from ipbx.sip.message import Request
from ipbx.sip.transaction import ServerTransaction

log = logging.getLogger("ipbx.calls")

App = Callable[[Leg], Awaitable[None]]


class CallEnded(Exception):
    """The call a flow runs on has ended under it (its phone's offer was unusable)."""


class CallFlows:
    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry

    async def echo(self, incoming: Incoming, caller: str, number: str) -> None:
        """The echo test: what the caller sends comes back to it."""
        reg = self.registry
        request, source, tx, offer = incoming
        media = await reg.open_media(tx)
        if media is None:
            return
        call = Call(new_call_id(), caller, number)
        leg = Leg(call, source, media, request, server_tx=tx, offer=offer)
        media.on_dtmf = call.digits.append
        call.caller = leg
        reg.calls[call.id] = call
        if self.answer(leg, echo=True):
            log.info("%s echo test for %s", call.id, source)

    def answer(self, leg: Leg, echo: bool = False, wideband: bool = False) -> bool:
        """Answer the caller's INVITE ourselves: our answer to its offer, or our offer in
        the 2xx for a late offer (the ACK answers). The offer's G.711 is taken first
        (prompts, music and digits cost least in it), any other codec ipbx terminates
        when it has none, and with `wideband` (a conference) our order of preference
        from the start. False when its offer is unusable (the INVITE got the error and
        the call ended)."""
        reg = self.registry
        call, tx = leg.call, leg.server_tx
        assert tx is not None
        if leg.offer is None:
            port = leg.media.local_address[1]
            body = sdp.make_offer(reg.sdp_address(leg.peer), port, AUDIO_CODECS)
            leg.awaiting_answer = lambda theirs: self._late_answer(leg, theirs, echo)
        else:
            try:
                preferred = reg.policy.codecs if wideband else AUDIO_CODECS
                codecs = self._codecs(preferred)
                body = answer(leg, leg.offer, reg.sdp_address(leg.peer), codecs)
            except sdp.SdpError as exc:
                reg.endpoint.reply(tx, exc.status_code)
                reg.end(call)
                return False
            if echo:
                leg.media.echo()
        leg.dialog = Dialog.as_uas(leg.invite, tx.to_tag)
        reg.by_invite.pop(id(tx), None)
        reg.register(call, leg)
        call.answered = time.time()
        call.state = CallState.ANSWERED
        reg.answer(leg, 200, bytes(body))
        return True

    def _codecs(self, preferred: Sequence[Codec]) -> tuple[Codec, ...]:
        """What ipbx terminates (media.codecs, in its order), those in `preferred` first."""
        order = [(codec.name.lower(), codec.clock_rate) for codec in preferred]

        def rank(codec: Codec) -> int:
            key = (codec.name.lower(), codec.clock_rate)
            return order.index(key) if key in order else len(order)

        return tuple(sorted(self.registry.policy.codecs, key=rank))

    def _late_answer(self, leg: Leg, description: sdp.SessionDescription, echo: bool) -> None:
        """The ACK brought the phone's answer to the offer in our 2xx (late offer)."""
        answered(leg, description, AUDIO_CODECS)
        if echo:
            leg.media.echo()

    def start(self, call: Call, incoming: Incoming, app: App) -> None:
        """Run a call flow for a new call (`begin`, in a task of its own)."""
        self.registry.spawn(self.begin(call, incoming, app), incoming.tx)

    async def begin(self, call: Call, incoming: Incoming, app: App) -> None:
        """A call flow takes a new call: its leg gets a media endpoint, the app answers
        it (or not) with the verbs of session.py."""
        reg = self.registry
        request, source, tx, offer = incoming
        media = await reg.open_media(tx)
        if media is None:
            reg.end(call)
            return
        leg = Leg(call, source, media, request, server_tx=tx, offer=offer)
        call.caller = leg
        reg.calls[call.id] = call
        reg.by_invite[id(tx)] = call
        reg.publish_start(call)
        await self.run(call, leg, app)

    async def run(self, call: Call, leg: Leg, app: App) -> None:
        call.app_task = asyncio.current_task()
        try:
            await app(leg)
        except CallEnded:
            return
        finally:
            call.app_task = None
        if not call.ended and call.callee is None:
            self.hangup(call, 603)

    def take_over(self, call: Call) -> None:
        """The phones did not take the call: a call flow takes the caller's leg instead
        (voicemail, a forward), on the media endpoint it already has."""
        a = call.caller
        assert a is not None
        self.registry.stop_ring_timer(call)
        if call.far_media is not None:
            call.far_media.close()
            call.far_media = None
        call.forks = []
        call.rang = None
        call.new_far_dialog()
        a.media.detach()

    def hangup(self, call: Call, status: int) -> None:
        """The app is done with the caller: BYE once answered, `status` before."""
        if call.ended:
            return
        a = call.caller
        if a is not None and a.dialog is None and a.server_tx is not None:
            call.status = status
            self.registry.endpoint.reply(a.server_tx, status)
            self.registry.end(call)
        else:
            self.registry.hangup(call)

    def refresh(self, leg: Leg, request: Request, tx: ServerTransaction) -> None:
        """A re-INVITE or UPDATE on a leg ipbx answered: our own answer."""
        reg = self.registry
        description = parse_sdp(request)
        body = b""
        if description is not None:
            # The codec in use stays while the new offer holds it.
            current = () if leg.media.codec is None else (leg.media.codec,)
            codecs = self._codecs((*current, *AUDIO_CODECS))
            body = bytes(answer(leg, description, reg.sdp_address(leg.peer), codecs))
            if leg.call.app_task is None:
                leg.media.echo()  # the echo test keeps echoing; a call flow's leg stays ours
            leg.direction = sdp.direction(description)
        reg.accept_reoffer(leg, tx, body)

    def info(self, leg: Leg, request: Request) -> None:
        """SIP INFO with application/dtmf-relay (the Cisco format most phones send) or
        application/dtmf on a leg ipbx terminates: the same digit event as RFC 4733 and
        in-band tones."""
        digit = info_digit(request.headers.get("Content-Type") or "", request.body)
        if digit is not None and leg.media.on_dtmf is not None:
            leg.media.on_dtmf(digit)
