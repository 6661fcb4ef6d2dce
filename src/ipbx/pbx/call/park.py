"""Parked calls, the mechanism (pbx/parking.py chooses the slot, announces it and rings
the parker back): a party of a call waits in a numbered slot with music on hold,
talking to nobody, until a phone takes it (`retrieve`) or it leaves the slot.

Parking takes the parker out of the call: its leg moves to a call of its own that
leaves no record and publishes nothing, so that its phone's BYE ends its leg alone; the
parked party becomes the call's caller, the party the engine rings phones for
(Session.dial) once it leaves the slot. A phone that dials the slot is joined to the
parked party as a pickup is (pickup.py `join`). The music stops in the very turn the
call leaves the slot, before anything else is connected to the parked party's leg.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ipbx.media.endpoint import MediaError
from ipbx.media.moh import MusicOnHold
from ipbx.pbx.call.local import CallFlows
from ipbx.pbx.call.model import Call, Leg, new_call_id
from ipbx.pbx.call.pickup import join
from ipbx.pbx.events import CALL_PARKED, CALL_UNPARKED

log = logging.getLogger("ipbx.calls")

# Why a call left its slot (call.unparked's reason).
RETRIEVED = "retrieved"
TIMEOUT = "timeout"
HANGUP = "hangup"


@dataclass(eq=False)
class Parked:
    slot: str
    call: Call
    parker: str  # the extension that parked the call
    # Resolves with the reason (RETRIEVED, TIMEOUT, HANGUP) when the call leaves the slot.
    left: asyncio.Future[str]
    music_off: Callable[[], None] = field(default=lambda: None)


class ParkedCalls:
    """The calls waiting in parking slots, by slot."""

    def __init__(self, flows: CallFlows, music: MusicOnHold | None) -> None:
        self.flows = flows
        self.registry = flows.registry
        self.music = music
        self.slots: dict[str, Parked] = {}
        self._by_call: dict[str, Parked] = {}
        self.registry.on_end.append(self._ended)

    def park(self, slot: str, parker: str, transferor: Leg, transferee: Leg) -> Parked:
        """Put `transferee` in `slot` with music; `transferor` (extension `parker`'s
        phone) steps out into a call of its own, still up (its phone hears the slot)."""
        call = transferee.call
        party = call.from_number if transferee is call.caller else call.to_number
        step_out(transferor)
        transferee.other = None
        if call.music is not None:  # the parker held the call before transferring it
            call.music.cancel()
            call.music = None
        transferee.media.detach()
        call.caller, call.callee = transferee, None
        call.new_far_dialog()
        call.path.append(f"park:{slot}")
        parked = Parked(slot, call, parker, asyncio.get_running_loop().create_future())
        if self.music is not None and self.music.files():
            try:
                parked.music_off = self.music.listen(transferee.media)
            except MediaError as exc:
                log.warning("%s: no music in slot %s: %s", call.id, slot, exc)
        self.slots[slot] = self._by_call[call.id] = parked
        self.registry.publish(CALL_PARKED, call, slot=slot, extension=parker, party=party)
        log.info("%s: %s parked %s in slot %s", call.id, parker, transferee.peer, slot)
        return parked

    def retrieve(self, slot: str, leg: Leg) -> bool:
        """The phone on `leg` (its call to the slot's number) takes the call parked in
        `slot`; False when none is. A phone whose offer cannot be answered has its error
        and the call stays parked."""
        parked = self.slots.get(slot)
        if parked is None:
            return False
        if leg.dialog is None and not self.flows.answer(leg):
            return True
        self.leave(parked, RETRIEVED, by=leg.call.from_number)
        join(self.flows, leg, parked.call, "retrieve")
        log.info("%s: slot %s retrieved by %s", parked.call.id, slot, leg.peer)
        return True

    def leave(self, parked: Parked, reason: str, by: str | None = None) -> None:
        """The call leaves its slot (the music stops now): call.unparked."""
        if self.slots.get(parked.slot) is not parked:
            return
        del self.slots[parked.slot]
        self._by_call.pop(parked.call.id, None)
        parked.music_off()
        data: dict[str, object] = {"slot": parked.slot, "extension": parked.parker}
        if by is not None:
            data["by"] = by
        self.registry.publish(CALL_UNPARKED, parked.call, reason=reason, **data)
        if not parked.left.done():
            parked.left.set_result(reason)

    def _ended(self, call: Call) -> None:
        parked = self._by_call.get(call.id)
        if parked is not None:
            self.leave(parked, HANGUP)


def step_out(leg: Leg) -> Call:
    """Move `leg` out of its call into a call of its own, which leaves no record and
    publishes no event when it ends (it has no caller): its phone's BYE ends that alone."""
    leg.other = None
    alone = Call(new_call_id(), leg.call.from_number, leg.call.to_number)
    alone.callee = leg
    leg.call = alone
    return alone
