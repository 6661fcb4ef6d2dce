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
PROMPT_HZ = 2000
RATE = 8000


def band_level(pcm: Pcm, rate: int, hz: float) -> float:
    """The share of the recording's energy within 30 Hz of `hz`."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(spectrum[np.abs(freqs - hz) <= 30].sum() / max(spectrum.sum(), 1e-9))


def tone_slices(path: Path, hz: int) -> int:
    """The 100 ms slices of a recording (read at 8 kHz) where `hz` is present."""
    pcm = read_wav(path, RATE)
    step = RATE // 10
    parts = range(0, len(pcm) - step + 1, step)
    return sum(band_level(pcm[i : i + step], RATE, hz) > 0.05 for i in parts)


def heard(path: Path) -> set[int]:
    """The talkers' tones a recording holds, each in three 100 ms slices at least
    (counting slices, not times, keeps a stalled test machine from moving a tone out
    of a window)."""
    return {hz for hz in TALKER_HZ if tone_slices(path, hz) >= 3}


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

    def counting(codec: Codec, fmtp: Fmtp | None = None, rate: int | None = None) -> Encoder:
        encoder = create(codec, fmtp, rate)
        return Counting(encoder) if codec.name == "PCMU" else encoder

    monkeypatch.setattr(fanout, "create_encoder", counting)
    talking: list[tuple[int, bool]] = []

    async def talk(members: list[tuple[MediaEndpoint, MediaEndpoint]], phase: str) -> None:
        """The first three talk for 1.2 s while every phone records what it hears."""
        for i, (_, phone) in enumerate(members):
            phone.record(tmp_path / f"{phase}{i}.wav")
        await asyncio.gather(
            *(
                phone.play(tone(phone.pcm_rate, 1200, hz))
                for (_, phone), hz in zip(members, TALKER_HZ, strict=False)
            )
        )
        async with asyncio.timeout(3):  # the hangover ends the talk spurts
            while room.talking:
                await asyncio.sleep(0.02)
        for _, phone in members:
            phone.stop_recording()

    room = None

    async def scenario() -> None:
        nonlocal room
        # Three talkers (two on G.711, one wideband on G.722) and two who only listen.
        codecs = (PCMU, PCMU, G722, PCMU, PCMU)
        members = [await pair(pool, codec, 101) for codec in codecs]
        index = {ours: i for i, (ours, _) in enumerate(members)}
        room = Mixer(on_talking=lambda endpoint, on: talking.append((index[endpoint], on)))
        for ours, _ in members:
            room.join(ours)
        assert room.rate == 16000  # the G.722 member's wideband
        await talk(members, "all")
        room.mute(members[2][0], True)
        await talk(members, "muted")
        shared = encodes["PCMU"]
        for ours, _ in members:
            room.leave(ours)
        assert room.members == [] and len(media_clock()) == 0
        # The two listeners share one encoder; the G.711 talkers encode their own mix
        # only while they talk: far fewer encodes than one per member and tick.
        sent = members[3][0].stats.packets_sent
        assert members[4][0].stats.packets_sent == sent
        assert 0 < shared < 2 * sent
        for ours, phone in members:
            ours.close()
            phone.close()

    run(scenario)
    for i in range(3):
        others = set(TALKER_HZ) - {TALKER_HZ[i]}
        assert heard(tmp_path / f"all{i}.wav") == others, i
        assert tone_slices(tmp_path / f"all{i}.wav", TALKER_HZ[i]) == 0, i
        assert heard(tmp_path / f"muted{i}.wav") == others - {1500}, i
    for i in (3, 4):
        assert heard(tmp_path / f"all{i}.wav") == set(TALKER_HZ), i
        assert tone_slices(tmp_path / f"muted{i}.wav", 1500) == 0, i
        assert heard(tmp_path / f"muted{i}.wav") == {440, 1000}, i
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
    assert heard(tmp_path / "ear.wav") == {440, 1000}
    assert tone_slices(tmp_path / "ear.wav", 1500) == 0


def test_an_announcement_reaches_every_member_a_prompt_one_and_keys_pass(
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
        # A prompt for the second member alone (the answer to its keys).
        room.play_to(members[1][0], tone(RATE, 400, PROMPT_HZ), RATE)
        await asyncio.sleep(0.8)
        assert room.stop_recording() == tmp_path / "room.wav"
        for ours, phone in members:
            phone.stop_recording()
            ours.close()
            phone.close()
        assert room.members == []

    run(scenario)
    assert heard(tmp_path / "room.wav") == {440, 1000}
    assert heard(tmp_path / "1.wav") == {1000}  # its own voice is not sent back
    assert tone_slices(tmp_path / "1.wav", 440) == 0
    assert heard(tmp_path / "2.wav") == {440, 1000}
    assert tone_slices(tmp_path / "2.wav", PROMPT_HZ) >= 3
    assert tone_slices(tmp_path / "1.wav", PROMPT_HZ) == 0
    assert tone_slices(tmp_path / "room.wav", PROMPT_HZ) == 0
