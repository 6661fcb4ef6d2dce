"""A WebRTC peer as a browser is one: aiortc's RTCPeerConnection (full ICE agent,
DTLS-SRTP, UDP/TLS/RTP/SAVPF with rtcp-mux and BUNDLE), sending a tone from a
MediaStreamTrack and keeping what it hears. Its ICE stays on the loopback: no STUN
server, and host candidates on 127.0.0.1 only (aioice otherwise offers every interface).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import aioice.ice
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import AudioFrame

from ipbx.media.codecs import Pcm
from tests.support.ports import LOOPBACK
from tests.support.tones import LEVEL


@contextmanager
def loopback_ice() -> Iterator[None]:
    """aioice gathers host candidates on 127.0.0.1 only while the block runs."""
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [LOOPBACK]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class ToneTrack(AudioStreamTrack):
    """aiortc's paced 8 kHz audio track, carrying a sine instead of silence."""

    def __init__(self, hz: float) -> None:
        super().__init__()
        self._hz = hz
        self._sent = 0

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        t = (np.arange(frame.samples) + self._sent) / frame.sample_rate
        self._sent += frame.samples
        frame.planes[0].update(np.rint(LEVEL * np.sin(2 * np.pi * self._hz * t)).astype("<i2"))
        return frame


class Browser:
    """One peer connection with one audio transceiver sending `hz`, limited to `codec`
    (an aiortc codec name: "opus", "PCMU") when given."""

    def __init__(self, hz: float, codec: str | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.transceiver = self.pc.addTransceiver(ToneTrack(hz), direction="sendrecv")
        if codec is not None:
            capabilities = RTCRtpSender.getCapabilities("audio").codecs
            self.transceiver.setCodecPreferences([c for c in capabilities if c.name == codec])
        self.heard: list[Pcm] = []
        self.rate = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.pc.on("track", self._listen)

    async def offer(self) -> bytes:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp.encode()

    async def answer(self, offer: bytes) -> bytes:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer.decode(), "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp.encode()

    async def answered(self, answer: bytes) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.decode(), "answer"))

    async def hear(self, seconds: float, timeout: float = 10.0) -> Pcm:
        """Wait until `seconds` of audio have arrived (bounded by `timeout`); all of it."""
        async with asyncio.timeout(timeout):
            while self.rate == 0 or sum(map(len, self.heard)) < seconds * self.rate:
                await asyncio.sleep(0.05)
        return np.concatenate(self.heard)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()

    def _listen(self, track: MediaStreamTrack) -> None:
        task = asyncio.ensure_future(self._pull(track))
        self._tasks.add(task)

    async def _pull(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            channels = len(frame.layout.channels)
            self.rate = frame.sample_rate
            self.heard.append(frame.to_ndarray()[0][::channels])
