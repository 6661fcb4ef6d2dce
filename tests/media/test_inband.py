"""In-band DTMF: Goertzel detection (ITU-T Q.24 practice) and the Q.23 generator."""

import numpy as np
import pytest

from ipbx.media.audiofile import read_audio
from ipbx.media.inband import (
    HIGH_GROUP,
    KEYPAD,
    LOW_GROUP,
    InbandDetector,
    InbandError,
    dtmf_tone,
)
from ipbx.media.tts import synthesize

DIGITS = "0123456789*#ABCD"


def _sequence(
    digits: str, ms: int, gap_ms: int, level_dbm0: float = -7.0, twist_db: float = 2.0
) -> np.ndarray:
    silence = np.zeros(8 * gap_ms, dtype=np.int16)
    tones = [dtmf_tone(d, ms, level_dbm0, twist_db) for d in digits]
    return np.concatenate([np.concatenate([t, silence]) for t in tones])


def _feed_in_chunks(detector: InbandDetector, pcm: np.ndarray, seed: int = 0) -> list[str]:
    # Random chunk sizes, so digits straddle feed() calls at every offset.
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(1, 400, size=pcm.size))
    cuts = cuts[cuts < pcm.size]
    return [d for chunk in np.split(pcm, cuts) for d in detector.feed(chunk)]


def test_generator_uses_the_q23_pair() -> None:
    pcm = dtmf_tone("5", 1000).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    peaks = sorted(np.argsort(spectrum)[-2:] * 8000 / pcm.size)
    assert peaks == [LOW_GROUP[1], HIGH_GROUP[1]]
    assert pcm.size == 8000


def test_unknown_digit() -> None:
    with pytest.raises(InbandError):
        dtmf_tone("E", 50)
    with pytest.raises(InbandError):
        dtmf_tone("12", 50)


@pytest.mark.parametrize("ms", [40, 100, 500])
def test_every_digit_once(ms: int) -> None:
    pcm = _sequence(DIGITS * 2, ms, gap_ms=50)
    assert "".join(_feed_in_chunks(InbandDetector(), pcm, seed=ms)) == DIGITS * 2


def test_one_frame_at_a_time_matches_one_call() -> None:
    pcm = _sequence("159#", 80, gap_ms=60)
    detector = InbandDetector()
    frames = [
        d for offset in range(0, pcm.size, 160) for d in detector.feed(pcm[offset : offset + 160])
    ]
    assert frames == InbandDetector().feed(pcm) == list("159#")


def test_lower_case_letters() -> None:
    assert InbandDetector().feed(_sequence("abcd", 60, gap_ms=60)) == list("ABCD")


def test_short_tones_are_rejected() -> None:
    # Q.24: tones around 20 ms must not operate the receiver.
    assert InbandDetector().feed(_sequence(DIGITS, 20, gap_ms=40)) == []


def test_held_key_with_a_dropout_is_one_digit() -> None:
    tone = dtmf_tone("7", 300)
    tone[1200:1240] = 0  # 5 ms dropout
    assert InbandDetector().feed(np.concatenate([tone, np.zeros(400, np.int16)])) == ["7"]


def test_same_key_twice_needs_a_release() -> None:
    assert InbandDetector().feed(_sequence("88", 80, gap_ms=40)) == ["8", "8"]


def test_key_change_without_a_gap() -> None:
    pcm = np.concatenate([dtmf_tone("1", 80), dtmf_tone("2", 80), np.zeros(400, np.int16)])
    assert InbandDetector().feed(pcm) == ["1", "2"]


@pytest.mark.parametrize("snr_db", [20, 10, 6])
def test_digits_in_white_noise(snr_db: int) -> None:
    rng = np.random.default_rng(snr_db)
    pcm = _sequence(DIGITS, 80, gap_ms=60).astype(np.float64)
    power = np.mean(dtmf_tone("5", 80).astype(np.float64) ** 2)
    noisy = pcm + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), pcm.size)
    assert InbandDetector().feed(np.rint(noisy).astype(np.int16)) == list(DIGITS)


def test_noise_alone_gives_nothing() -> None:
    noise = np.random.default_rng(7).normal(0, 3000, 8000 * 10)
    assert InbandDetector().feed(noise.astype(np.int16)) == []


def test_speech_like_tone_mixtures_give_nothing() -> None:
    # Voiced-speech stand-in: a random pitch with harmonics, plus random tones, all
    # kept 30 Hz or more away from the DTMF frequencies, changing every 60 ms.
    rng = np.random.default_rng(3)
    dtmf = np.array(LOW_GROUP + HIGH_GROUP)
    t = np.arange(480) / 8000
    segments = []
    for _ in range(500):
        pitch = rng.uniform(90, 300)
        freqs = np.concatenate([pitch * np.arange(1, 12), rng.uniform(300, 3400, size=4)])
        freqs = freqs[(freqs < 3800) & (np.min(np.abs(freqs[:, None] - dtmf), axis=1) > 30)]
        amps = rng.uniform(500, 4000, size=freqs.size)
        segments.append((amps * np.sin(2 * np.pi * np.outer(t, freqs))).sum(axis=1))
    pcm = np.clip(np.concatenate(segments), -32768, 32767).astype(np.int16)
    assert InbandDetector().feed(pcm) == []


def test_speech_gives_nothing(tmp_path: object) -> None:
    text = (
        "Thank you for calling. Please hold while we connect you. For sales press one, "
        "for support press two. Your call is important to us, nine eight seven six."
    )
    pcm = np.concatenate(
        [read_audio(synthesize(text, str(tmp_path), voice=v)) for v in ("en", "en+f3", "de")]
    )
    assert pcm.size > 8000 * 10
    assert InbandDetector().feed(pcm) == []


@pytest.mark.parametrize(
    ("twist_db", "detected"),
    [(0.0, True), (7.0, True), (-3.5, True), (10.0, False), (-6.0, False)],
)
def test_twist_limits(twist_db: float, detected: bool) -> None:
    # Positive: high group louder (normal twist, 8 dB allowed); negative: reverse (4 dB).
    pcm = _sequence(DIGITS, 80, gap_ms=60, twist_db=twist_db)
    assert InbandDetector().feed(pcm) == (list(DIGITS) if detected else [])


def test_too_quiet_is_ignored() -> None:
    assert InbandDetector().feed(_sequence("123", 80, 60, level_dbm0=-40.0)) == []
    assert InbandDetector().feed(_sequence("123", 80, 60, level_dbm0=-25.0)) == list("123")


def test_strong_second_harmonics_are_rejected() -> None:
    # A DTMF pair with second harmonics 6 dB down, as voiced speech has.
    t = np.arange(800) / 8000
    freqs = np.array([LOW_GROUP[0], HIGH_GROUP[0]])
    pcm = np.sin(2 * np.pi * np.outer(t, np.concatenate([freqs, 2 * freqs]))) @ [1, 1, 0.5, 0.5]
    pcm16 = np.rint(3000 * pcm).astype(np.int16)
    assert InbandDetector().feed(pcm16) == []
    assert InbandDetector(harmonic_margin_db=0).feed(pcm16) == [KEYPAD[0][0]]
