"""Session timers on the legs of calls (RFC 4028; the rules are sans-I/O in
sip/session_timer.py). Each leg is its own dialog and negotiates its own timer: as the
UAS of the caller's INVITE, ipbx honours the interval and refresher the phone asks for
(422 below `sip.min_se`); as the UAC of a callee's INVITE it asks for
`sip.session_expires` and leaves the refreshing to the callee, which may take it or hand
it back.

On a leg where ipbx refreshes, it sends an UPDATE at half the interval when the phone
allows UPDATE (RFC 3311), else a re-INVITE that offers again, unchanged, the SDP it last
sent (RFC 3264 §8). A leg whose session is not refreshed in time, or whose refresh is
answered 408 or 481, ends its call: a BYE to both phones, and the call record says
`session_expired`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from ipbx.pbx.call.model import CallPolicy, Leg
from ipbx.sip.message import Request, Response
from ipbx.sip.session_timer import (
    TIMER,
    Negotiated,
    RefreshDue,
    SessionTimer,
    answer_request,
    check_interval,
    option_tags,
    read_answer,
    request_fields,
)
from ipbx.sip.transport.alarm import Alarm
from ipbx.sip.transport.endpoint import SipEndpoint

log = logging.getLogger("ipbx.calls")

SESSION_EXPIRED = "session_expired"
_REFRESHED_BY = ("INVITE", "UPDATE")


def _allows_update(msg: Request | Response) -> bool:
    return "update" in option_tags(msg, "Allow")


class SessionRefresh:
    def __init__(
        self,
        endpoint: SipEndpoint,
        policy: Callable[[], CallPolicy],
        end: Callable[[Leg, str], None],
    ) -> None:
        self.endpoint = endpoint
        self._policy = policy
        # Ends the leg's call from our side (a BYE to both phones), with its reason.
        self._end = end

    # --- negotiation ----------------------------------------------------------------------------

    def check(self, request: Request) -> None:
        """Raise 422 (IntervalTooSmall) for an INVITE or UPDATE asking for too short an
        interval."""
        if request.method in _REFRESHED_BY:
            check_interval(request, self._policy().min_se)

    def request_fields(self) -> list[tuple[str, str]]:
        """The fields of an INVITE ipbx sends (which says `timer` in Supported): a timer
        asked for, the refresher left to the callee."""
        policy = self._policy()
        return request_fields(policy.session_expires, policy.min_se, "uas")

    def fields_for(self, leg: Leg) -> list[tuple[str, str]]:
        """The fields of a re-INVITE or UPDATE ipbx sends on `leg` (a refresh, or one it
        relays): the leg's timer as it stands, so that its 2xx keeps it (§7.4)."""
        timer = leg.session_timer
        if timer is None:
            return []
        refresher = "uac" if timer.we_refresh else "uas"
        fields = request_fields(timer.negotiated.interval, self._policy().min_se, refresher)
        return [("Supported", TIMER), *fields]

    def answering(self, leg: Leg, request: Request, response: Response) -> None:
        """Our 2xx to an INVITE or UPDATE from `leg`'s phone: the timer's fields go into
        it, and the leg's timer starts again."""
        if request.method not in _REFRESHED_BY:
            return
        policy = self._policy()
        negotiated, fields = answer_request(request, policy.min_se, policy.session_expires)
        for name, value in [("Supported", TIMER), *fields]:
            response.headers.set(name, value)
        self._refreshed(leg, negotiated, _allows_update(request))

    def answered(self, leg: Leg, response: Response) -> None:
        """A 2xx from `leg`'s phone to an INVITE or UPDATE ipbx sent it."""
        if response.cseq.method not in _REFRESHED_BY or not 200 <= response.status < 300:
            return
        negotiated = read_answer(response)
        if negotiated is None:
            timer = leg.session_timer
            if timer is None or TIMER in option_tags(response, "Supported"):
                self.stop(leg)  # the phone wants no timer (RFC 4028 §7.2)
                return
            # A phone that knows nothing of timers answered our refresh as any
            # re-INVITE: ipbx keeps refreshing on its own (RFC 4028 §3).
            negotiated = timer.negotiated
        self._refreshed(leg, negotiated, _allows_update(response))

    def _refreshed(self, leg: Leg, negotiated: Negotiated, allows_update: bool) -> None:
        now = self.endpoint.loop.time()
        timer = leg.session_timer
        if timer is None:
            timer = leg.session_timer = SessionTimer(negotiated, now)
            leg.session_alarm = Alarm(self.endpoint.loop, lambda when: self._ring(leg, when))
        else:
            timer.refreshed(negotiated, now)
        timer.peer_allows_update = timer.peer_allows_update or allows_update
        assert leg.session_alarm is not None
        leg.session_alarm.set(timer.next_deadline())

    def stop(self, leg: Leg) -> None:
        """The leg is done (or wants no timer): no more refreshes nor expiry."""
        if leg.session_alarm is not None:
            leg.session_alarm.cancel()
        leg.session_timer = leg.session_alarm = None

    # --- keeping time ---------------------------------------------------------------------------

    def _ring(self, leg: Leg, now: float) -> None:
        timer = leg.session_timer
        if timer is None or leg.dialog is None or leg.call.ended:
            return
        for due in timer.expire(now):
            if isinstance(due, RefreshDue):
                self._refresh(leg, timer)
            else:
                log.warning("%s: session with %s not refreshed in %d s (RFC 4028); hanging up",
                            leg.call.id, leg.peer, timer.negotiated.interval)  # fmt: skip
                self._end(leg, SESSION_EXPIRED)
                return
        if leg.session_timer is timer and leg.session_alarm is not None:
            leg.session_alarm.set(timer.next_deadline())

    def _refresh(self, leg: Leg, timer: SessionTimer) -> None:
        assert leg.dialog is not None
        method = "UPDATE" if timer.peer_allows_update else "INVITE"
        body = b"" if method == "UPDATE" else leg.local_sdp or leg.invite.body
        extra = [("Contact", f"<{self.endpoint.contact(leg.peer)}>"), *self.fields_for(leg)]
        request = leg.dialog.create_request(method, body, "application/sdp", extra)
        log.debug("%s: session refresh (%s) to %s", leg.call.id, method, leg.peer)
        self.endpoint.send_request(
            request, leg.peer, lambda response, _tx: self._refresh_answered(leg, request, response)
        )

    def _refresh_answered(self, leg: Leg, request: Request, response: Response) -> None:
        if response.status < 200 or leg.dialog is None or leg.call.ended:
            return
        leg.dialog.receive_response(response)
        if request.method == "INVITE" and response.status < 300:
            self.endpoint.send_ack(leg.dialog.create_ack(request.cseq.number), leg.peer)
        if response.status < 300:
            self.answered(leg, response)
        elif response.status in (408, 481):
            # RFC 4028 §10: the session is gone at the far end (or the way there).
            log.warning("%s: session refresh to %s failed: %d; hanging up",
                        leg.call.id, leg.peer, response.status)  # fmt: skip
            self._end(leg, SESSION_EXPIRED)
        elif response.status == 491 and leg.session_timer is not None:
            # Glare with the phone's own re-INVITE: again in 2.1 to 4 s (RFC 3261 §14.1).
            leg.session_timer.refresh_again(self.endpoint.loop.time() + random.uniform(2.1, 4.0))
            if leg.session_alarm is not None:
                leg.session_alarm.set(leg.session_timer.next_deadline())
        else:
            log.info("%s: session refresh to %s answered %d; the session expires unless "
                     "refreshed", leg.call.id, leg.peer, response.status)  # fmt: skip
