"""pyVoIP (PyPI), a pure-Python SIP phone, driven in-process as a user's own script would:
`VoIPPhone` registers with digest authentication and hands each incoming call to a
callback in a thread of its own; audio goes in and out as 8-bit unsigned linear samples
at 8 kHz (pyVoIP encodes PCMU or PCMA), RFC 4733 digits are read with `get_dtmf`.

What pyVoIP 1.6.8 cannot do, read in its source (pyVoIP/SIP.py, pyVoIP/VoIP/VoIP.py):
its INVITE answers a 401 challenge only, so it cannot place a call through a PBX that
challenges INVITE with 407 as RFC 3261 §22.3 has proxies do; it has no call to send DTMF
and no call to send a re-INVITE (it answers one, so it can be put on hold).

What it gets wrong and a script works around: its buffer of received audio (pyVoIP/RTP.py,
RTPPacketManager.write) files each payload at its RTP timestamp's distance from the
earliest one seen, whatever the SSRC. A new stream on the call (ipbx's music on hold, with
the random timestamp base of RFC 3550 §5.1) lands up to 2^32 bytes away, and pyVoIP
zero-fills a BytesIO that large in one call, holding the buffer's lock and the GIL: for
seconds (14 s for 3.8 GB here) the phone reads no audio and handles no SIP, and a call
that ends then is seen ending too late. `StreamPacketManager` starts the buffer over at
such a jump.
"""

from __future__ import annotations

import io
import queue
import threading
import time
import traceback
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyVoIP.RTP import RTPPacketManager
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone

from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.server import Extension

RATE = 8000
# One 20 ms packet of 8-bit samples, what pyVoIP reads and sends at a time.
FRAME = 160
# A timestamp this far from the last one is another stream: pyVoIP's own bound for a jump
# back, where it starts its buffer over (RTP.py, RTPPacketManager.write).
NEW_STREAM = 100_000


class StreamPacketManager(RTPPacketManager):
    """pyVoIP's buffer of received audio, started over at the first packet of a new
    stream (a jump of NEW_STREAM or more either way) instead of filed 2^32 bytes away."""

    def __init__(self) -> None:
        super().__init__()
        self.last: int | None = None

    def write(self, offset: int, data: bytes) -> None:
        jumped = self.last is not None and abs(offset - self.last) >= NEW_STREAM
        self.last = offset
        if not jumped:
            super().write(offset, data)
            return
        with self.bufferLock:
            self.offset, self.log, self.buffer = offset, {offset: data}, io.BytesIO(data)


@dataclass
class PyVoipCall:
    """One answered call: what was heard, the digits read, how it ended."""

    tone_hz: float
    seconds: float
    answered: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    heard: bytes = b""
    digits: str = ""
    error: str = ""

    def converse(self, call: VoIPCall) -> None:
        """Answer, send the tone, and read audio and digits at the pace they come (one
        20 ms frame per 20 ms) until the far end hangs up."""
        for client in call.RTPClients:
            client.pmin = StreamPacketManager()
        call.answer()
        self.answered.set()
        t = np.arange(int(RATE * self.seconds)) / RATE
        tone = 128 + 64 * np.sin(2 * np.pi * self.tone_hz * t)
        call.write_audio(tone.astype(np.uint8).tobytes())
        heard = bytearray()
        next_frame = time.monotonic()
        try:
            while call.state == CallState.ANSWERED:
                heard += call.read_audio(FRAME, blocking=False)
                self.digits += call.get_dtmf(16)
                next_frame += FRAME / RATE
                time.sleep(max(0.0, next_frame - time.monotonic()))
        except Exception:
            self.error = traceback.format_exc()
            raise
        finally:
            self.heard = bytes(heard)
            self.ended.set()

    def write_recording(self, path: Path) -> Path:
        """What the phone heard as a 16-bit WAV (pyVoIP gives 8-bit unsigned samples)."""
        samples = (np.frombuffer(self.heard, dtype=np.uint8).astype(np.int16) - 128) * 256
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(samples.astype("<i2").tobytes())
        return path


class PyVoipPhone:
    """A pyVoIP phone registered as `user` at 127.0.0.1:server_port that answers the calls
    it is told to expect (`expect_call`); others get pyVoIP's busy."""

    def __init__(self, server_port: int, user: Extension) -> None:
        rtp_first, rtp_last = free_udp_range(20)
        self._next: queue.Queue[PyVoipCall] = queue.Queue()
        self.phone = VoIPPhone(
            LOOPBACK, server_port, user.number, user.password, myIP=LOOPBACK,
            callCallback=self._ring, sipPort=free_port("udp"),
            rtpPortLow=rtp_first, rtpPortHigh=rtp_last,
        )  # fmt: skip

    def start(self) -> None:
        """Register (pyVoIP waits for the 200 before it returns)."""
        self.phone.start()
        assert self.phone.get_status() == PhoneStatus.REGISTERED, self.phone.get_status()

    def stop(self) -> None:
        self.phone.stop()

    def expect_call(self, tone_hz: float, seconds: float) -> PyVoipCall:
        """The next call is answered and sent `seconds` of a `tone_hz` sine; it lasts
        until the caller hangs up."""
        call = PyVoipCall(tone_hz, seconds)
        self._next.put(call)
        return call

    def _ring(self, call: VoIPCall) -> None:
        try:
            expected = self._next.get_nowait()
        except queue.Empty:
            call.deny()
            return
        expected.converse(call)
