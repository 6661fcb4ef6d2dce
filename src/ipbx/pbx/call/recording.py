"""Recording a call into `recordings/DAY/UID.wav`: caller on the left channel, callee on
the right (or mixed into one), from the moment it starts until it is stopped or the
call ends (then recording.ready is published and the call record names the file)."""

from __future__ import annotations

import logging
import time

from ipbx.media.codecs import CodecError
from ipbx.media.recorder import CallRecorder
from ipbx.pbx.call.model import Call
from ipbx.pbx.call.registry import CallRegistry
from ipbx.pbx.events import RECORDING_READY

log = logging.getLogger("ipbx.calls")


def record(reg: CallRegistry, call: Call) -> bool:
    """Record the call from now on. False when the file cannot be made (the reason is
    logged)."""
    a, b = call.caller, call.callee
    assert a is not None and b is not None
    codecs = [a.media.codec, b.media.codec]
    day = time.strftime("%Y-%m-%d", time.gmtime(call.started))
    path = reg.policy.recordings / day / f"{call.uid}.wav"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        call.recorder = CallRecorder(
            path, [c for c in codecs if c is not None], reg.policy.mixed_recordings
        )
    except (OSError, CodecError, ValueError) as exc:
        log.warning("%s: cannot record: %s", call.id, exc)
        return False
    a.media.set_tap(call.recorder.sides[0].receive)
    b.media.set_tap(call.recorder.sides[1].receive)
    log.info("%s recording to %s", call.id, path)
    return True


def record_if_asked(reg: CallRegistry, call: Call, answering: str) -> None:
    """Record the call from its answer when `record: always` asks it of one of its
    parties: the caller, the number called, or the extension `answering` that took it,
    however the call reached it (a DID, a group, a menu, a forward, a transfer, a
    pickup)."""
    parties = {call.from_number, call.to_number, answering}
    if call.recorder is None and reg.policy.record_always & parties:
        record(reg, call)


def stop_recording(reg: CallRegistry, call: Call) -> str | None:
    """Stop the call's recording and close its file (the call record still names it);
    publishes recording.ready. The file's name under `recordings`, or None when nothing
    was being recorded."""
    recorder = call.recorder
    if recorder is None or not recorder.recording:
        return None
    for leg in (call.caller, call.callee):
        if leg is not None:
            leg.media.set_tap(None)
    path = recorder.stop()
    name = str(path.relative_to(reg.policy.recordings))
    log.info("%s recording stopped: %s", call.id, path)
    reg.publish(RECORDING_READY, call, recording=name, seconds=round(recorder.seconds, 3))
    return name
