"""Call parking (``parking: {slots: "701-720", timeout_seconds: 60}``, pbx/parking_config.py).

Park: a phone transfers its call blind (REFER, RFC 3515) to the park number (700, the
one before the first slot): the other party waits in the first free slot with the
music on hold, and the phone that parked it hears the slot spoken ("Parked on 7 0 1"),
then the NOTIFY of the transfer's success (sipfrag 200 OK), then ipbx's BYE. That is
the order of Asterisk's chan_sip, whose park of a REFER says the slot to the transferor
(ast_park_call) before it sends the 200 OK NOTIFY and hangs the transferor up. A blind
transfer to a slot itself (a desk phone's park key) parks the call in that slot. With
no slot free the transfer fails with 503 and the two parties stay connected; a party
on a trunk cannot park (403). The API's blind transfer (pbx/control.py) parks the same
way the party it names, the other party being the parker (which hears the slot and gets
the BYE, with no NOTIFY: it sent no REFER); it fails where a REFER would, with no slot
free as a 409 and nothing changed.

Retrieve: any extension that dials a slot takes the call parked there (the two are
connected, as a pickup connects them); a slot with no call says "There is no call parked
on 7 0 1" and hangs up.

Time-out: a call still parked after `timeout_seconds` leaves its slot and rings the
extension that parked it, with that extension's own call handling (pbx/router.py
`reach`): the parked party hears the music while the phones ring; unanswered, the call
follows the extension's no-answer forwarding (or voicemail), else it ends as an
unanswered call does.

Each slot is a resource of the busy lamp field (pbx/blf.py): ``confirmed`` while a call
waits in it, ``terminated`` when it leaves, from the events call.parked and
call.unparked (pbx/events.py). The call record's path has ``park:SLOT`` and, when a
phone took it, ``retrieve:EXTENSION``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.model import Leg
from ipbx.pbx.call.park import TIMEOUT, Parked
from ipbx.pbx.call.transfer import Park
from ipbx.pbx.parking_config import ParkingConfig
from ipbx.pbx.session import Prompts, Session
from ipbx.sip.errors import SipError

log = logging.getLogger("ipbx.parking")

# What rings the parker again (the router's `reach`), for the parked party's session.
RingBack = Callable[[Session, str], Awaitable[None]]


class Parking:
    """The parking lot of one configuration; the calls parked outlive it (they are the
    call engine's, `Calls.parked`), so a reload keeps them in their slots."""

    def __init__(
        self, calls: Calls, config: ParkingConfig | None, prompts: Prompts, ring_back: RingBack
    ) -> None:
        self.calls = calls
        self.config = config
        self.prompts = prompts
        self.ring_back = ring_back
        self.slots: frozenset[str] = frozenset(config.slot_numbers if config else ())

    def is_slot(self, number: str) -> bool:
        return number in self.slots or number in self.calls.parked.slots

    def park(self, number: str) -> Park | None:
        """What parks a call transferred to `number`: the park number parks it in the
        first free slot, a slot in that slot (a desk phone's park key); None for any
        other number."""
        if self.config is None:
            return None
        if number == self.config.park_number:
            return functools.partial(self._park, self.config.slot_numbers)
        if number in self.slots:
            return functools.partial(self._park, (number,))
        return None

    def _park(self, slots: Sequence[str], transferor: Leg, transferee: Leg) -> Awaitable[object]:
        """Park `transferee` in the first free one of `slots` now; what is returned says
        the slot to the transferor's phone. SipError 403 when the transferor is no
        extension's phone, 503 when no slot is free: then nothing changes."""
        calls = self.calls
        assert self.config is not None
        parker = calls.transfers.extension_of(transferor)
        if parker is None:
            raise SipError(403, "a party on a trunk cannot park a call")
        slot = next((s for s in slots if s not in calls.parked.slots), None)
        if slot is None:
            reason = (
                f"parking slot {slots[0]} is taken"
                if len(slots) == 1
                else f"every parking slot of {slots[0]}-{slots[-1]} is taken"
            )
            log.info("%s: %s", transferor.call.id, reason)
            raise SipError(503, reason)
        parked = calls.parked.park(slot, parker, transferor, transferee)
        hold = functools.partial(self._wait, parked, self.config.timeout_seconds)
        calls.spawn_task(calls.flows.run(parked.call, transferee, hold))
        announcement = Session(calls, transferor.call, transferor, self.prompts, answered=True)
        return announcement.say(f"Parked on {spoken(slot)}.")

    async def _wait(self, parked: Parked, seconds: float, leg: Leg) -> None:
        """The parked party's call flow: it waits in the slot until a phone takes it or
        it hangs up; after `seconds`, the parker is rung again."""
        done, _ = await asyncio.wait({parked.left}, timeout=seconds)
        if done:
            return
        self.calls.parked.leave(parked, TIMEOUT)
        log.info("%s: parked %d s in slot %s: ringing %s", parked.call.id, seconds,
                 parked.slot, parked.parker)  # fmt: skip
        music = self.calls.hold.music
        session = Session(
            self.calls, parked.call, leg, self.prompts, answered=True, ringing_music=music
        )
        await self.ring_back(session, parked.parker)

    def retrieve(self, slot: str) -> Callable[[Leg], Awaitable[None]]:
        """The call flow of a phone that dialled `slot`."""

        async def take(leg: Leg) -> None:
            if not self.calls.parked.retrieve(slot, leg):
                session = Session(self.calls, leg.call, leg, self.prompts)
                await session.say(f"There is no call parked on {spoken(slot)}.")
                await session.hangup()

        return take


def spoken(number: str) -> str:
    """A number said digit by digit: "7 0 1"."""
    return " ".join(number)
