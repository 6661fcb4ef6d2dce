"""The conference mixer over real RTP on loopback: members on different codecs each hear
the others' tones and not their own (N-1), the loudest talkers only, a muted member is
heard by nobody, the shared mix is encoded once per codec, and the room's rate follows
its best member."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ipbx.media import fanout
from ipbx.media.clock import media_clock
from ipbx.media.codecs import G722, OPUS, PCMU, Codec, Encoder, Fmtp, Pcm
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.mixer import Mixer
from ipbx.media.ports import PortPool
from ipbx.media.wav import read_wav
from tests.support.media import run
from tests.support.tones import tone

TALKER_HZ = (440, 1000, 1500)
RATE = 8000


def band_level(pcm: Pcm, rate: int, hz: float) -> float:
    """The share of the recording's energy within 30 Hz of `hz`."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(spectrum[np.abs(freqs - hz) <= 30].sum() / max(spectrum.sum(), 1e-9))


def heard(path: Path, start: float, end: float) -> set[int]:
    """The talkers' tones in a stretch of a recording (8 kHz)."""
    pcm = read_wav(path, RATE)[int(start * RATE) : int(end * RATE)]
    return {hz for hz in TALKER_HZ if band_level(pcm, RATE, hz) > 0.05}


async def pair(
    pool: PortPool, codec: Codec, dtmf_pt: int | None = None
) -> tuple[MediaEndpoint, MediaEndpoint]:
    """ipbx's endpoint and a phone's, talking to each other (with telephone-event when
    `dtmf_pt` is given: a G.711 line that does is read cheaply while quiet)."""
    ours, phone = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
    ours.set_remote(*phone.local_address, codec, dtmf_pt)
    phone.set_remote(*ours.local_address, codec, dtmf_pt)
    return ours, phone


def test_each_member_hears_the_others_and_not_itself_and_a_muted_one_is_not_heard(
    pool: PortPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encodes = {"PCMU": 0}
    create = fanout.create_encoder

    class Counting:
        def __init__(self, encoder: Encoder) -> None:
            self._encoder, self.pcm_rate = encoder, encoder.pcm_rate

        def encode(self, pcm: Pcm) -> bytes:
            encodes["PCMU"] += 1
            return self._encoder.encode(pcm)

    def counting(codec: Codec, fmtp: Fmtp | None = None) -> Encoder:
        encoder = create(codec, fmtp)
        return Counting(encoder) if codec.name == "PCMU" else encoder

    monkeypatch.setattr(fanout, "create_encoder", counting)
    talking: list[tuple[int, bool]] = []

    async def scenario() -> None:
        # Three talkers (two on G.711, one wideband on G.722) and two who only listen.
        codecs = (PCMU, PCMU, G722, PCMU, PCMU)
        members = [await pair(pool, codec, 101) for codec in codecs]
        index = {ours: i for i, (ours, _) in enumerate(members)}
        room = Mixer(on_talking=lambda endpoint, on: talking.append((index[endpoint], on)))
        for i, (ours, phone) in enumerate(members):
            phone.record(tmp_path / f"member{i}.wav")
            room.join(ours)
        assert room.rate == 16000  # the G.722 member's wideband
        plays = [
            asyncio.ensure_future(phone.play(tone(phone.pcm_rate, 2000, hz)))
            for (_, phone), hz in zip(members, TALKER_HZ, strict=False)
        ]
        await asyncio.sleep(1.0)
        assert room.talking == {members[i][0] for i in range(3)}
        room.mute(members[2][0], True)
        await asyncio.gather(*plays)
        async with asyncio.timeout(2):  # the hangover ends the talk spurts
            while room.talking:
                await asyncio.sleep(0.02)
        assert encodes["PCMU"] > 0
        shared = encodes["PCMU"]
        for ours, phone in members:
            phone.stop_recording()
            room.leave(ours)
        assert room.members == [] and len(media_clock()) == 0
        # The two listeners share one encoder; the G.711 talkers encode their own mix
        # only while they talk: far fewer encodes than one per member and tick.
        sent = members[3][0].stats.packets_sent
        assert members[4][0].stats.packets_sent == sent
        assert shared < 2 * sent
        for ours, phone in members:
            ours.close()
            phone.close()

    run(scenario)
    before, after = (0.3, 0.95), (1.3, 1.95)
    for i in range(3):
        others = set(TALKER_HZ) - {TALKER_HZ[i]}
        assert heard(tmp_path / f"member{i}.wav", *before) == others, i
        assert heard(tmp_path / f"member{i}.wav", *after) == others - {1500}, i
    for i in (3, 4):
        assert heard(tmp_path / f"member{i}.wav", *before) == set(TALKER_HZ), i
        assert heard(tmp_path / f"member{i}.wav", *after) == {440, 1000}, i
    assert {(i, True) for i in range(3)} <= set(talking)
    assert (2, False) in talking  # muted


def test_only_the_loudest_talkers_are_mixed_and_the_rate_follows_the_best_member(
    pool: PortPool, tmp_path: Path
) -> None:
    async def scenario() -> None:
        members = [await pair(pool, PCMU) for _ in range(3)]
        room = Mixer(talkers=2)
        for ours, _ in members:
            room.join(ours)
        listener, ear = await pair(pool, OPUS)
        ear.record(tmp_path / "ear.wav")
        room.join(listener)
        assert room.rate == 48000
        levels = (1.0, 0.5, 0.1)  # the quietest of three is left out of the mix
        plays = [
            asyncio.ensure_future(phone.play((tone(RATE, 1200, hz) * level).astype(np.int16)))
            for (_, phone), hz, level in zip(members, TALKER_HZ, levels, strict=True)
        ]
        await asyncio.gather(*plays)
        ear.stop_recording()
        room.leave(listener)
        assert room.rate == 8000
        room.close()
        assert room.members == []
        for ours, phone in [*members, (listener, ear)]:
            ours.close()
            phone.close()

    run(scenario)
    assert heard(tmp_path / "ear.wav", 0.4, 1.1) == {440, 1000}


def test_an_announcement_reaches_every_member_the_recording_holds_the_mix_and_keys_pass(
    pool: PortPool, tmp_path: Path
) -> None:
    async def scenario() -> None:
        members = [await pair(pool, PCMU, 101) for _ in range(2)]
        room = Mixer()
        for ours, phone in members:
            room.join(ours)
            phone.record(tmp_path / f"{len(room.members)}.wav")
        room.record(tmp_path / "room.wav")
        room.play(tone(16000, 500, 1000), 16000)
        await members[0][1].play(tone(RATE, 1000, 440))
        # A member's keys still reach the call (a conference's *1 mutes).
        pressed: list[str] = []
        members[1][0].on_dtmf = pressed.append
        await members[1][1].send_dtmf("*1")
        async with asyncio.timeout(2):
            while pressed != ["*", "1"]:
                await asyncio.sleep(0.02)
        assert room.stop_recording() == tmp_path / "room.wav"
        for ours, phone in members:
            phone.stop_recording()
            ours.close()
            phone.close()
        assert room.members == []

    run(scenario)
    assert heard(tmp_path / "room.wav", 0.1, 0.45) >= {1000}
    assert heard(tmp_path / "room.wav", 0.6, 0.95) == {440}
    assert heard(tmp_path / "1.wav", 0.1, 0.45) >= {1000}
    assert heard(tmp_path / "1.wav", 0.6, 0.95) == set()  # its own voice is not sent back
    assert heard(tmp_path / "2.wav", 0.6, 0.95) == {440}
