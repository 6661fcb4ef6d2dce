"""Call pickup: a phone that dials the pickup code answers the call that has been
ringing longest on an extension it may take calls of (one extension, for directed
pickup; its pickup group's, for group pickup); the call's phones stop ringing and its
caller talks to the phone that picked it up."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ipbx.media.bridge import connect
from ipbx.pbx.call.local import CallFlows
from ipbx.pbx.call.model import Call, CallState, Leg
from ipbx.pbx.call.recording import record_if_asked

log = logging.getLogger("ipbx.calls")


def pickup(flows: CallFlows, leg: Leg, may_take: Callable[[str], bool]) -> bool:
    """Answer, on `leg`, the call that has been ringing longest on an extension that
    `may_take` says yes to. False when nothing rings there."""
    reg = flows.registry
    ringing = [
        call
        for call in reg.calls.values()
        if call is not leg.call
        and not call.ended
        and call.callee is None
        and call.rang is not None
        and may_take(call.rang)
        and call.caller is not None
        and call.caller.dialog is None
    ]
    if not ringing:
        return False
    target = min(ringing, key=lambda c: c.started)
    caller = target.caller
    assert caller is not None
    reg.stop_ring_timer(target)
    for fork in target.forks:
        reg.cancel_fork(fork)
        fork.media.close()  # the far side's, or a browser's own
    target.forks = []
    if target.far_media is not None:
        target.far_media.close()
        target.far_media = None
    if not flows.answer(caller):
        return False
    if leg.dialog is None and not flows.answer(leg):
        reg.hangup(target)
        return True
    log.info("%s picked up by %s", target.id, leg.call.from_number)
    join(flows, leg, target, "pickup")
    return True


def join(flows: CallFlows, leg: Leg, target: Call, step: str) -> None:
    """The phone on `leg` (answered, on a call of its own to a feature code or a parking
    slot) takes `target`'s caller, who talks to nobody: the two are connected, `leg`'s
    own call is absorbed into `target` (it leaves no record of its own), and `target`'s
    path says `step:EXTENSION`. call.answered names the extension that took the call
    and the call it joined (no call.ended comes for that one)."""
    reg = flows.registry
    caller = target.caller
    assert caller is not None
    own = leg.call
    own.caller = None
    leg.call = target
    target.callee, caller.other, leg.other = leg, leg, caller
    target.state = CallState.ANSWERED
    target.path.append(f"{step}:{own.from_number}")
    connect(caller.media, leg.media)
    reg.end(own)
    reg.publish_answer(target, leg, own)
    record_if_asked(reg, target, own.from_number)
