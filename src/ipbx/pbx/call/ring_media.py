"""The media endpoints the phones rung for a call ring on.

Every phone rung at once rings on one endpoint, the far side's (`call.far_media`), which
the offer they share is anchored on; a browser (a contact registered over a WebSocket)
rings on an endpoint of its own, offered as WebRTC, since its ICE and DTLS association
is its own and a desk phone rung beside it gets plain RTP. The endpoint the answering
phone rang on becomes its leg's; the others close when their phone stops ringing or
another answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ipbx.media.channel import ChannelPair
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool, PortPoolExhausted
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.location import Binding

log = logging.getLogger("ipbx.calls")


async def endpoints_for(
    ports: PortPool[ChannelPair], call: Call, bindings: Sequence[Binding], shared: MediaEndpoint
) -> list[MediaEndpoint | None]:
    """The endpoint each of `bindings` rings on: `shared`, or a new one for a browser;
    None for a browser when the RTP port range is exhausted, and for all when the call
    ended meanwhile."""
    endpoints: list[MediaEndpoint | None] = []
    for binding in bindings:
        if not binding.browser:
            endpoints.append(shared)
            continue
        try:
            endpoints.append(await MediaEndpoint.open(ports))
        except PortPoolExhausted:
            log.warning("%s: RTP port range exhausted: %s not rung", call.id, binding.uri)
            endpoints.append(None)
    if call.ended:
        for media in endpoints:
            if media is not None and media is not shared:
                media.close()
        return [None] * len(endpoints)
    return endpoints


def keep_answering_media(call: Call) -> None:
    """A phone answered (its leg is a party of `call` now): its endpoint stays; the
    others the phones rang on close, and the far side has none any more."""
    rung = {id(m): m for m in (call.far_media, *(f.media for f in call.forks)) if m is not None}
    for media in rung.values():
        if _unused(call, media):
            media.close()
    call.far_media = None


def release(fork: Leg) -> None:
    """A phone stopped ringing: the endpoint of its own closes (the far side's, which
    the others share, stays, as does one a party took)."""
    if fork.media is not fork.call.far_media and _unused(fork.call, fork.media):
        fork.media.close()


def _unused(call: Call, media: MediaEndpoint) -> bool:
    return all(leg is None or leg.media is not media for leg in (call.caller, call.callee))
