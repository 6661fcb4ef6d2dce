"""Reading any FFmpeg-decodable file as mono int16 at 8 kHz (or another rate)."""

from pathlib import Path

import av
import numpy as np
import pytest

from ipbx.media.audiofile import AudioFileError, read_audio
from tests.support.tones import encode_tone, peak_hz


def test_stereo_mp3_at_44k1_reads_back_at_8k(tmp_path: Path) -> None:
    path = tmp_path / "tone.mp3"
    encode_tone(path, "mp3", "fltp", 44100, 1000.0, "stereo")
    pcm = read_audio(path)
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    # MP3 adds encoder delay and padding of a few frames.
    assert 8000 <= pcm.size <= 1.2 * 8000
    assert peak_hz(pcm, 8000) == pytest.approx(1000.0, abs=2)
    middle = pcm[2000:6000].astype(np.float64)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 * 32768 / np.sqrt(2), rel=0.1)


def test_ogg_opus_at_another_rate(tmp_path: Path) -> None:
    path = tmp_path / "tone.ogg"
    encode_tone(path, "libopus", "flt", 48000, 700.0)
    pcm = read_audio(path, rate=16000)
    assert pcm.size == pytest.approx(16000, rel=0.05)
    assert peak_hz(pcm, 16000) == pytest.approx(700.0, abs=2)


def test_wav_through_the_general_path(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    encode_tone(path, "pcm_s16le", "s16", 16000, 440.0)
    pcm = read_audio(path)
    assert pcm.size == 8000
    assert peak_hz(pcm, 8000) == pytest.approx(440.0, abs=1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"nothing\.mp3"):
        read_audio(tmp_path / "nothing.mp3")


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp3"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioFileError, match=r"garbage\.mp3"):
        read_audio(path)


def test_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 64
        frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(AudioFileError, match="no audio stream"):
        read_audio(path)
