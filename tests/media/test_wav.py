"""WAV prompts in any common format in; crash-safe recordings out."""

import wave
from pathlib import Path

import numpy as np
import pytest

from ipbx.media.wav import WavError, WavWriter, read_wav


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int, channels: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


def dominant_frequency(pcm: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[np.argmax(spectrum)])


def tone(rate: int, seconds: float = 0.5, frequency: float = 1000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 22050])
def test_16_bit_mono_at_any_rate_becomes_8_khz(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "prompt.wav"
    write_wav(path, tone(rate), rate, 2, 1)
    pcm = read_wav(path)
    assert pcm.dtype == np.int16
    assert abs(len(pcm) - 4000) <= 1
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=4)
    assert 7000 < np.abs(pcm[100:-100]).max() < 9000


def test_decimation_filters_out_what_8_khz_cannot_carry(tmp_path: Path) -> None:
    path = tmp_path / "hiss.wav"
    write_wav(path, tone(48000, frequency=6000), 48000, 2, 1)
    assert np.abs(read_wav(path)[200:-200]).max() < 800


def test_8_bit_stereo_is_unsigned_and_downmixed(tmp_path: Path) -> None:
    path = tmp_path / "old.wav"
    left = (tone(8000) // 256 + 128).astype(np.uint8)
    right = np.full_like(left, 128)
    write_wav(path, np.column_stack([left, right]).ravel(), 8000, 1, 2)
    pcm = read_wav(path)
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=4)
    assert 3500 < np.abs(pcm).max() < 4500  # half the level: averaged with silence


def test_rejects_what_is_not_a_pcm_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(WavError, match=r"notes\.txt"):
        read_wav(path)


def test_rejects_24_bit(tmp_path: Path) -> None:
    path = tmp_path / "studio.wav"
    write_wav(path, np.zeros(300, dtype=np.uint8), 8000, 3, 1)
    with pytest.raises(WavError, match="24-bit"):
        read_wav(path)


def test_writer_round_trips_through_the_stdlib_reader(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    audio = tone(8000)
    with WavWriter(path) as writer:
        for start in range(0, len(audio), 160):
            writer.write(audio[start : start + 160])
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert np.array_equal(np.frombuffer(wav.readframes(10**6), dtype="<i2"), audio)


def test_file_is_valid_after_an_abrupt_stop(tmp_path: Path) -> None:
    """A process killed mid-call leaves a playable file up to the last flush."""
    path = tmp_path / "crash.wav"
    writer = WavWriter(path)
    for _ in range(60):  # 1.2 s in 20 ms frames, never closed
        writer.write(np.full(160, 1234, dtype=np.int16))
    with wave.open(str(path)) as wav:
        frames = wav.getnframes()
        data = np.frombuffer(wav.readframes(frames), dtype="<i2")
    assert 8000 <= frames <= 60 * 160
    assert frames % 1600 == 0  # whole ~200 ms flushes
    assert len(data) == frames and np.all(data == 1234)
    writer.close()


def test_empty_recording_is_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    WavWriter(path)
    with wave.open(str(path)) as wav:
        assert wav.getnframes() == 0
