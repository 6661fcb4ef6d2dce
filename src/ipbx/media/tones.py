"""Call-progress tones by country: dial, ringback, busy and congestion.

Values are those of ITU-T E.180 Supplement 2 (Various tones used in national
networks) as Asterisk's indications.conf tabulates them; frequencies in Hz, cadences
as alternating on/off seconds starting with "on" and repeating, an empty cadence
being a continuous tone. Mixed frequencies (e.g. 440+480 Hz) are summed at equal
level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ipbx.media.codecs.base import Pcm

RATE = 8000
Kind = Literal["dial", "ringback", "busy", "congestion"]
KINDS: tuple[Kind, ...] = ("dial", "ringback", "busy", "congestion")
# G.711 (μ-law): 0 dBm0 is a sine 3.17 dB below the full-scale int16 sine.
_DBM0_PEAK = 32768 / 10 ** (3.17 / 20)


@dataclass(frozen=True, slots=True)
class ToneSpec:
    frequencies: tuple[float, ...]
    cadence: tuple[float, ...] = ()  # on, off, on, off ... seconds; () is continuous


# The ITU-T E.180 recommendation (400-450 Hz, ringing ~1 s on / ~4 s off, busy and
# congestion cadences of equal on/off), with the CEPT values of ETSI TR 101 041-1:
# 425 Hz; ringback 1 s on 4 s off; busy 0.5/0.5; congestion 0.25/0.25.
_EU: dict[Kind, ToneSpec] = {
    "dial": ToneSpec((425.0,)),
    "ringback": ToneSpec((425.0,), (1.0, 4.0)),
    "busy": ToneSpec((425.0,), (0.5, 0.5)),
    "congestion": ToneSpec((425.0,), (0.25, 0.25)),
}

TONES: dict[str, dict[Kind, ToneSpec]] = {
    # North American Precise Tone Plan (E.180 Suppl. 2, United States / Canada).
    "us": {
        "dial": ToneSpec((350.0, 440.0)),
        "ringback": ToneSpec((440.0, 480.0), (2.0, 4.0)),
        "busy": ToneSpec((480.0, 620.0), (0.5, 0.5)),
        "congestion": ToneSpec((480.0, 620.0), (0.25, 0.25)),  # "reorder"
    },
    # United Kingdom (E.180 Suppl. 2): double-ring ringback, 400 Hz busy and congestion.
    "uk": {
        "dial": ToneSpec((350.0, 440.0)),
        "ringback": ToneSpec((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
        "busy": ToneSpec((400.0,), (0.375, 0.375)),
        "congestion": ToneSpec((400.0,), (0.4, 0.35, 0.225, 0.525)),
    },
    # Germany (E.180 Suppl. 2, Germany).
    "de": {
        "dial": ToneSpec((425.0,)),
        "ringback": ToneSpec((425.0,), (1.0, 4.0)),
        "busy": ToneSpec((425.0,), (0.48, 0.48)),
        "congestion": ToneSpec((425.0,), (0.24, 0.24)),
    },
    "eu": _EU,
    # France (E.180 Suppl. 2, France): 440 Hz throughout.
    "fr": {
        "dial": ToneSpec((440.0,)),
        "ringback": ToneSpec((440.0,), (1.5, 3.5)),
        "busy": ToneSpec((440.0,), (0.5, 0.5)),
        "congestion": ToneSpec((440.0,), (0.25, 0.25)),
    },
    # Russia and the former USSR networks (E.180 Suppl. 2, Russian Federation);
    # congestion uses the busy cadence there.
    "ru": {
        "dial": ToneSpec((425.0,)),
        "ringback": ToneSpec((425.0,), (0.8, 3.2)),
        "busy": ToneSpec((425.0,), (0.35, 0.35)),
        "congestion": ToneSpec((425.0,), (0.35, 0.35)),
    },
    "default": _EU,
}
# Aliases: Great Britain, Ukraine (same plan as Russia), Canada (same as US).
_ALIASES = {"gb": "uk", "ua": "ru", "ca": "us"}


def tone_spec(country: str, kind: Kind) -> ToneSpec:
    """The tone of `kind` in `country` (ISO code); unknown countries get the default."""
    if kind not in KINDS:
        raise ValueError(f"unknown call-progress tone {kind!r}; expected one of {KINDS}")
    code = country.lower()
    return TONES.get(_ALIASES.get(code, code), TONES["default"])[kind]


def tone(
    country: str, kind: Kind, seconds: float, level_dbm0: float = -13.0, rate: int = RATE
) -> Pcm:
    """`seconds` of the tone, cadence starting at its first "on", as int16 at `rate`.

    `level_dbm0` is per frequency; -13 dBm0 is the Precise Tone Plan's dial-tone level.
    """
    spec = tone_spec(country, kind)
    t = np.arange(round(seconds * rate)) / rate
    amplitude = _DBM0_PEAK * 10 ** (level_dbm0 / 20)
    signal: npt.NDArray[np.float64] = amplitude * np.sin(
        2 * np.pi * np.outer(t, spec.frequencies)
    ).sum(axis=1)
    if spec.cadence:
        edges = np.cumsum(spec.cadence)
        # Even-numbered segments of each cycle are "on".
        segment = np.searchsorted(edges, np.mod(t, edges[-1]), side="right")
        signal *= segment % 2 == 0
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
