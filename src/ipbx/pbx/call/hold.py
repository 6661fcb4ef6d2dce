"""Hold with music (RFC 3264 §8.4 hold, answered by the PBX).

When a phone puts the call on hold and `DATA_DIR/moh` holds music, ipbx answers the
hold itself and plays the music to the other party (a holding bridge); resuming joins
the two again. Without music the hold is passed to the other phone as any re-offer.
"""

from __future__ import annotations

import asyncio
import logging

from ipbx import sdp
from ipbx.media.bridge import connect
from ipbx.media.moh import MusicOnHold
from ipbx.pbx.call.model import Leg
from ipbx.pbx.call.negotiate import answer
from ipbx.pbx.call.registry import CallRegistry
from ipbx.sip.transaction import ServerTransaction

log = logging.getLogger("ipbx.calls")


class Hold:
    def __init__(self, registry: CallRegistry, music: MusicOnHold | None) -> None:
        self.registry = registry
        self.music = music

    def on_offer(
        self, leg: Leg, other: Leg, offer: sdp.SessionDescription, tx: ServerTransaction
    ) -> bool:
        """A re-offer from `leg`'s phone: True when it put the call on hold or resumed it
        and ipbx answered it here."""
        call = leg.call
        holding = sdp.direction(offer) in ("sendonly", "inactive")
        if not holding and call.music is None:
            return False
        if holding and (self.music is None or not self.music.files()):
            return False
        codec = leg.media.codec
        if codec is None or leg.srtp is not None:
            return False  # (an SRTP leg's hold is passed through: its keys stay end to end)
        reg = self.registry
        try:
            # The hold changes no codec: the other party's bridge stays as it is.
            ours = answer(leg, offer, reg.sdp_address(leg.peer), (codec,))
        except sdp.SdpError:
            return False
        if holding and ours.audio is not None:
            ours.audio.set_direction(
                "recvonly" if sdp.direction(offer) == "sendonly" else "inactive"
            )
            if call.music is None:
                leg.media.detach()
                assert self.music is not None
                call.music = asyncio.ensure_future(self.music.play(other.media))
                call.path.append("hold")
                log.info("%s: %s holds; music to %s", call.id, leg.peer, other.peer)
        else:
            music, call.music = call.music, None
            if music is not None:
                music.cancel()
            connect(leg.media, other.media)
            log.info("%s: %s resumes", call.id, leg.peer)
        reg.accept_reoffer(leg, tx, bytes(ours))
        return True
