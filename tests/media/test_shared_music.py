"""Music on hold and announcements shared by every listener: each 20 ms frame is encoded
once per codec and sent by each listener's endpoint under its own SSRC, over real RTP on
loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ipbx.media import announcer, fanout
from ipbx.media.announcer import Announcer
from ipbx.media.clock import media_clock
from ipbx.media.codecs import G722, OPUS, PCMA, PCMU, Codec, Encoder, Fmtp, Pcm
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.moh import MusicOnHold
from ipbx.media.ports import PortPool
from ipbx.media.rtp import RtpPacket
from ipbx.media.srtp import SrtpContext, new_crypto
from ipbx.media.wav import read_wav
from tests.support.media import run
from tests.support.softphone import write_tone
from tests.support.tones import peak_hz

LOW_HZ, HIGH_HZ = 500, 1500
# Three G.711 mu-law callers share one encoder; the others have one codec each.
CODECS = (PCMU, PCMU, PCMU, PCMA, G722, OPUS)


class _CountingEncoder:
    def __init__(self, encoder: Encoder, counts: dict[str, int], name: str) -> None:
        self._encoder, self._counts, self._name = encoder, counts, name
        self.pcm_rate = encoder.pcm_rate

    def encode(self, pcm: Pcm) -> bytes:
        self._counts[self._name] += 1
        return self._encoder.encode(pcm)


def test_every_caller_hears_the_music_encoded_once_per_codec_and_a_late_one_joins_midway(
    pool: PortPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "moh"
    folder.mkdir()
    write_tone(folder / "1-low.wav", LOW_HZ, 1, rate=16000)
    write_tone(folder / "2-high.wav", HIGH_HZ, 2, rate=16000)
    encodes = {codec.name: 0 for codec in CODECS}
    create = fanout.create_encoder

    def counting(codec: Codec, fmtp: Fmtp | None = None, rate: int | None = None) -> Encoder:
        return _CountingEncoder(create(codec, fmtp, rate), encodes, codec.name)

    monkeypatch.setattr(fanout, "create_encoder", counting)
    music = MusicOnHold(folder)
    ssrcs: set[int] = set()

    async def pair(
        codec: Codec, name: str, srtp: bool = False
    ) -> tuple[MediaEndpoint, MediaEndpoint]:
        ours, phone = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        ours.set_remote(*phone.local_address, codec)
        phone.set_remote(*ours.local_address, codec)
        if srtp:
            keys = new_crypto(1), new_crypto(1)
            ours.set_srtp(SrtpContext(*keys))
            phone.set_srtp(SrtpContext(*reversed(keys)))
        phone.record(tmp_path / f"{name}.wav")
        phone.set_tap(lambda data: ssrcs.add(RtpPacket.parse(data).ssrc))
        return ours, phone

    async def scenario() -> None:
        # The third G.711 caller has SRTP: the shared payload is protected on its leg only.
        pairs = [await pair(codec, f"caller{i}", i == 2) for i, codec in enumerate(CODECS)]
        leaving = [music.listen(ours) for ours, _ in pairs]
        first_phone = pairs[0][1]
        async with asyncio.timeout(5):
            while first_phone.stats.packets_received < 60:  # into the second file
                await asyncio.sleep(0.02)
        late, late_phone = await pair(PCMU, "late")
        leaving.append(music.listen(late))
        async with asyncio.timeout(5):
            while late_phone.stats.packets_received < 40:
                await asyncio.sleep(0.02)
        for leave in leaving:
            leave()
        assert music.listeners == 0 and len(media_clock()) == 0  # the music stopped
        await asyncio.sleep(0.1)
        sent = [ours.stats.packets_sent for ours, _ in pairs]
        # One encode per frame and codec, however many share the codec.
        assert encodes["PCMU"] == sent[0] and sent[0] == sent[1] == sent[2]
        assert encodes["PCMA"] == sent[3] and encodes["G722"] == sent[4]
        assert encodes["opus"] == sent[5]
        assert late.stats.packets_sent < sent[0]
        assert len(ssrcs) == len(CODECS) + 1  # each caller's own stream
        for ours, phone in [*pairs, (late, late_phone)]:
            phone.stop_recording()
            ours.close()
            phone.close()

    run(scenario)
    for i, codec in enumerate(CODECS):
        heard = read_wav(tmp_path / f"caller{i}.wav", 8000)
        # Opus starts a few ms late (its look-ahead): stay clear of the file change.
        assert peak_hz(heard[1000:7000], 8000) == pytest.approx(LOW_HZ, abs=15), codec.name
        assert peak_hz(heard[9000:15000], 8000) == pytest.approx(HIGH_HZ, abs=15), codec.name
    # The late caller joins the music where it is, in the second file, not at its start.
    late_heard = read_wav(tmp_path / "late.wav", 8000)
    assert peak_hz(late_heard[400:4400], 8000) == pytest.approx(HIGH_HZ, abs=15)


def test_an_announcement_to_many_callers_is_encoded_once_and_each_hears_it_whole(
    pool: PortPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = write_tone(tmp_path / "thanks.wav", HIGH_HZ, 0.6)
    encoded: list[str] = []
    encode = announcer._encode

    def counting(path: Path, codec: Codec, fmtp: Fmtp) -> list[bytes]:
        encoded.append(codec.name)
        return encode(path, codec, fmtp)

    monkeypatch.setattr(announcer, "_encode", counting)
    announcements = Announcer()

    async def scenario() -> None:
        pairs = []
        for i in range(3):
            ours, phone = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
            ours.set_remote(*phone.local_address, PCMU)
            phone.set_remote(*ours.local_address, PCMU)
            phone.record(tmp_path / f"heard{i}.wav")
            pairs.append((ours, phone))
        # Two callers at once, the third when the others are half-way through.
        first = asyncio.gather(*(announcements.play(ours, prompt) for ours, _ in pairs[:2]))
        await asyncio.sleep(0.3)
        await announcements.play(pairs[2][0], prompt)
        await first
        assert len(media_clock()) == 0
        await asyncio.sleep(0.1)
        for ours, phone in pairs:
            assert ours.stats.packets_sent == 30  # 0.6 s in 20 ms frames
            phone.stop_recording()
            ours.close()
            phone.close()

    run(scenario)
    assert encoded == ["PCMU"]
    for i in range(3):
        heard = read_wav(tmp_path / f"heard{i}.wav", 8000)
        assert len(heard) == 4800
        assert peak_hz(heard[400:-400], 8000) == pytest.approx(HIGH_HZ, abs=15)
