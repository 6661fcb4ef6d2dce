"""Provisional responses to a caller (ringing, early media), sent reliably when its
INVITE says `Require: 100rel` (RFC 3262; the rules are sans-I/O in sip/prack.py).

The caller's PRACK arrives in the early dialog, before the call is answered, and gets
its 200 here (also when a 2xx without SDP overtook it); a 2xx that would overtake an
unacknowledged provisional with SDP waits for its PRACK. A caller that sends no PRACK
in 64*T1 gets 500 and the call ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ipbx.pbx.call.model import Leg
from ipbx.sip.dialog import dialog_key_of
from ipbx.sip.invite import Respond
from ipbx.sip.message import Request, Response
from ipbx.sip.prack import ReliableProvisionals, wants_reliable
from ipbx.sip.transaction import ServerTransaction
from ipbx.sip.transport.alarm import Alarm
from ipbx.sip.transport.endpoint import SipEndpoint

log = logging.getLogger("ipbx.calls")

Key = tuple[str, str, str]


class _Early:
    """A caller's reliable provisionals, the alarm that resends them, and a 2xx that
    waits for a PRACK."""

    __slots__ = ("alarm", "final", "leg", "reliable")

    def __init__(self, leg: Leg, reliable: ReliableProvisionals, alarm: Alarm) -> None:
        self.leg = leg
        self.reliable = reliable
        self.alarm = alarm
        self.final: Callable[[], None] | None = None


class Provisionals:
    def __init__(self, endpoint: SipEndpoint, refuse: Callable[[Leg, int], None]) -> None:
        self.endpoint = endpoint
        # Refuses the leg's INVITE with a final status and ends its call.
        self._refuse = refuse
        self._early: dict[Key, _Early] = {}

    def send(self, leg: Leg, response: Response) -> None:
        """A 101-199 to the INVITE of `leg` (ipbx its UAS): reliably when it asked so."""
        tx = leg.server_tx
        assert tx is not None
        if not wants_reliable(tx.request):
            self.endpoint.respond(tx, response)
            return
        key = _key(tx)
        early = self._early.get(key)
        if early is None:
            reliable = ReliableProvisionals(tx, self.endpoint.layer.timers)
            alarm = Alarm(self.endpoint.loop, lambda now: self._ring(key, now))
            early = self._early[key] = _Early(leg, reliable, alarm)
        self._transmit(early, early.reliable.send(response, self.endpoint.loop.time()))

    def hold_final(self, leg: Leg, send: Callable[[], None]) -> bool:
        """True when the 2xx to `leg`'s INVITE must wait for a PRACK (`send` then sends
        it); False when it may go now."""
        early = self._early.get(_key(leg.server_tx)) if leg.server_tx is not None else None
        if early is None or early.reliable.final_may_go():
            return False
        early.final = send
        return True

    def on_prack(self, prack: Request, tx: ServerTransaction) -> None:
        """A PRACK: 200 when it acknowledges what waits for it, 481 otherwise (§3)."""
        early = self._early.get(dialog_key_of(prack))
        acknowledged, more = (
            early.reliable.receive_prack(prack, self.endpoint.loop.time())
            if early is not None
            else (False, [])
        )
        self.endpoint.reply(tx, 200 if acknowledged else 481)
        if early is None or not acknowledged:
            return
        self._transmit(early, more)
        if early.final is not None and early.reliable.final_may_go():
            send, early.final = early.final, None
            send()

    def stop(self, leg: Leg) -> None:
        """`leg`'s INVITE has its final response: no provisional is sent any more, but a
        PRACK for the last one may still come, and gets 200. Once the call is over, its
        provisionals are forgotten."""
        if leg.server_tx is None:
            return
        key = _key(leg.server_tx)
        early = self._early.get(key) if not leg.call.ended else self._early.pop(key, None)
        if early is not None:
            early.reliable.stop()
            early.alarm.cancel()

    def _transmit(self, early: _Early, items: list[Respond]) -> None:
        for item in items:
            self.endpoint.transmit(item)
        early.alarm.set(early.reliable.next_deadline())

    def _ring(self, key: Key, now: float) -> None:
        early = self._early.get(key)
        if early is None:
            return
        if early.reliable.transaction.status >= 200:
            self.stop(early.leg)
            return
        for item in early.reliable.expire(now):
            if isinstance(item, Respond):
                self.endpoint.transmit(item)
            else:
                log.info("%s: no PRACK from %s", early.leg.call.id, early.leg.peer)
                self.stop(early.leg)
                self._refuse(early.leg, 500)
                return
        early.alarm.set(early.reliable.next_deadline())


def _key(tx: ServerTransaction) -> Key:
    """The early dialog of our provisionals to `tx`'s INVITE, as a PRACK's key reads."""
    return (tx.request.call_id, tx.to_tag, tx.request.from_.tag or "")
