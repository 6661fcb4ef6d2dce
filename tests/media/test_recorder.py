"""Call recording: one channel per side, concealment of loss, a valid file at any moment."""

import asyncio
import random
import wave
from pathlib import Path

import numpy as np
import pytest

from ipbx.media.bridge import relay
from ipbx.media.codecs import OPUS, PCMA, PCMU, Codec, create_encoder
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.jitter import JitterConfig
from ipbx.media.playout import Playout
from ipbx.media.ports import PortPool
from ipbx.media.recorder import CallRecorder
from ipbx.media.rtp import RtpPacket
from tests.support.media import dominant_frequency, run


def _tone(frequency: float, seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def _packets(frequency: float, seconds: float, codec: Codec = PCMU) -> list[RtpPacket]:
    encoder = create_encoder(codec)
    pcm = _tone(frequency, seconds)
    return [
        RtpPacket(codec.payload_type, n, n * 160, 7, encoder.encode(pcm[n * 160 : (n + 1) * 160]))
        for n in range(len(pcm) // 160)
    ]


def _silent_runs_ms(pcm: np.ndarray, rate: int = 8000) -> list[float]:
    """Lengths of the runs of 10 ms blocks with (almost) no energy, between the first
    and the last block with sound."""
    block = rate // 100
    energy = np.abs(pcm[: len(pcm) // block * block].reshape(-1, block).astype(np.int32))
    loud = energy.max(axis=1) > 500
    first, last = np.argmax(loud), len(loud) - np.argmax(loud[::-1])
    runs, run = [], 0
    for is_loud in loud[first:last]:
        if is_loud:
            if run:
                runs.append(run * 10.0)
            run = 0
        else:
            run += 1
    return runs


def test_loss_and_jitter_are_concealed_up_to_the_plc_limit() -> None:
    """5 % random loss and 0-80 ms of jitter: the played-out audio has no silent gap
    longer than the PLC limit, and the tone is still a 1 kHz tone."""
    rng = random.Random(4)
    now = [0.0]
    side = Playout(PCMU, 8000, lambda: now[0])
    arrivals = sorted(
        (n * 0.020 + 0.050 + rng.uniform(-0.040, 0.040), packet)
        for n, packet in enumerate(_packets(1000, 10.0))
        if rng.random() >= 0.05
    )
    out: list[np.ndarray] = []
    for arrival, packet in arrivals:
        while now[0] + 0.005 <= arrival:
            now[0] += 0.005
            out += side.pull(now[0])
        now[0] = arrival
        side.receive(packet.serialize())
    for _ in range(100):
        now[0] += 0.005
        out += side.pull(now[0])
    pcm = np.concatenate(out)
    assert len(pcm) == pytest.approx(80000, rel=0.05)
    assert max(_silent_runs_ms(pcm), default=0) <= JitterConfig().plc_limit_ms
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=20)


def test_a_long_outage_is_silence_not_an_endless_repeat() -> None:
    now = [0.0]
    side = Playout(PCMA, 8000, lambda: now[0])
    packets = [p for p in _packets(1000, 2.0, PCMA) if not 40 <= p.sequence_number < 60]
    out: list[np.ndarray] = []
    for packet in packets:
        now[0] = packet.sequence_number * 0.020
        side.receive(packet.serialize())
        out += side.pull(now[0])
    pcm = np.concatenate(out)
    assert max(_silent_runs_ms(pcm)) >= 400 - JitterConfig().plc_limit_ms - 20


def test_a_bridged_call_is_recorded_one_side_per_channel(pool: PortPool, tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        x, y = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        # Two "phones" x and y, each talking to its leg of the call a <-> b.
        x.set_remote(*a.local_address, PCMU)
        a.set_remote(*x.local_address, PCMU)
        y.set_remote(*b.local_address, PCMU)
        b.set_remote(*y.local_address, PCMU)
        relay(a, b)
        recorder = CallRecorder(tmp_path / "call.wav", [PCMU, PCMU])
        a.set_tap(recorder.sides[0].receive)
        b.set_tap(recorder.sides[1].receive)
        await asyncio.gather(x.play(_tone(1000, 1.5)), y.play(_tone(600, 1.5)))
        await asyncio.sleep(0.2)
        path = recorder.stop()
        assert a.meter.reading().packets_received >= 70
        assert a.meter.reading().packets_lost == 0
        for endpoint in (a, b, x, y):
            endpoint.close()
        with wave.open(str(path)) as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
            assert wav.getnframes() / 8000 == pytest.approx(1.7, abs=0.15)
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
        middle = slice(4000, 10000)
        assert dominant_frequency(pcm[middle, 0]) == pytest.approx(1000, abs=20)
        assert dominant_frequency(pcm[middle, 1]) == pytest.approx(600, abs=20)

    run(scenario)


def test_a_recording_is_a_valid_file_while_it_is_still_being_written(
    pool: PortPool, tmp_path: Path
) -> None:
    """What a killed server leaves behind: the header already counts what was flushed."""

    async def scenario() -> None:
        recorder = CallRecorder(tmp_path / "open.wav", [PCMU, OPUS], mixed=True)
        await asyncio.sleep(1.0)
        with wave.open(str(tmp_path / "open.wav")) as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (1, 16000)
            assert 0.6 <= wav.getnframes() / 16000 <= 1.05
        recorder.stop()
        recorder.stop()
        with wave.open(str(tmp_path / "open.wav")) as wav:
            assert wav.getnframes() / 16000 == pytest.approx(1.0, abs=0.05)

    run(scenario)
