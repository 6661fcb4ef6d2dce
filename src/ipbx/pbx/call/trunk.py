"""Calls out through trunks: the route's trunks one at a time, in order (failover),
each attempt a new dialog, a provider's digest challenge answered once per attempt.

A trunk that times out or fails on its side (5xx, 503 overloaded, 408) is no reason to
give up: the next trunk may carry the call, as a proxy tries its next target (RFC 3261
§16.7). Any other failure is the callee's answer, and the caller gets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ipbx import sdp
from ipbx.pbx.call.dial import Dialing
from ipbx.pbx.call.fork import AnswerHook, outgoing_invite, settle
from ipbx.pbx.call.model import Call, CallState, Leg, OutsideCall, best_failure
from ipbx.pbx.call.negotiate import offer_for
from ipbx.pbx.dialplan import OutboundCall
from ipbx.pbx.trunks import Trunk, Trunks
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.transaction import Address

log = logging.getLogger("ipbx.calls")

# The status the caller gets when no trunk of the route could even be tried.
NO_TRUNK = 503


# How a number that is no extension goes out, as the router's outbound routes say:
# (number, the extension whose outbound permission applies (None: the PBX's own, any
# route), the number calling) -> the route and the caller ID shown; SipError 403 or 404
# when it cannot go out.
OutsideRoute = Callable[[str, str | None, str], tuple[OutboundCall, str]]


def _try_next_trunk(status: int) -> bool:
    return status == 408 or 500 <= status < 600


def _no_routes(number: str, by: str | None, caller: str) -> tuple[OutboundCall, str]:
    raise SipError(404, f"no outbound route for {number}")


class TrunkDialing:
    def __init__(self, dialing: Dialing, trunks: Trunks) -> None:
        self.dialing = dialing
        self.forking = forking = dialing.forking
        self.registry = forking.registry
        self.trunks = trunks
        forking.on_trunk_failure = self._on_failure
        # The router's outbound routes (set by the router: the engine never imports it).
        self.outside: OutsideRoute = _no_routes

    async def dial_out(self, call: Call, caller_id: str) -> None:
        """Out through the trunks of `call.route`, after `Forking.setup`; `call.outcome`
        says how it ended."""
        assert call.route is not None
        call.state = CallState.RINGING
        await self.start(call, call.route, caller_id)

    async def start(self, call: Call, route: OutboundCall, caller_id: str) -> None:
        """Call the outside number of `route` through its trunks, beside whatever else
        the call rings (on `call.far_media`, the far side's)."""
        outside = OutsideCall(route, caller_id, self.trunks.candidates(route.trunks))
        call.outside.append(outside)
        await self._next_trunk(call, outside)

    async def dial(
        self,
        call: Call,
        route: OutboundCall,
        caller_id: str,
        timeout: float,
        keep: Leg | None = None,
    ) -> int:
        """Out through `route`'s trunks with ipbx's own offer, for a party ipbx holds (a
        call flow's caller, a transferee, a click-to-call agent), as `Dialing.dial`
        rings phones: the trunk that answers is bridged to `keep` (the caller unless
        told otherwise). A call with no party yet (ipbx places it: an invitation into
        a conference room) gets the trunk's leg as its caller. The final status (200
        answered)."""
        call.route = route
        return await self.dialing.dial_with(
            call, lambda: self.start(call, route, caller_id), timeout, keep
        )

    async def ring_all(
        self,
        call: Call,
        extensions: list[str],
        outside: list[tuple[OutboundCall, str]],
        timeout: float,
        on_answer: AnswerHook | None = None,
    ) -> int:
        """Ring `extensions`' phones and call the `outside` numbers (route, caller ID)
        at once, with ipbx's own offer, for the caller a call flow holds (a ring group);
        whoever answers first is bridged to it. The final status (200 answered);
        `on_answer` as `Dialing.dial_with` says."""
        bindings = self.dialing.reachable(extensions)
        if not bindings and not outside:
            return 480

        async def ring() -> None:
            await self.dialing.ring_phones(call, bindings)
            for route, caller_id in outside:
                await self.start(call, route, caller_id)

        return await self.dialing.dial_with(call, ring, timeout, on_answer=on_answer)

    async def _next_trunk(self, call: Call, outside: OutsideCall) -> None:
        route = outside.route
        a = call.keep or call.caller
        while outside.trunks_left and not call.ended and outside in call.outside:
            trunk = outside.trunks_left.pop(0)
            slot = trunk.acquire()
            if slot is None:
                log.info("%s: trunk %s is at its channel limit", call.id, trunk.name)
                continue
            targets = await trunk.targets()
            if call.ended or not targets or call.far_media is None:
                slot.release()
                continue
            if call.forks:
                call.new_far_dialog()
            invite = self._invite(call, a, trunk, targets[0], outside)
            fork = Leg(call, targets[0], call.far_media, invite, trunk=trunk, trunk_slot=slot,
                       outside=outside)  # fmt: skip
            log.info("%s: %s -> %s via trunk %s", call.id, call.from_number, route.number,
                     trunk.name)  # fmt: skip
            # A provider's digest challenge is answered once (again if the nonce was
            # only stale, RFC 7616 §3.3), by the INVITE usage.
            self.forking.send(fork, trunk.answer_challenge)
            return
        if call.ended or outside not in call.outside:
            return
        if not outside.failures:
            log.info("%s: no trunk of route %s can take the call", call.id, route.route)
        self._failed(call, outside)

    def _failed(self, call: Call, outside: OutsideCall) -> None:
        """No trunk took the outside number: its best failure, for whoever awaits."""
        statuses = [r.status for r in outside.failures]
        outside.status = best_failure(statuses) if statuses else NO_TRUNK
        if call.dialing is None:
            settle(call, outside.status)
        else:
            self.dialing.over(call)

    def _invite(
        self,
        call: Call,
        a: Leg | None,
        trunk: Trunk,
        dest: Address,
        outside: OutsideCall,
    ) -> Request:
        """The INVITE to `trunk` for the party `a` (None: for nobody yet, the trunk's
        leg will be the call's caller)."""
        reg, route, media = self.registry, outside.route, call.far_media
        assert media is not None
        uri = trunk.request_uri(route.number)
        identity = trunk.caller_headers(outside.caller_id, a.invite.from_.name if a else None)
        from_ = f"{identity[0][1]};tag={call.b_tag}"
        to = f"<sip:{route.number}@{trunk.domain}>"
        # Our address as the provider reaches us (the listener it talks to).
        address = reg.sdp_address(dest)
        if call.dialing is not None:  # ipbx dials (dial.py): its own offer
            body = bytes(sdp.make_offer(address, media.local_address[1], reg.policy.codecs))
        else:  # the caller's offer (none: a late offer, the trunk offers in its 2xx)
            body = call.far_body and offer_for(call.far_body, media, address)
        max_forwards = a.invite.max_forwards if a else None
        return outgoing_invite(reg, call, max_forwards, uri, from_, to, dest, body, identity[1:])

    def _on_failure(self, fork: Leg, response: Response) -> None:
        """A trunk refused: try the next trunk when the failure is on the provider's
        side, else the outside number has failed with the refusal."""
        call, trunk, outside = fork.call, fork.trunk, fork.outside
        assert trunk is not None and fork.trunk_slot is not None and outside is not None
        status = response.status
        fork.trunk_slot.release()
        if call.ended or outside not in call.outside:
            return
        if call.callee is not None and call.dialing is None:
            return
        if status in (401, 407):
            # The provider refused the trunk's credentials (or wants some it has none
            # of): the trunk's fault, so try the next one. Relayed, the challenge would
            # ask the caller for credentials it cannot have, and without the
            # Proxy-Authenticate RFC 3261 §21.4.8 requires of a 407.
            log.warning("%s: trunk %s refused its credentials (%d %s)", call.id, trunk.name,
                        status, response.reason)  # fmt: skip
            status = 503
            response = Response(Headers(), b"", status, "Trunk authentication failed")
        outside.failures.append(response)
        if _try_next_trunk(status) and outside.trunks_left:
            log.info("%s: trunk %s answered %d; trying the next", call.id, trunk.name, status)
            a = call.caller
            if call.dialing is None and a is not None and a.server_tx is not None:
                self.registry.spawn(self._next_trunk(call, outside), a.server_tx)
            else:
                self.registry.spawn_task(self._next_trunk(call, outside))
            return
        log.info("%s: trunk %s answered %d", call.id, trunk.name, status)
        self._failed(call, outside)
