"""Call-progress tones (ITU-T E.180 Suppl. 2): frequencies by FFT, cadence by energy."""

import itertools

import numpy as np
import pytest

from ipbx.media.tones import KINDS, TONES, tone, tone_spec

RATE = 8000


def _peaks(pcm: np.ndarray, count: int) -> list[float]:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return sorted(float(f) for f in np.argsort(spectrum)[-count:] * RATE / pcm.size)


def _on_off(pcm: np.ndarray) -> np.ndarray:
    # 10 ms energy frames -> on/off per frame.
    frames = pcm[: pcm.size // 80 * 80].astype(np.float64).reshape(-1, 80)
    return np.asarray(np.mean(frames**2, axis=1) > 1e4)


def _runs(on: np.ndarray) -> list[tuple[bool, int]]:
    # (state, length in 10 ms frames) for each run of equal states.
    edges = np.flatnonzero(np.diff(on.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [on.size]])
    return [(bool(on[a]), int(b - a)) for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize(
    ("country", "kind", "freqs", "cadence"),
    [
        ("us", "ringback", [440, 480], [2.0, 4.0]),
        ("us", "busy", [480, 620], [0.5, 0.5]),
        ("us", "congestion", [480, 620], [0.25, 0.25]),
        ("us", "dial", [350, 440], []),
        ("uk", "ringback", [400, 450], [0.4, 0.2, 0.4, 2.0]),
        ("uk", "busy", [400], [0.375, 0.375]),
        ("uk", "congestion", [400], [0.4, 0.35, 0.225, 0.525]),
        ("gb", "dial", [350, 440], []),
        ("de", "ringback", [425], [1.0, 4.0]),
        ("de", "busy", [425], [0.48, 0.48]),
        ("eu", "congestion", [425], [0.25, 0.25]),
        ("fr", "ringback", [440], [1.5, 3.5]),
        ("fr", "dial", [440], []),
        ("ru", "ringback", [425], [0.8, 3.2]),
        ("ua", "busy", [425], [0.35, 0.35]),
        ("default", "ringback", [425], [1.0, 4.0]),
        ("jp", "busy", [425], [0.5, 0.5]),  # unknown country: the default plan
    ],
)
def test_frequencies_and_cadence(
    country: str, kind: str, freqs: list[float], cadence: list[float]
) -> None:
    cycle = sum(cadence) or 1.0
    pcm = tone(country, kind, 2 * cycle)  # type: ignore[arg-type]
    assert pcm.dtype == np.int16
    assert pcm.size == round(2 * cycle * RATE)
    on = _on_off(pcm)
    # The FFT of the "on" parts alone shows exactly the plan's frequencies.
    frames = pcm[: on.size * 80].reshape(-1, 80)[on].reshape(-1)
    assert _peaks(frames[: frames.size // 200 * 200], len(freqs)) == pytest.approx(freqs, abs=20)
    expected = [(i % 2 == 0, round(s * 100)) for i, s in enumerate(cadence)] * 2
    runs = _runs(on)
    if not cadence:
        assert runs == [(True, on.size)]
    else:
        assert [state for state, _ in runs] == [state for state, _ in expected]
        assert [n for _, n in runs] == pytest.approx([n for _, n in expected], abs=1)


def test_single_frequency_is_exact() -> None:
    pcm = tone("ru", "dial", 1.0)
    assert _peaks(pcm, 1) == [425.0]
    pcm = tone("us", "dial", 1.0)
    assert _peaks(pcm, 2) == [350.0, 440.0]


def test_level() -> None:
    # -13 dBm0 per frequency: RMS of one sine 13 + 3.17 dB below a full-scale sine.
    rms = np.sqrt(np.mean(tone("de", "dial", 1.0).astype(np.float64) ** 2))
    assert 20 * np.log10(rms / (32768 / np.sqrt(2))) == pytest.approx(-16.17, abs=0.05)
    louder = tone("de", "dial", 1.0, level_dbm0=-3.0)
    assert np.abs(louder).max() > 3 * np.abs(tone("de", "dial", 1.0)).max()


def test_every_country_has_every_kind() -> None:
    for plan in TONES.values():
        assert set(plan) == set(KINDS)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown call-progress tone"):
        tone_spec("us", "howler")  # type: ignore[arg-type]


def test_country_is_case_insensitive() -> None:
    assert tone_spec("UK", "busy") == tone_spec("uk", "busy")
