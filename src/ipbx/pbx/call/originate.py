"""Calls ipbx places (click-to-call): ring the agent's phones; when one answers, ring
the number (an extension's phones, or an outside number through a route's trunks) and
connect the two."""

from __future__ import annotations

import asyncio
import logging

from ipbx.pbx.call.model import Call
from ipbx.pbx.call.trunk import TrunkDialing
from ipbx.pbx.dialplan import OutboundCall

log = logging.getLogger("ipbx.calls")


async def originate(
    trunks: TrunkDialing,
    call: Call,
    agent: str,
    number: str,
    timeout: float,
    outside: tuple[OutboundCall, str] | None,
    agent_status: asyncio.Future[int] | None = None,
) -> None:
    """`outside` is the route and caller ID of a number that is no extension;
    `agent_status` is told how the agent's phones answered."""
    dialing = trunks.dialing
    reg = dialing.registry
    status = await dialing.dial(call, [agent], timeout)
    if agent_status is not None and not agent_status.done():
        agent_status.set_result(status if not call.ended else 487)
    if status != 200 or call.ended:
        log.info("%s: click-to-call: %s did not answer (%d)", call.id, agent, status)
        call.status = status
        reg.end(call)
        return
    agent_leg = call.caller
    assert agent_leg is not None
    if outside is None:
        status = await dialing.dial(call, [number], timeout, keep=agent_leg)
    else:
        route, caller_id = outside
        status = await trunks.dial(call, route, caller_id, timeout, keep=agent_leg)
    if status != 200:
        log.info("%s: click-to-call: %s did not answer (%d)", call.id, number, status)
        call.status = status
        reg.hangup(call)
