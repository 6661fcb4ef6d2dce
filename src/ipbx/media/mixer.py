"""The conference mixer: one room's audio, mixed on the media clock.

Every 20 ms tick each member's stream is played out through its own jitter buffer and
loss concealment (playout.py) at the room's rate, and its level decides whether the
member is talking: above START_DBOV for ONSET_FRAMES frames in a row starts a talk
spurt, below STOP_DBOV for HANGOVER_FRAMES ends it (hysteresis, so a pause between
words does not drop the talker). Only the loudest `talkers` of those talking are summed:
a room of hundreds where three speak costs three additions, and noise from silent lines
never builds up in the mix.

What each member hears is N-1: a talker gets the sum less its own voice, encoded for it
alone; everybody else gets the one shared mix, encoded once per codec and sent as each
member's own RTP stream (fanout.py), as Asterisk's softmix bridge and FreeSWITCH's
mod_conference do. Silent members therefore cost their playout and their send, and no
mixing or encoding of their own.

The room's rate is the best rate among its members (8, 16 or 48 kHz: the PCM rate of
G.711, G.722 and Opus), so wideband members hear each other wideband; narrowband members
are resampled on the way in and their shared mix on the way out. Announcements (`play`)
are mixed into what everybody hears; a prompt for one member (`play_to`: the answer to its
keys) takes the place of the room in what that member alone hears while it plays, as a
sound played to one channel of Asterisk's ConfBridge does; `record` writes the shared mix,
crash-safe (wav.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ipbx.media.channel import arrival_clock
from ipbx.media.clock import TICK, media_clock
from ipbx.media.codecs import Encoder, Pcm, create_encoder, pcm_rate
from ipbx.media.codecs.g711 import ALAW_DECODE, ULAW_DECODE
from ipbx.media.endpoint import PTIME_MS, MediaEndpoint
from ipbx.media.fanout import Fanout, stream_key
from ipbx.media.playout import Playout
from ipbx.media.rtp import media_packet
from ipbx.media.transcode import Resampler
from ipbx.media.wav import WavWriter, finish

TALKERS = 3
# Talk detection, in dB below a full-scale square wave (dBov, ITU-T G.100.1): speech at a
# normal level sits near -20 to -30 dBov, a quiet line's noise below -55.
START_DBOV = -42.0
STOP_DBOV = -48.0
ONSET_FRAMES = 2
HANGOVER_FRAMES = 25
# How fast the loudness that ranks talkers follows the frames (an exponential average).
_SMOOTHING = 0.25
_FULL_SCALE = 32768.0
_MAX_RATE = 48000


def _power(dbov: float) -> float:
    """The mean square of int16 samples at `dbov`."""
    return (_FULL_SCALE * 10 ** (dbov / 20)) ** 2


_START_POWER = _power(START_DBOV)
# The square of each G.711 code's sample value: a quiet line's level, by lookup.
Squares = npt.NDArray[np.float32]
_SQUARES: dict[str, Squares] = {
    "pcmu": ULAW_DECODE.astype(np.float32) ** 2,
    "pcma": ALAW_DECODE.astype(np.float32) ** 2,
}
_STOP_POWER = _power(STOP_DBOV)

TalkingListener = Callable[[MediaEndpoint, bool], None]


class Mixer:
    """One room: `join` the members' endpoints, `leave` (or close or re-bridge them)."""

    def __init__(self, talkers: int = TALKERS, on_talking: TalkingListener | None = None) -> None:
        if talkers < 1:
            raise ValueError("a mixer sums at least one talker")
        self._talkers = talkers
        self.on_talking = on_talking
        self._members: dict[MediaEndpoint, _Member] = {}
        # The members hearing a prompt of their own (play_to) instead of the room.
        self._prompted: set[_Member] = set()
        self._streams: dict[Hashable, Fanout] = {}
        self.rate = 8000
        self._frame = self.rate * PTIME_MS // 1000
        self._announcement = np.zeros(0, dtype=np.int16)
        self._recorder: WavWriter | None = None
        self._record_resampler: Resampler | None = None
        self._stop_ticks: Callable[[], None] | None = None

    @property
    def members(self) -> list[MediaEndpoint]:
        return list(self._members)

    @property
    def talking(self) -> set[MediaEndpoint]:
        return {endpoint for endpoint, member in self._members.items() if member.talking}

    def join(self, endpoint: MediaEndpoint, muted: bool = False) -> None:
        """From now on `endpoint` hears the room and, unless muted, the room hears it; the
        digits its phone sends still reach its `on_dtmf`. It leaves when it is detached,
        bridged elsewhere or closed, or by `leave`."""
        key = stream_key(endpoint)
        endpoint.detach()
        member = _Member(self, endpoint, key, muted)
        self._members[endpoint] = member
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = Fanout.of(endpoint, self.rate)
        stream.add(endpoint)
        endpoint._mode = member.wire
        endpoint._stop_playout.append(lambda: self._left(endpoint))
        member.wire()
        endpoint._report()
        self._choose_rate()
        if self._stop_ticks is None:
            self._stop_ticks = media_clock().subscribe(self._tick)

    def leave(self, endpoint: MediaEndpoint) -> None:
        """`endpoint` leaves the room; its media is terminated at ipbx again."""
        if endpoint in self._members:
            endpoint.detach()

    def mute(self, endpoint: MediaEndpoint, muted: bool) -> None:
        member = self._members[endpoint]
        member.muted = muted
        if muted:
            self._set_talking(member, False)

    def play(self, pcm: Pcm, rate: int) -> None:
        """Mix `pcm` (at `rate`) into what every member hears, after what is still
        playing."""
        audio = Resampler(rate, self.rate).resample(np.asarray(pcm, dtype=np.int16))
        self._announcement = np.concatenate([self._announcement, audio])

    def play_to(self, endpoint: MediaEndpoint, pcm: Pcm, rate: int) -> None:
        """Play `pcm` (at `rate`) to the member `endpoint` alone, after what it is still
        hearing of its own: meanwhile it does not hear the room (the room still hears
        it)."""
        member = self._members[endpoint]
        audio = Resampler(rate, self.rate).resample(np.asarray(pcm, dtype=np.int16))
        member.prompt = np.concatenate([member.prompt, audio])
        self._prompted.add(member)

    def record(self, path: str | Path) -> None:
        """Write the room's mix to a WAV file (at the room's rate now) until
        stop_recording()."""
        self.stop_recording()
        self._recorder = WavWriter(path, rate=self.rate)
        self._record_resampler = None

    def stop_recording(self) -> Path | None:
        recorder, self._recorder = self._recorder, None
        return finish(recorder)

    def close(self) -> None:
        """Every member leaves; the recording ends."""
        for endpoint in list(self._members):
            endpoint.detach()
        self.stop_recording()

    def _left(self, endpoint: MediaEndpoint) -> None:
        member = self._members.pop(endpoint, None)
        if member is None:
            return
        self._prompted.discard(member)
        self._set_talking(member, False)
        stream = self._streams.get(member.key)
        if stream is not None:
            stream.endpoints.pop(endpoint, None)
            if not stream.endpoints:
                del self._streams[member.key]
        if not self._members and self._stop_ticks is not None:
            self._stop_ticks()
            self._stop_ticks = None
        self._choose_rate()

    def _choose_rate(self) -> None:
        """The best PCM rate among the members; what depends on it is made again when it
        changes (a wideband member joined or the last one left)."""
        rate = min(_MAX_RATE, max((m.pcm_rate for m in self._members.values()), default=8000))
        if rate == self.rate:
            return
        old = self.rate
        self.rate, self._frame = rate, rate * PTIME_MS // 1000
        self._announcement = Resampler(old, rate).resample(self._announcement)
        for member in self._prompted:
            member.prompt = Resampler(old, rate).resample(member.prompt)
        for member in self._members.values():
            member.restart()
        for key, stream in list(self._streams.items()):
            listeners = stream.endpoints
            self._streams[key] = stream = Fanout(stream.codec, stream.fmtp, rate)
            stream.endpoints = listeners
        if self._recorder is not None:
            self._record_resampler = Resampler(rate, self._recorder.rate)

    def _set_talking(self, member: _Member, talking: bool) -> None:
        if member.talking == talking:
            return
        member.talking = talking
        if self.on_talking is not None:
            self.on_talking(member.endpoint, talking)

    def _tick(self, now: float) -> None:
        size = self._frame
        due = now + TICK
        candidates: list[_Member] = []
        quiet: dict[tuple[int, int], tuple[Squares, list[_Member], list[bytes]]] = {}
        for member in self._members.values():
            if member.quiet:
                payload = member.fresh_payload()
                if payload is None or member.muted:
                    member.hold_on(0.0)
                    continue
                squares = member.squares
                assert squares is not None
                batch = quiet.get((id(squares), len(payload)))
                if batch is None:
                    batch = quiet[id(squares), len(payload)] = (squares, [], [])
                batch[1].append(member)
                batch[2].append(payload)
                continue
            frame = member.next_frame(due, size)
            member.frame = None if member.muted else frame
            power = 0.0 if member.frame is None else _mean_square(member.frame)
            self._set_talking(member, member.hold_on(power) and not member.muted)
            if not member.talking:
                if member.squares is not None:
                    member.quieten()
            elif member.frame is not None:  # a pause within a talk spurt adds nothing
                candidates.append(member)
        # Quiet G.711 lines: the level of every line's latest packet in one array lookup.
        for squares, members, payloads in quiet.values():
            codes = np.frombuffer(b"".join(payloads), dtype=np.uint8)
            powers = squares[codes].reshape(len(payloads), -1).mean(axis=1)
            for member, power in zip(members, powers.tolist(), strict=True):
                if member.hold_on(power):
                    member.wake()
                    self._set_talking(member, True)
        if len(candidates) > self._talkers:
            candidates.sort(key=_loudness, reverse=True)
            del candidates[self._talkers :]
        total = np.zeros(size, dtype=np.int32)
        for member in candidates:
            assert member.frame is not None
            total += member.frame
        if len(self._announcement):
            played = self._announcement[:size]
            total[: len(played)] += played
            self._announcement = self._announcement[size:]
        shared = _clip(total)
        if self._recorder is not None:
            resampler = self._record_resampler
            self._recorder.write(shared if resampler is None else resampler.resample(shared))
        own: dict[Hashable, dict[MediaEndpoint, bytes]] = {}
        for member in candidates:
            assert member.frame is not None
            if member not in self._prompted:
                payload = member.voice().encode(_clip(total - member.frame))
                own.setdefault(member.key, {})[member.endpoint] = payload
        for member in list(self._prompted):
            own.setdefault(member.key, {})[member.endpoint] = member.next_prompt(size)
            if not len(member.prompt):
                self._prompted.discard(member)
        for key, stream in list(self._streams.items()):
            for endpoint, _ in stream.send(shared, own.get(key)):
                endpoint.detach()


def _mean_square(frame: Pcm) -> float:
    samples = frame.astype(np.float32)
    return float(np.dot(samples, samples)) / len(samples)


def _loudness(member: _Member) -> float:
    return member.loudness


def _clip(total: npt.NDArray[np.int32]) -> Pcm:
    clipped: Pcm = np.clip(total, -32768, 32767).astype(np.int16)
    return clipped


class _Member:
    """One member's way into the room: its playout, its talk state, and the encoder of
    what it hears while it talks (the mix without itself).

    A G.711 line that negotiated telephone-event is quiet while it does not talk: its
    packets are only kept (the last few) and its level is read from the latest one's
    bytes, with no jitter buffer and no decoding; when it starts talking it wakes, its
    playout starting with the packets kept, so the first syllable is not cut. Other
    lines (wideband codecs, a line whose digits come as tones) always play out."""

    __slots__ = (
        "_above",
        "_below",
        "_fresh",
        "_mixer",
        "_payload_type",
        "_pending",
        "_playout",
        "_recent",
        "_voice",
        "endpoint",
        "frame",
        "key",
        "loudness",
        "muted",
        "pcm_rate",
        "prompt",
        "squares",
        "talking",
    )

    def __init__(self, mixer: Mixer, endpoint: MediaEndpoint, key: Hashable, muted: bool) -> None:
        codec = endpoint._require_codec()
        self._mixer = mixer
        self.endpoint = endpoint
        self.key = key
        self.muted = muted
        self.pcm_rate = pcm_rate(codec)
        self.talking = False
        self.prompt = np.zeros(0, dtype=np.int16)
        self.loudness = 0.0
        self.frame: Pcm | None = None
        self._above = 0
        self._below = 0
        self._payload_type = codec.payload_type
        self._recent: deque[bytes] = deque(maxlen=ONSET_FRAMES + 1)
        self._fresh = False
        self._voice: _Voice | None = None
        self._pending = np.zeros(0, dtype=np.int16)
        self._playout: Playout | None = None
        self.squares: Squares | None = (
            _SQUARES.get(codec.name.lower()) if endpoint.dtmf_pt is not None else None
        )
        if self.squares is None or codec.clock_rate != 8000:
            self.squares = None
            self.wake()

    @property
    def quiet(self) -> bool:
        return self._playout is None

    def wake(self) -> None:
        """Play out from now on, starting with the packets kept while quiet."""
        codec = self.endpoint._require_codec()
        clock = arrival_clock(asyncio.get_running_loop())
        self._playout = Playout(codec, self._mixer.rate, clock)
        self._pending = np.zeros(0, dtype=np.int16)
        for data in self._recent:
            self._playout.receive(data)
        self._recent.clear()

    def quieten(self) -> None:
        self._playout = None
        self._fresh = False

    def restart(self) -> None:
        """Play out at the room's rate from now on (buffered audio is let go)."""
        self._voice = None
        if self._playout is not None:
            self.wake()

    def wire(self) -> None:
        """The endpoint's mode in the room (again after SRTP or a tap changes)."""
        endpoint = self.endpoint
        endpoint.read_on_clock()
        endpoint._rtp.sink = endpoint._inbound(self.receive)
        endpoint._rtcp.sink = endpoint._inbound_rtcp(endpoint._reports.received)

    def receive(self, data: bytes) -> None:
        playout = self._playout
        if playout is None and len(data) > 12 and data[1] & 0x7F == self._payload_type:
            self._recent.append(data)
            self._fresh = True
            return
        packet = media_packet(data)
        if packet is None:
            return
        endpoint = self.endpoint
        if packet.payload_type == endpoint.dtmf_pt:
            if endpoint.digits is not None:
                endpoint._heard(endpoint.digits.event(packet))
        elif playout is not None:
            playout.receive_packet(packet)

    def fresh_payload(self) -> bytes | None:
        """A quiet line's latest payload, if one came since the last tick."""
        if not self._fresh:
            return None
        self._fresh = False
        data = self._recent[-1]
        if data[0] == 0x80:  # version 2 and a bare 12-byte header: the common case
            return data[12:]
        packet = media_packet(data)
        return None if packet is None else packet.payload

    def next_frame(self, due: float, size: int) -> Pcm | None:
        """The member's next `size` samples at the room's rate, or None when it has sent
        nothing to play yet."""
        assert self._playout is not None
        pulled = self._playout.pull(due)
        if not pulled and not len(self._pending):
            return None
        if not len(self._pending) and len(pulled) == 1 and len(pulled[0]) == size:
            frame = pulled[0]
        else:
            pending = np.concatenate([self._pending, *pulled])
            if len(pending) < size:
                pending = np.concatenate([pending, np.zeros(size - len(pending), np.int16)])
            # More than a few frames queued means the phone's clock runs fast: catch up.
            frame, self._pending = pending[:size], pending[size : 4 * size]
        endpoint = self.endpoint
        # Tones are listened for only on a line that negotiated no telephone-event
        # (RFC 4733): decoding every member for them would cost what the mix saves.
        if endpoint.dtmf_pt is None and endpoint.digits is not None and endpoint.digits.hears_tones:
            endpoint._heard(endpoint.digits.audio(frame, self._mixer.rate))
        return frame

    def hold_on(self, power: float) -> bool:
        """Whether the member talks after a frame of mean square `power`."""
        self.loudness += _SMOOTHING * (power - self.loudness)
        if self.talking:
            self._below = self._below + 1 if power < _STOP_POWER else 0
            return self._below < HANGOVER_FRAMES
        self._above = self._above + 1 if power > _START_POWER else 0
        if self._above >= ONSET_FRAMES:
            self._below = 0
            return True
        return False

    def next_prompt(self, size: int) -> bytes:
        """The next frame of the member's own prompt, encoded (silence past its end)."""
        frame, self.prompt = self.prompt[:size], self.prompt[size:]
        padding = np.zeros(size - len(frame), dtype=np.int16)
        return self.voice().encode(np.concatenate([frame, padding]))

    def voice(self) -> _Voice:
        """The encoder of what this member hears alone: the mix without itself while it
        talks, its own prompt."""
        if self._voice is None:
            self._voice = _Voice(self.endpoint, self._mixer.rate)
        return self._voice


class _Voice:
    """An encoder of one member's own, with the resampling to its rate."""

    __slots__ = ("_encoder", "_resampler")

    def __init__(self, endpoint: MediaEndpoint, rate: int) -> None:
        self._encoder: Encoder = create_encoder(endpoint._require_codec(), endpoint.fmtp, rate)
        self._resampler = Resampler(rate, self._encoder.pcm_rate)

    def encode(self, pcm: Pcm) -> bytes:
        return self._encoder.encode(self._resampler.resample(pcm))
