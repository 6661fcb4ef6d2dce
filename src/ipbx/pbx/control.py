"""Call control from outside the call: hang up, blind transfer, record on demand and send
DTMF, on a call in progress named by its call record's id (`Call.uid`). The REST API
(api/control.py) is its user, as Asterisk's AMI/ARI and FreeSWITCH's ESL are theirs.

Every operation checks the call's state first and raises CallStateError (the API's 409)
when the call cannot do it now: a transfer needs both parties answered, DTMF needs the
leg's media negotiated. The work itself is the call engine's: the blind transfer is the one a
REFER gets, the recording the one `record: always` gets. A leg is named from the call's
point of view: `caller` is the leg of whoever placed the call, `callee` the other one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Literal

import numpy as np

from ipbx.media.bridge import connect
from ipbx.media.codecs import Pcm
from ipbx.media.dtmf import digit_event
from ipbx.media.endpoint import DTMF_MS, MediaError
from ipbx.media.inband import dtmf_tone
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.call.recording import record, stop_recording
from ipbx.sip.errors import SipError

log = logging.getLogger("ipbx.control")

Side = Literal["caller", "callee"]
# The pause between two regenerated key presses (Q.24 receivers want >= 40 ms).
DTMF_GAP_MS = 60


class NoSuchCall(LookupError):
    """No call in progress has that id."""


class CallStateError(Exception):
    """The call cannot do what was asked now (not answered yet, no parking slot free, ...)."""


class CallControl:
    """The operations, over the calls of one PBX."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self._tasks: set[asyncio.Task[None]] = set()
        # Legs DTMF is being sent to: one string of digits at a time per leg.
        self._keying: set[int] = set()

    def find(self, call_id: str) -> Call:
        """The call in progress whose record will have `call_id`."""
        call = next((c for c in self.calls.calls.values() if c.uid == call_id), None)
        if call is None or call.ended:
            raise NoSuchCall(f"no call {call_id} in progress")
        return call

    def hang_up(self, call_id: str) -> None:
        """End the call now, in whatever state: answered legs get BYE, ringing phones
        CANCEL, a caller still ringing 487. Its record is written as for any call."""
        call = self.find(call_id)
        log.info("%s: hung up through the API", call.id)
        self.calls.hang_up(call)

    def transfer(self, call_id: str, side: Side, target: str) -> None:
        """Blind transfer: `side`'s party is connected to `target` (an extension, or an
        outside number through the outbound routes with the other party's permission,
        as when its phone transfers) and the other party is hung up once the target
        answers. Runs on after this returns; the call's events (call.ringing,
        call.answered) tell how it goes. If nobody answers within 30 s the two parties
        stay connected. LookupError for a target with no extension or route,
        PermissionError for one the other party may not call.

        The park number (or a free slot) parks `side`'s party at once, as a phone's REFER
        does (pbx/parking.py): the other party's phone hears the slot and is hung up;
        CallStateError when no slot is free, and the call goes on as it was."""
        call = self.find(call_id)
        transferee = self._answered_leg(call, side, "transferred")
        transferor = transferee.other
        if transferor is None or transferor.dialog is None:
            raise CallStateError(f"call {call_id} has no other party to take out")
        transfers = self.calls.transfers
        try:
            slot_said = transfers.begin_blind(transferor, transferee, target)
        except SipError as exc:
            if exc.status == 403:
                raise PermissionError(exc.reason) from None
            if exc.status == 503:
                raise CallStateError(f"call {call_id} cannot be parked: {exc.reason}") from None
            raise LookupError(exc.reason) from None
        if slot_said is not None:
            log.info("%s: API parks the %s (%s) on %s", call.id, side, transferee.peer, target)
            self._spawn(transfers.release_parker(transferor, slot_said, refer=False))
            return
        log.info("%s: API transfers the %s (%s) to %s", call.id, side, transferee.peer, target)
        self._spawn(self._transfer(call, transferor, transferee, target))

    async def _transfer(self, call: Call, transferor: Leg, transferee: Leg, target: str) -> None:
        status = await self.calls.transfers.blind(call, transferor, transferee, target)
        if status == 200:
            self.calls.retire(transferor)

    def start_recording(self, call_id: str) -> str:
        """Record the call from now on, where `record: always` calls are recorded; the
        file's name under the recordings folder (the call record's `recording`)."""
        call = self.find(call_id)
        if call.recorder is not None:
            state = "is being recorded" if call.recorder.recording else "was recorded already"
            raise CallStateError(f"call {call_id} {state}")
        self._answered_leg(call, "caller", "recorded")
        self._answered_leg(call, "callee", "recorded")
        if not record(self.calls, call) or call.recorder is None:
            raise RuntimeError(f"call {call_id}: the recording file cannot be made (see log)")
        return str(call.recorder.path.relative_to(self.calls.policy.recordings))

    def stop_recording(self, call_id: str) -> str:
        """Stop recording and close the file (recording.ready is published); its name."""
        call = self.find(call_id)
        name = stop_recording(self.calls, call)
        if name is None:
            raise CallStateError(f"call {call_id} is not being recorded")
        return name

    def send_dtmf(self, call_id: str, side: Side, digits: str) -> None:
        """Send `digits` to `side`'s phone: RFC 4733 telephone-events when it negotiated
        them, else as tones in its audio (the other party is not heard meanwhile, as when
        a key is pressed). Runs on after this returns, at the pace of real key presses."""
        for digit in digits:
            digit_event(digit)  # DtmfError (a ValueError) for anything else
        call = self.find(call_id)
        leg = self._answered_leg(call, side, "sent digits")
        if leg.media.codec is None:
            raise CallStateError(f"call {call_id}: the {side} has no media negotiated")
        if id(leg) in self._keying:
            raise CallStateError(f"call {call_id}: digits are still being sent to the {side}")
        log.info("%s: API sends DTMF %s to the %s", call.id, digits, side)
        self._keying.add(id(leg))
        self._spawn(self._send_dtmf(call, leg, digits))

    async def _send_dtmf(self, call: Call, leg: Leg, digits: str) -> None:
        try:
            if leg.media.dtmf_pt is not None:
                await leg.media.send_dtmf(digits, DTMF_MS, DTMF_GAP_MS)
                return
            log.info("%s: no telephone-event on %s: DTMF in-band", call.id, leg.peer)
            other = leg.other
            leg.media.detach()  # the tones replace the other party's voice meanwhile
            try:
                await leg.media.play(_tones(digits, leg.media.pcm_rate))
            finally:
                if not call.ended and other is not None and leg.other is other:
                    connect(leg.media, other.media)
        except MediaError as exc:
            log.info("%s: DTMF not sent: %s", call.id, exc)
        finally:
            self._keying.discard(id(leg))

    def _answered_leg(self, call: Call, side: Side, verb: str) -> Leg:
        """`side`'s leg of an answered call between two parties, or CallStateError."""
        if call.answered is None or call.caller is None:
            raise CallStateError(f"call {call.uid} is not answered yet: it cannot be {verb}")
        if call.callee is None:
            raise CallStateError(f"call {call.uid} has no second party: it cannot be {verb}")
        if call.dialing is not None:
            raise CallStateError(f"call {call.uid} is being transferred: it cannot be {verb}")
        if call.music is not None:
            raise CallStateError(f"call {call.uid} is on hold: it cannot be {verb}")
        leg = call.caller if side == "caller" else call.callee
        if leg.dialog is None:
            raise CallStateError(f"call {call.uid}: the {side} has not answered")
        return leg

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _tones(digits: str, rate: int) -> Pcm:
    """The key presses as in-band audio at `rate`: each tone then a pause."""
    gap = np.zeros(rate * DTMF_GAP_MS // 1000, dtype=np.int16)
    presses = [(dtmf_tone(digit, DTMF_MS, rate=rate), gap) for digit in digits]
    return np.concatenate([part for press in presses for part in press])
