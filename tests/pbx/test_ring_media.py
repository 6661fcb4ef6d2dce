"""The media endpoints the phones rung for a call ring on (pbx/call/ring_media.py): desk
phones share the far side's, each browser has one of its own; the answering phone's
stays with its leg and the others close, as does a browser's that stops ringing."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from ipbx.media.channel import ChannelPair
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool
from ipbx.pbx.call.model import Call, CallState, Leg
from ipbx.pbx.call.ring_media import endpoints_for, keep_answering_media, release
from ipbx.pbx.location import Binding
from ipbx.sip.transaction import Address
from ipbx.sip.uri import Uri
from tests.support.ports import LOOPBACK, free_udp_range


def _binding(transport: str) -> Binding:
    source = Address(transport, LOOPBACK, 5060)
    return Binding("1001", Uri("sip", "1001", None, LOOPBACK, 5060), 0.0, "id", 1, source)


def test_a_browser_rings_on_its_own_endpoint_which_closes_when_it_stops_or_loses() -> None:
    asyncio.run(_story())


async def _story() -> None:
    first = free_udp_range(12)[0]
    pool: PortPool[ChannelPair] = PortPool(LOOPBACK, first, first + 11)
    call = Call("c1")
    nobody = cast(Any, None)
    call.caller = Leg(call, (LOOPBACK, 5070), await MediaEndpoint.open(pool), nobody)
    shared = call.far_media = await MediaEndpoint.open(pool)
    bindings = [_binding("UDP"), _binding("WSS"), _binding("WS"), _binding("TLS")]
    endpoints = await endpoints_for(pool, call, bindings, shared)
    desk, browser, other_browser, other_desk = endpoints
    assert desk is shared and other_desk is shared
    assert browser is not None and other_browser is not None and browser is not other_browser
    forks = [Leg(call, (LOOPBACK, 5060), cast(MediaEndpoint, m), nobody) for m in endpoints]
    call.forks = forks
    # A browser that refuses while the others ring: its own endpoint closes, the far
    # side's stays for the desk phones.
    release(forks[1])
    release(forks[0])
    assert browser.closed and not shared.closed
    # The other browser answers: its endpoint is its leg's, the far side's closes.
    call.callee = forks[2]
    keep_answering_media(call)
    assert not other_browser.closed and shared.closed and call.far_media is None
    release(forks[3])  # the desk phone's 487 comes later
    assert not other_browser.closed and not call.caller.media.closed
    other_browser.close()
    call.caller.media.close()
    # A call that ended while the ports were opened rings nobody and keeps none.
    ended = Call("c2")
    ended.state = CallState.ENDED
    opened = await endpoints_for(pool, ended, bindings, shared)
    assert opened == [None] * len(bindings)
