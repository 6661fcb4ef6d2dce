"""Calls ipbx places (click-to-call): ring the agent's phones; when one answers, ring
the number and connect the two."""

from __future__ import annotations

import logging
import time

from ipbx.pbx.call.fork import Forking
from ipbx.pbx.call.model import Call

log = logging.getLogger("ipbx.calls")


async def originate(forking: Forking, call: Call, agent: str, number: str, timeout: float) -> None:
    reg = forking.registry
    status = await forking.dial(call, [agent], timeout)
    if status != 200 or call.ended:
        log.info("%s: click-to-call: %s did not answer (%d)", call.id, agent, status)
        call.status = status
        reg.end(call)
        return
    agent_leg = call.caller
    assert agent_leg is not None
    status = await forking.dial(call, [number], timeout, keep=agent_leg)
    if status != 200:
        log.info("%s: click-to-call: %s did not answer (%d)", call.id, number, status)
        call.status = status
        reg.hangup(call)
        return
    call.answered = time.time()
