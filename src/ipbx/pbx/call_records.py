"""Call records (CDRs): one per call, written when it ends, with each leg's media
figures (codec, loss, jitter, round trip, MOS) read while its legs are still whole.

The writer subscribes to the call engine's end of calls; the records wait here until
the PBX core hands them to the store."""

from __future__ import annotations

import time
from pathlib import Path

from ipbx.media.quality import leg_mos
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.call.outcome import result
from ipbx.pbx.call.registry import direction
from ipbx.store.records import CallRecord, LegRecord


class CallRecords:
    def __init__(self, recordings: Path) -> None:
        self.recordings = recordings
        self.pending: list[CallRecord] = []

    def take(self) -> list[CallRecord]:
        """The records of calls finished since the last call, for the store."""
        records, self.pending = self.pending, []
        return records

    def call_ended(self, call: Call) -> None:
        recording = None
        if call.recorder is not None:
            recording = str(call.recorder.path.relative_to(self.recordings))
        elif call.room_recording is not None:
            recording = str(call.room_recording.relative_to(self.recordings))
        legs = [(role, leg) for role, leg in (("caller", call.caller), ("callee", call.callee))]
        self.pending.append(
            CallRecord(
                call_id=call.uid,
                caller=call.from_number,
                callee=call.to_number,
                started=call.started,
                answered=call.answered,
                person_answered=call.person_answered,
                ended=time.time(),
                result=result(call),
                digits="".join(call.digits),
                recording=recording,
                path=",".join(call.path),
                direction=direction(call),
                end_reason=call.end_reason,
                legs=tuple(_leg_record(role, leg) for role, leg in legs if leg is not None),
            )
        )


def _leg_record(role: str, leg: Leg) -> LegRecord:
    reading = leg.media.meter.reading()
    codec = leg.media.codec.name if leg.media.codec is not None else ""
    rtt = leg.media.round_trip.rtt_ms
    mos = None
    if reading.packets_received:
        mos = round(leg_mos(codec, reading.loss_percent, reading.jitter_ms, rtt), 2)
    return LegRecord(
        role=role,
        peer=f"{leg.peer.transport}:{leg.peer.host}:{leg.peer.port}",
        codec=codec,
        packets_received=reading.packets_received,
        packets_lost=reading.packets_lost,
        jitter_ms=round(reading.jitter_ms, 2),
        rtt_ms=None if rtt is None else round(rtt, 2),
        mos=mos,
    )
